// The HTTP client: the access token lives only in memory; the refresh token is an HttpOnly
// cookie the page never sees; refresh and logout carry the CSRF token (X-CSRF-Token).
import type { BrowserSession, MfaChallenge } from "./types";

const BROWSER = "/api/auth/browser";
const CSRF_COOKIE = "ts_csrf";

export class ApiError extends Error {
  readonly status: number;
  readonly error: string;
  readonly detail: string;
  readonly body: Record<string, unknown>;

  constructor(status: number, body: Record<string, unknown>) {
    const detail = typeof body.detail === "string" ? body.detail : `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.error = typeof body.error === "string" ? body.error : "HTTPError";
    this.detail = detail;
    this.body = body;
  }

  /** Problems the server listed per field (validation errors), e.g. "body.quantity: ...". */
  get fields(): string[] {
    const fields = this.body.fields;
    return Array.isArray(fields) ? fields.filter((f): f is string => typeof f === "string") : [];
  }
}

type Listener = (signedIn: boolean) => void;

class Session {
  private accessToken: string | null = null;
  private csrf: string | null = null;
  private refreshing: Promise<boolean> | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly listeners = new Set<Listener>();

  get token(): string | null {
    return this.accessToken;
  }

  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  adopt(session: BrowserSession): void {
    this.accessToken = session.access_token;
    this.csrf = session.csrf_token;
    if (this.timer) clearTimeout(this.timer);
    // Refresh a minute before the access token expires (at least after 10 s).
    const inMs = Math.max(10, session.expires_in - 60) * 1000;
    this.timer = setTimeout(() => void this.refresh(), inMs);
    this.listeners.forEach((listener) => listener(true));
  }

  clear(): void {
    this.accessToken = null;
    this.csrf = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.listeners.forEach((listener) => listener(false));
  }

  private csrfToken(): string | null {
    // The cookie first: another tab may have rotated the session since this one last refreshed.
    const cookie = document.cookie.split("; ").find((part) => part.startsWith(`${CSRF_COOKIE}=`));
    return cookie ? decodeURIComponent(cookie.slice(CSRF_COOKIE.length + 1)) : this.csrf;
  }

  /** Rotate the refresh cookie for a new access token; false when there is no session. */
  refresh(): Promise<boolean> {
    if (this.refreshing) return this.refreshing;
    const csrf = this.csrfToken();
    if (!csrf) return Promise.resolve(false);
    this.refreshing = (async () => {
      try {
        const response = await fetch(`${BROWSER}/refresh`, {
          method: "POST",
          headers: { "X-CSRF-Token": csrf },
          credentials: "same-origin",
        });
        if (!response.ok) {
          this.clear();
          return false;
        }
        this.adopt((await response.json()) as BrowserSession);
        return true;
      } catch {
        return false;
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  async logout(): Promise<void> {
    const send = () => {
      const csrf = this.csrfToken();
      const headers: Record<string, string> = {};
      if (this.accessToken) headers.Authorization = `Bearer ${this.accessToken}`;
      if (csrf) headers["X-CSRF-Token"] = csrf;
      return fetch(`${BROWSER}/logout`, { method: "POST", headers, credentials: "same-origin" });
    };
    try {
      // An expired access token cannot log out: refresh once so the server revokes the cookie's family.
      if ((await send()).status === 401 && (await this.refresh())) await send();
    } finally {
      this.clear();
    }
  }
}

export const session = new Session();

async function parse(response: Response): Promise<unknown> {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return { detail: text };
  }
}

export async function api<T>(path: string, init: RequestInit & { json?: unknown } = {}): Promise<T> {
  const send = async (): Promise<Response> => {
    const headers = new Headers(init.headers);
    if (session.token) headers.set("Authorization", `Bearer ${session.token}`);
    let body = init.body;
    if (init.json !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(init.json);
    }
    return fetch(path, { ...init, headers, body, credentials: "same-origin" });
  };
  let response = await send();
  if (response.status === 401 && session.token && (await session.refresh())) response = await send();
  const payload = await parse(response);
  if (!response.ok) {
    throw new ApiError(response.status, (payload ?? {}) as Record<string, unknown>);
  }
  return payload as T;
}

export async function login(email: string, password: string): Promise<MfaChallenge | null> {
  const result = await api<BrowserSession | MfaChallenge>(`${BROWSER}/login`, {
    method: "POST",
    json: { email, password },
  });
  if ("mfa_required" in result) return result;
  session.adopt(result);
  return null;
}

export async function verifyMfa(mfaToken: string, code: string): Promise<void> {
  session.adopt(
    await api<BrowserSession>(`${BROWSER}/mfa/verify`, {
      method: "POST",
      json: { mfa_token: mfaToken, code },
    }),
  );
}
