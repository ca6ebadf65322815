import { scriptedFetch } from "../test/render";
import { session } from "./client";

afterEach(() => {
  vi.unstubAllGlobals();
  session.clear();
  document.cookie = "ts_csrf=; max-age=0; path=/";
});

it("logs out with an expired access token by refreshing once, so the refresh cookie is revoked", async () => {
  session.adopt({ access_token: "expired", token_type: "bearer", expires_in: 900, csrf_token: "csrf-1" });
  const calls = scriptedFetch([
    [401, { error: "AuthenticationError", detail: "expired" }],
    [200, { access_token: "fresh", token_type: "bearer", expires_in: 900, csrf_token: "csrf-2" }],
    [204, null],
  ]);
  await session.logout();
  expect(calls.map((c) => c.url)).toEqual([
    "/api/auth/browser/logout",
    "/api/auth/browser/refresh",
    "/api/auth/browser/logout",
  ]);
  const last = new Headers(calls[2]?.init?.headers);
  expect(last.get("Authorization")).toBe("Bearer fresh");
  expect(last.get("X-CSRF-Token")).toBe("csrf-2");
  expect(session.token).toBeNull();
});

it("sends the CSRF token of the newest session, which another tab may have rotated", async () => {
  session.adopt({ access_token: "a", token_type: "bearer", expires_in: 900, csrf_token: "mine-old" });
  document.cookie = "ts_csrf=rotated-by-another-tab; path=/";
  const calls = scriptedFetch([
    [200, { access_token: "b", token_type: "bearer", expires_in: 900, csrf_token: "c" }],
  ]);
  expect(await session.refresh()).toBe(true);
  expect(new Headers(calls[0]?.init?.headers).get("X-CSRF-Token")).toBe("rotated-by-another-tab");
  expect(session.token).toBe("b");
});
