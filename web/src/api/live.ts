import { session } from "./client";

// One WebSocket to /ws for the whole page: authenticates with the in-memory access token,
// reconnects with exponential backoff (and jitter) and resubscribes every channel in use.

export type ConnectionState =
  | { status: "connecting" }
  | { status: "open" }
  | { status: "reconnecting"; attempt: number; retryInMs: number }
  | { status: "closed" };

export interface LiveFrame {
  type: string;
  channel?: string;
  data?: Record<string, unknown>;
  [key: string]: unknown;
}

type FrameHandler = (frame: LiveFrame) => void;

export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 15_000;

/** Delay before reconnect attempt `attempt` (1-based): doubling from 0.5 s to 15 s, ±20 % jitter. */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}

export class LiveSocket {
  private socket: WebSocket | null = null;
  private readonly handlers = new Map<string, Set<FrameHandler>>();
  private readonly typeHandlers = new Map<string, Set<FrameHandler>>();
  private readonly stateListeners = new Set<(state: ConnectionState) => void>();
  private attempt = 0;
  private retry: ReturnType<typeof setTimeout> | null = null;
  private stopped = true;
  state: ConnectionState = { status: "closed" };

  constructor(
    private readonly url: () => string,
    private readonly token: () => string | null,
    private readonly makeSocket: (url: string) => WebSocket = (url) => new WebSocket(url),
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    this.socket?.close(1000);
    this.socket = null;
    this.setState({ status: "closed" });
  }

  onState(listener: (state: ConnectionState) => void): () => void {
    this.stateListeners.add(listener);
    listener(this.state);
    return () => this.stateListeners.delete(listener);
  }

  /** Frames of `channel` (e.g. "quotes:AAPL"); subscribes while at least one handler listens. */
  subscribe(channel: string, handler: FrameHandler): () => void {
    let set = this.handlers.get(channel);
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
      this.send({ op: "subscribe", channels: [channel] });
    }
    set.add(handler);
    return () => {
      const current = this.handlers.get(channel);
      if (!current) return;
      current.delete(handler);
      if (current.size === 0) {
        this.handlers.delete(channel);
        this.send({ op: "unsubscribe", channels: [channel] });
      }
    };
  }

  /** Frames of a type (e.g. "order" from the "orders" subscription, whatever the account). */
  onType(type: string, handler: FrameHandler): () => void {
    let set = this.typeHandlers.get(type);
    if (!set) {
      set = new Set();
      this.typeHandlers.set(type, set);
    }
    set.add(handler);
    return () => set.delete(handler);
  }

  private send(message: unknown): void {
    if (this.socket?.readyState === WebSocket.OPEN && this.state.status === "open") {
      this.socket.send(JSON.stringify(message));
    }
  }

  private setState(state: ConnectionState): void {
    this.state = state;
    this.stateListeners.forEach((listener) => listener(state));
  }

  private connect(): void {
    const token = this.token();
    if (!token) {
      this.scheduleReconnect();
      return;
    }
    if (this.attempt === 0) this.setState({ status: "connecting" });
    const socket = this.makeSocket(this.url());
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ op: "auth", token }));
    socket.onmessage = (event: MessageEvent) => {
      let frame: LiveFrame;
      try {
        frame = JSON.parse(String(event.data)) as LiveFrame;
      } catch {
        return;
      }
      if (frame.type === "welcome") {
        this.attempt = 0;
        this.setState({ status: "open" });
        const channels = [...this.handlers.keys()];
        if (channels.length) socket.send(JSON.stringify({ op: "subscribe", channels }));
        return;
      }
      if (frame.channel) {
        const exact = this.handlers.get(frame.channel);
        exact?.forEach((handler) => handler(frame));
      }
      this.typeHandlers.get(frame.type)?.forEach((handler) => handler(frame));
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (!this.stopped) this.scheduleReconnect();
    };
  }

  private scheduleReconnect(): void {
    this.attempt += 1;
    const retryInMs = backoffMs(this.attempt);
    this.setState({ status: "reconnecting", attempt: this.attempt, retryInMs });
    this.retry = setTimeout(() => {
      this.retry = null;
      if (!this.stopped) this.connect();
    }, retryInMs);
  }
}

function wsUrl(): string {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/ws`;
}

export const live = new LiveSocket(wsUrl, () => session.token);
