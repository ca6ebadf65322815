import { screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { session } from "../api/client";
import { AuthProvider } from "../auth";
import { renderWithQuery, scriptedFetch } from "../test/render";
import { Login } from "./Login";

afterEach(() => {
  vi.unstubAllGlobals();
  session.clear();
});

it("asks for the second factor, then keeps the access token in memory only", async () => {
  const user = userEvent.setup();
  const calls = scriptedFetch([
    [200, { mfa_required: true, mfa_token: "mfa-1", expires_in: 300 }],
    [200, { access_token: "access-1", token_type: "bearer", expires_in: 900, csrf_token: "csrf-1" }],
    [200, { id: "u1", email: "t@example.com", role: "trader", permissions: [], accounts: [] }],
  ]);
  renderWithQuery(
    <AuthProvider>
      <Login />
    </AuthProvider>,
  );
  await user.type(screen.getByLabelText("Email"), "t@example.com");
  await user.type(screen.getByLabelText("Password"), "a long password");
  await user.click(screen.getByRole("button", { name: "Sign in" }));
  await user.type(await screen.findByLabelText("Code"), "ABCD-EFGH-1234");
  await user.click(screen.getByRole("button", { name: "Verify" }));
  await vi.waitFor(() => expect(calls).toHaveLength(3));
  expect(calls.map((c) => c.url)).toEqual([
    "/api/auth/browser/login",
    "/api/auth/browser/mfa/verify",
    "/api/auth/me",
  ]);
  expect(JSON.parse(String(calls[1]?.init?.body))).toEqual({ mfa_token: "mfa-1", code: "ABCD-EFGH-1234" });
  expect(new Headers(calls[2]?.init?.headers).get("Authorization")).toBe("Bearer access-1");
  expect(session.token).toBe("access-1");
  expect(localStorage.length + sessionStorage.length).toBe(0);
});

it("shows the server's refusal", async () => {
  const user = userEvent.setup();
  scriptedFetch([[401, { error: "AuthenticationError", detail: "wrong email or password" }]]);
  renderWithQuery(
    <AuthProvider>
      <Login />
    </AuthProvider>,
  );
  await user.type(screen.getByLabelText("Email"), "t@example.com");
  await user.type(screen.getByLabelText("Password"), "bad");
  await user.click(screen.getByRole("button", { name: "Sign in" }));
  expect(await screen.findByRole("alert")).toHaveTextContent("wrong email or password");
});
