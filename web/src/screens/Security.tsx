import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { api, ApiError } from "../api/client";
import type { Schemas } from "../api/types";
import { useAuth } from "../auth";
import { ApiKeys } from "./Operations";

export default function Security() {
  const { me, signedIn } = useAuth();
  const queryClient = useQueryClient();
  const [code, setCode] = useState("");
  const [recovery, setRecovery] = useState<string[] | null>(null);
  const setup = useMutation({
    mutationFn: () => api<Schemas["MfaSetup"]>("/api/auth/mfa/setup", { method: "POST" }),
  });
  const enable = useMutation({
    mutationFn: () => api<Schemas["MfaEnabled"]>("/api/auth/mfa/enable", { method: "POST", json: { code } }),
    onSuccess: async (result) => {
      setRecovery(result.recovery_codes);
      setCode("");
      await signedIn();
    },
  });
  const disable = useMutation({
    mutationFn: () => api<null>("/api/auth/mfa/disable", { method: "POST", json: { code } }),
    onSuccess: async () => {
      setCode("");
      await signedIn();
      void queryClient.invalidateQueries();
    },
  });
  const error = setup.error ?? enable.error ?? disable.error;
  function submit(event: FormEvent) {
    event.preventDefault();
    if (me?.mfa_enabled) disable.mutate();
    else enable.mutate();
  }
  return (
    <div className="stack">
      <h1>Security</h1>
      <section className="panel" aria-label="Two-factor authentication">
        <h2>Two-factor authentication</h2>
        <p>Status: {me?.mfa_enabled ? "on" : "off"}</p>
        {!me?.mfa_enabled && !setup.data && (
          <button type="button" onClick={() => setup.mutate()}>
            Set up an authenticator app
          </button>
        )}
        {setup.data && !me?.mfa_enabled && (
          <div>
            <img
              src={setup.data.qr_png}
              alt="QR code to scan with your authenticator app"
              width={200}
              height={200}
            />
            <p className="muted break">{setup.data.otpauth_uri}</p>
          </div>
        )}
        {(setup.data || me?.mfa_enabled) && (
          <form onSubmit={submit} className="row">
            <label>
              {me?.mfa_enabled ? "Code (to turn MFA off)" : "Code from the app"}
              <input
                value={code}
                onChange={(e) => setCode(e.target.value)}
                autoComplete="one-time-code"
                minLength={6}
                required
              />
            </label>
            <button type="submit">{me?.mfa_enabled ? "Turn off" : "Turn on"}</button>
          </form>
        )}
        {recovery && (
          <div role="status">
            <p>Recovery codes (shown once; each works once in place of a code):</p>
            <ul className="codes">
              {recovery.map((c) => (
                <li key={c}>
                  <code>{c}</code>
                </li>
              ))}
            </ul>
          </div>
        )}
        {error && (
          <p className="error" role="alert">
            {error instanceof ApiError ? error.detail : "the server could not be reached"}
          </p>
        )}
      </section>
      <ApiKeys />
    </div>
  );
}
