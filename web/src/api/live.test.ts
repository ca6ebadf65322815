import { backoffMs, LiveSocket, type ConnectionState } from "./live";

class FakeSocket {
  static instances: FakeSocket[] = [];
  readyState = 0;
  sent: unknown[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: string }) => void) | null = null;
  onclose: (() => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.instances.push(this);
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data));
  }
  close(): void {
    this.readyState = 3;
    this.onclose?.();
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.();
    this.onmessage?.({ data: JSON.stringify({ type: "welcome" }) });
  }
}

describe("LiveSocket", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    FakeSocket.instances = [];
  });
  afterEach(() => vi.useRealTimers());

  it("backs off exponentially up to the cap", () => {
    const middle = () => 0.5;
    expect([1, 2, 3, 4, 10].map((n) => backoffMs(n, middle))).toEqual([500, 1000, 2000, 4000, 15000]);
  });

  it("authenticates, resubscribes after a drop and reports the reconnect", () => {
    const states: ConnectionState[] = [];
    const socket = new LiveSocket(
      () => "ws://test/ws",
      () => "token-1",
      (url) => new FakeSocket(url) as unknown as WebSocket,
    );
    socket.onState((state) => states.push(state));
    socket.start();
    const first = FakeSocket.instances[0]!;
    const seen: unknown[] = [];
    first.open();
    socket.subscribe("quotes:AAPL", (frame) => seen.push(frame.data));
    expect(first.sent).toEqual([
      { op: "auth", token: "token-1" },
      { op: "subscribe", channels: ["quotes:AAPL"] },
    ]);
    first.onmessage?.({
      data: JSON.stringify({ type: "quote", channel: "quotes:AAPL", data: { last: "1" } }),
    });
    expect(seen).toEqual([{ last: "1" }]);

    first.close();
    expect(states.at(-1)).toMatchObject({ status: "reconnecting", attempt: 1 });
    vi.advanceTimersByTime(1000);
    const second = FakeSocket.instances[1]!;
    second.open();
    expect(states.at(-1)).toEqual({ status: "open" });
    expect(second.sent).toEqual([
      { op: "auth", token: "token-1" },
      { op: "subscribe", channels: ["quotes:AAPL"] },
    ]);
  });
});
