import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { api, ApiError } from "../api/client";
import type {
  ApiKey,
  ApiKeyCreated,
  AuditRecord,
  AuditVerify,
  Readiness,
  RiskLimits,
  Role,
  TradingState,
  User,
  Version,
} from "../api/types";
import { useAuth } from "../auth";

function detailOf(error: unknown): string {
  return error instanceof ApiError ? error.detail : "the server could not be reached";
}

function Health() {
  const ready = useQuery({
    queryKey: ["ready"],
    queryFn: async () => {
      const response = await fetch("/api/ready");
      return { ok: response.ok, body: (await response.json()) as Readiness };
    },
    refetchInterval: 10_000,
  });
  const version = useQuery({ queryKey: ["version"], queryFn: () => api<Version>("/api/version") });
  return (
    <section className="panel" aria-label="Health">
      <h2>Health</h2>
      <p>
        Ready:{" "}
        <span className={ready.data?.ok ? "badge open" : "badge closed"} data-testid="ready">
          {ready.data ? (ready.data.ok ? "ready" : "not ready") : "…"}
        </span>
      </p>
      <ul className="checks">
        {ready.data &&
          Object.entries(ready.data.body.checks ?? {}).map(([name, check]) => (
            <li key={name}>
              <span className={check.ok ? "up" : "down"}>{check.ok ? "✓" : "✗"}</span> {name}
              {check.latency_ms != null && <span className="muted"> {check.latency_ms} ms</span>}
              {check.detail && <span className="muted"> — {check.detail}</span>}
            </li>
          ))}
      </ul>
      {version.data && (
        <p>
          Version {version.data.version} ({version.data.environment}), commit{" "}
          {version.data.git_sha ?? "unknown"}, schema {version.data.schema_revision ?? "none"} (head{" "}
          {version.data.schema_head})
        </p>
      )}
    </section>
  );
}

