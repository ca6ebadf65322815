import { useState, type FormEvent } from "react";
import { ApiError, login, verifyMfa } from "../api/client";
import { useAuth } from "../auth";

export function Login() {
  const { signedIn } = useAuth();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [mfaToken, setMfaToken] = useState<string | null>(null);
  const [code, setCode] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function run(action: () => Promise<void>) {
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (caught) {
      setError(caught instanceof ApiError ? caught.detail : "the server could not be reached: try again");
    } finally {
      setBusy(false);
    }
  }

  function submitPassword(event: FormEvent) {
    event.preventDefault();
    void run(async () => {
      const challenge = await login(email, password);
      if (challenge) {
        setMfaToken(challenge.mfa_token);
        return;
      }
      await signedIn();
    });
  }

  function submitCode(event: FormEvent) {
    event.preventDefault();
    if (!mfaToken) return;
    void run(async () => {
      await verifyMfa(mfaToken, code.trim());
      await signedIn();
    });
  }

  return (
    <main className="login" id="main">
      <h1>Tradestack</h1>
      {mfaToken === null ? (
        <form onSubmit={submitPassword} aria-label="Sign in">
          <label>
            Email
            <input
              type="email"
              autoComplete="username"
              required
              value={email}
              onChange={(e) => setEmail(e.target.value)}
            />
          </label>
          <label>
            Password
            <input
              type="password"
              autoComplete="current-password"
              required
              value={password}
              onChange={(e) => setPassword(e.target.value)}
            />
          </label>
          <button type="submit" disabled={busy}>
            Sign in
          </button>
        </form>
      ) : (
        <form onSubmit={submitCode} aria-label="Second factor">
          <p>Enter the 6-digit code from your authenticator app, or one of your recovery codes.</p>
          <label>
            Code
            <input
              inputMode="text"
              autoComplete="one-time-code"
              required
              minLength={6}
              maxLength={32}
              value={code}
              onChange={(e) => setCode(e.target.value)}
            />
          </label>
          <button type="submit" disabled={busy}>
            Verify
          </button>
          <button type="button" className="link" onClick={() => setMfaToken(null)}>
            Start again
          </button>
        </form>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </main>
  );
}