function KillSwitch() {
  const queryClient = useQueryClient();
  const [scope, setScope] = useState("global");
  const [reason, setReason] = useState("");
  const [pending, setPending] = useState<"halted" | "reducing" | "resume" | null>(null);
  const states = useQuery({
    queryKey: ["risk-states"],
    queryFn: () => api<TradingState[]>("/api/risk/states"),
  });
  const act = useMutation({
    mutationFn: (action: "halted" | "reducing" | "resume") =>
      action === "resume"
        ? api<TradingState>("/api/risk/resume", { method: "POST", json: { scope, reason: reason || null } })
        : api<TradingState>("/api/risk/halt", {
            method: "POST",
            json: { scope, state: action, reason: reason || "halted from the dashboard" },
          }),
    onSettled: () => {
      setPending(null);
      void queryClient.invalidateQueries({ queryKey: ["risk-states"] });
    },
  });
  const label = { halted: "Halt trading", reducing: "Reduce only", resume: "Resume trading" };
  return (
    <section className="panel" aria-label="Kill switch">
      <h2>Kill switch</h2>
      <div className="row">
        <label>
          Scope{" "}
          <input
            value={scope}
            onChange={(e) => setScope(e.target.value)}
            size={38}
            aria-describedby="scope-help"
          />
        </label>
        <label>
          Reason <input value={reason} onChange={(e) => setReason(e.target.value)} />
        </label>
      </div>
      <p id="scope-help" className="muted">
        “global” for everything, or an account id.
      </p>
      <div className="actions">
        <button type="button" className="danger" onClick={() => setPending("halted")}>
          {label.halted}
        </button>
        <button type="button" onClick={() => setPending("reducing")}>
          {label.reducing}
        </button>
        <button type="button" onClick={() => setPending("resume")}>
          {label.resume}
        </button>
      </div>
      {pending && (
        <div role="alertdialog" aria-labelledby="confirm-title" className="confirm">
          <p id="confirm-title">
            {label[pending]} for scope <strong>{scope}</strong>?
            {pending === "halted" && " Open orders in this scope are canceled."}
          </p>
          <button type="button" className="danger" onClick={() => act.mutate(pending)} autoFocus>
            Confirm: {label[pending]}
          </button>
          <button type="button" onClick={() => setPending(null)}>
            Cancel
          </button>
        </div>
      )}
      {act.error && (
        <p className="error" role="alert">
          {detailOf(act.error)}
        </p>
      )}
      {act.data && (
        <p role="status" data-testid="kill-switch-result">
          {act.data.scope}: {act.data.state}
          {act.data.canceled_orders ? ` (${act.data.canceled_orders} orders canceled)` : ""}
        </p>
      )}
      <table data-testid="risk-states">
        <thead>
          <tr>
            <th scope="col">Scope</th>
            <th scope="col">State</th>
            <th scope="col">Reason</th>
            <th scope="col">By</th>
          </tr>
        </thead>
        <tbody>
          {states.data?.map((state) => (
            <tr key={state.scope} data-scope={state.scope} data-state={state.state}>
              <td>{state.scope}</td>
              <td>
                <span className={`status status-${state.state}`}>{state.state}</span>
              </td>
              <td>{state.reason ?? ""}</td>
              <td>{state.updated_by ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

const LIMIT_FIELDS = [
  "max_order_notional",
  "max_position_quantity",
  "max_gross_exposure",
  "price_collar_pct",
  "max_orders_per_minute",
  "daily_loss_limit",
] as const;

function RiskLimitsPanel({ canEdit }: { canEdit: boolean }) {
  const [accountId, setAccountId] = useState("");
  const [draft, setDraft] = useState<Record<string, string>>({});
  const queryClient = useQueryClient();
  const limits = useQuery({
    queryKey: ["limits", accountId],
    queryFn: () => api<RiskLimits>(`/api/risk/limits/${encodeURIComponent(accountId)}`),
    enabled: accountId.length > 0,
    retry: false,
  });
  const save = useMutation({
    mutationFn: () =>
      api<RiskLimits>(`/api/risk/limits/${encodeURIComponent(accountId)}`, {
        method: "PUT",
        json: Object.fromEntries(
          LIMIT_FIELDS.map((f) => [f, draft[f] ?? String(limits.data?.[f] ?? "")]).map(([f, v]) =>
            f === "max_orders_per_minute" ? [f, Number(v)] : [f, v],
          ),
        ),
      }),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["limits", accountId] }),
  });
  function submit(event: FormEvent) {
    event.preventDefault();
    save.mutate();
  }
  return (
    <section className="panel" aria-label="Risk limits">
      <h2>Risk limits</h2>
      <label>
        Account id <input value={accountId} onChange={(e) => setAccountId(e.target.value.trim())} size={38} />
      </label>
      {limits.error && <p className="error">{detailOf(limits.error)}</p>}
      {limits.data && (
        <form onSubmit={submit} aria-label="Edit risk limits">
          <p className="muted">
            In {limits.data.currency};{" "}
            {limits.data.source === "default" ? "defaults" : "set for this account"}
          </p>
          {LIMIT_FIELDS.map((field) => (
            <label key={field} className="field">
              {field.replace(/_/g, " ")}
              <input
                value={draft[field] ?? String(limits.data?.[field] ?? "")}
                readOnly={!canEdit}
                onChange={(e) => setDraft({ ...draft, [field]: e.target.value })}
              />
            </label>
          ))}
          {canEdit && <button type="submit">Save limits</button>}
          {save.error && (
            <p className="error" role="alert">
              {detailOf(save.error)}
            </p>
          )}
        </form>
      )}
    </section>
  );
}

function Audit() {
  const records = useQuery({ queryKey: ["audit"], queryFn: () => api<AuditRecord[]>("/api/audit?limit=50") });
  const verify = useQuery({
    queryKey: ["audit-verify"],
    queryFn: () => api<AuditVerify>("/api/audit/verify"),
  });
  return (
    <section className="panel" aria-label="Audit log">
      <h2>Audit log</h2>
      <p data-testid="audit-chain">
        Chain:{" "}
        {verify.data ? (
          verify.data.ok ? (
            <span className="badge open">
              verified, {verify.data.checked} entries, head {verify.data.head_hash?.slice(0, 12) ?? "–"}
            </span>
          ) : (
            <span className="badge closed">BROKEN at entry {verify.data.first_bad_id}</span>
          )
        ) : verify.error ? (
          detailOf(verify.error)
        ) : (
          "checking…"
        )}
      </p>
      <div className="scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Action</th>
              <th scope="col">Outcome</th>
              <th scope="col">Who</th>
              <th scope="col">Target</th>
            </tr>
          </thead>
          <tbody>
            {records.data?.map((record) => (
              <tr key={record.id}>
                <td>{new Date(record.ts).toLocaleString()}</td>
                <td>{record.action}</td>
                <td>{record.outcome}</td>
                <td>{record.actor_email ?? record.actor_user_id ?? ""}</td>
                <td>{record.target ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

const ROLES: Role[] = ["viewer", "trader", "risk", "admin"];

function Users() {
  const queryClient = useQueryClient();
  const users = useQuery({ queryKey: ["users"], queryFn: () => api<User[]>("/api/users") });
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState<Role>("viewer");
  const invalidate = () => queryClient.invalidateQueries({ queryKey: ["users"] });
  const create = useMutation({
    mutationFn: () => api<User>("/api/users", { method: "POST", json: { email, password, role } }),
    onSuccess: () => {
      setEmail("");
      setPassword("");
      void invalidate();
    },
  });
  const update = useMutation({
    mutationFn: ({ id, body }: { id: string; body: Record<string, unknown> }) =>
      api<User>(`/api/users/${id}`, { method: "PATCH", json: body }),
    onSettled: invalidate,
  });
  const resetMfa = useMutation({
    mutationFn: (id: string) => api<User>(`/api/users/${id}/mfa/reset`, { method: "POST" }),
    onSettled: invalidate,
  });
  function submit(event: FormEvent) {
    event.preventDefault();
    create.mutate();
  }
  return (
    <section className="panel" aria-label="Users">
      <h2>Users</h2>
      <div className="scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">Active</th>
              <th scope="col">MFA</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {users.data?.map((user) => (
              <tr key={user.id}>
                <td>{user.email}</td>
                <td>
                  <select
                    aria-label={`Role of ${user.email}`}
                    value={user.role}
                    onChange={(e) => update.mutate({ id: user.id, body: { role: e.target.value } })}
                  >
                    {ROLES.map((r) => (
                      <option key={r}>{r}</option>
                    ))}
                  </select>
                </td>
                <td>
                  <button
                    type="button"
                    onClick={() => update.mutate({ id: user.id, body: { is_active: !user.is_active } })}
                  >
                    {user.is_active ? "Disable" : "Enable"}
                    <span className="visually-hidden"> {user.email}</span>
                  </button>
                </td>
                <td>
                  {user.mfa_enabled ? (
                    <button type="button" onClick={() => resetMfa.mutate(user.id)}>
                      Reset MFA<span className="visually-hidden"> of {user.email}</span>
                    </button>
                  ) : (
                    "off"
                  )}
                </td>
                <td>{user.is_active ? "" : "disabled"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {(update.error || resetMfa.error) && (
        <p className="error">{detailOf(update.error ?? resetMfa.error)}</p>
      )}
      <form onSubmit={submit} className="row" aria-label="Create user">
        <label>
          Email <input type="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
        </label>
        <label>
          Password{" "}
          <input
            type="password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            minLength={12}
            required
          />
        </label>
        <label>
          Role
          <select value={role} onChange={(e) => setRole(e.target.value as Role)}>
            {ROLES.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        <button type="submit">Create user</button>
      </form>
      {create.error && (
        <p className="error" role="alert">
          {detailOf(create.error)}
        </p>
      )}
    </section>
  );
}

export function ApiKeys() {
  const queryClient = useQueryClient();
  const keys = useQuery({ queryKey: ["keys"], queryFn: () => api<ApiKey[]>("/api/keys") });
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<string[]>(["read"]);
  const [created, setCreated] = useState<ApiKeyCreated | null>(null);
  const create = useMutation({
    mutationFn: () => api<ApiKeyCreated>("/api/keys", { method: "POST", json: { name, scopes } }),
    onSuccess: (key) => {
      setCreated(key);
      setName("");
      void queryClient.invalidateQueries({ queryKey: ["keys"] });
    },
  });
  const revoke = useMutation({
    mutationFn: (id: string) => api<ApiKey>(`/api/keys/${id}`, { method: "DELETE" }),
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["keys"] }),
  });
  function submit(event: FormEvent) {
    event.preventDefault();
    create.mutate();
  }
  return (
    <section className="panel" aria-label="API keys">
      <h2>API keys</h2>
      <table>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Prefix</th>
            <th scope="col">Scopes</th>
            <th scope="col">Last used</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {keys.data?.map((key) => (
            <tr key={key.id}>
              <td>{key.name}</td>
              <td>
                <code>{key.prefix}</code>
              </td>
              <td>{key.scopes.join(", ")}</td>
              <td>{key.last_used_at ? new Date(key.last_used_at).toLocaleString() : "never"}</td>
              <td>
                {key.revoked_at ? (
                  "revoked"
                ) : (
                  <button type="button" onClick={() => revoke.mutate(key.id)}>
                    Revoke<span className="visually-hidden"> {key.name}</span>
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form onSubmit={submit} className="row" aria-label="Create API key">
        <label>
          Name <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={100} />
        </label>
        <fieldset>
          <legend>Scopes</legend>
          {["read", "trade", "admin"].map((scope) => (
            <label key={scope}>
              <input
                type="checkbox"
                checked={scopes.includes(scope)}
                onChange={(e) =>
                  setScopes(e.target.checked ? [...scopes, scope] : scopes.filter((s) => s !== scope))
                }
              />
              {scope}
            </label>
          ))}
        </fieldset>
        <button type="submit">Create key</button>
      </form>
      {create.error && (
        <p className="error" role="alert">
          {detailOf(create.error)}
        </p>
      )}
      {created && (
        <p role="status">
          New key (shown once, store it now): <code>{created.key}</code>
        </p>
      )}
    </section>
  );
}

export default function Operations() {
  const { can } = useAuth();
  return (
    <div className="stack">
      <h1>Operations</h1>
      <Health />
      {can("risk:halt") && <KillSwitch />}
      {can("accounts:read:all") && <RiskLimitsPanel canEdit={can("risk:limits")} />}
      {can("audit:read") && <Audit />}
      {can("users:manage") && <Users />}
    </div>
  );
}
