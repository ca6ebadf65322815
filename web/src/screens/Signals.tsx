import { useQuery } from "@tanstack/react-query";
import { Link } from "react-router-dom";
import { api, ApiError } from "../api/client";
import type { AccuracyList, ModelAccuracy, ModelList, ModelOut, SignalList } from "../api/types";
import { figure, percent } from "../lib/format";

/** "58.3 % (7 of 12)" or why there is no figure yet. */
export function accuracyText(row: ModelAccuracy | undefined): string {
  if (!row) return "not served yet";
  if (row.accuracy === null || row.calls === 0) {
    return row.pending > 0
      ? `no call judged yet (${row.pending} waiting for their horizon)`
      : "no call judged yet";
  }
  const waiting = row.pending > 0 ? `, ${row.pending} waiting` : "";
  return `${percent(row.accuracy)} (${row.hits} of ${row.calls}${waiting})`;
}

function useSignals() {
  return useQuery({
    queryKey: ["signals"],
    queryFn: () => api<SignalList>("/api/trading/signals"),
    // No promoted model yet (`tradestack up` trains one on first start): look again soon.
    refetchInterval: (query) => (query.state.error instanceof ApiError ? 10_000 : 60_000),
    retry: false,
  });
}

function useModels() {
  return useQuery({
    queryKey: ["models"],
    queryFn: async () => (await api<ModelList>("/api/models")).models,
    refetchInterval: 60_000,
  });
}

function useAccuracy() {
  return useQuery({
    queryKey: ["signals-accuracy"],
    queryFn: async () => (await api<AccuracyList>("/api/trading/signals/accuracy")).models,
    refetchInterval: 30_000,
  });
}

function ModelSummary({
  signals,
  model,
  live,
}: {
  signals: SignalList;
  model?: ModelOut;
  live?: ModelAccuracy;
}) {
  const trained = model?.training_window ?? [];
  const ours = model?.metrics?.model ?? {};
  const momentum = model?.metrics?.momentum ?? {};
  return (
    <section className="panel summary" aria-label="Model">
      <div className="figure">
        <span className="label">Model</span>
        <span className="value" data-testid="model-version">
          {signals.model_version}
        </span>
      </div>
      <div className="figure">
        <span className="label">As of</span>
        <span className="value">{signals.as_of}</span>
      </div>
      <div className="figure">
        <span className="label">Horizon</span>
        <span className="value">{signals.horizon_days} days</span>
      </div>
      <div className="figure">
        <span className="label">Live accuracy</span>
        <span className="value" data-testid="live-accuracy">
          {accuracyText(live)}
        </span>
      </div>
      {model && Object.keys(model.metrics ?? {}).length === 0 && (
        <p className="muted" data-testid="not-evaluated">
          Model {model.version} was trained without a walk-forward evaluation (the quick first-start model):{" "}
          <code>tradestack signals train --promote</code> trains and evaluates one.
        </p>
      )}
      {model && Object.keys(model.metrics ?? {}).length > 0 && (
        <table className="compact" aria-label="Out-of-sample evaluation">
          <caption className="muted">
            Walk-forward, out of sample
            {trained.length === 2 && ` (trained ${trained[0]} to ${trained[1]})`}
          </caption>
          <thead>
            <tr>
              <th scope="col"></th>
              <th scope="col" className="num">
                IC
              </th>
              <th scope="col" className="num">
                RankIC
              </th>
              <th scope="col" className="num">
                Hit rate
              </th>
            </tr>
          </thead>
          <tbody>
            <tr>
              <th scope="row">Model</th>
              <td className="num" data-field="ic">
                {figure(ours.ic)}
              </td>
              <td className="num">{figure(ours.rank_ic)}</td>
              <td className="num">{percent(ours.hit_rate)}</td>
            </tr>
            <tr>
              <th scope="row">Momentum</th>
              <td className="num">{figure(momentum.ic)}</td>
              <td className="num">{figure(momentum.rank_ic)}</td>
              <td className="num">{percent(momentum.hit_rate)}</td>
            </tr>
          </tbody>
        </table>
      )}
    </section>
  );
}

function Ranked({ signals }: { signals: SignalList }) {
  return (
    <section className="panel" aria-label="Ranked universe">
      <h2>Ranked universe</h2>
      <div className="scroll">
        <table data-testid="signals-table">
          <thead>
            <tr>
              <th scope="col" className="num">
                Rank
              </th>
              <th scope="col">Symbol</th>
              <th scope="col" className="num">
                Score
              </th>
              <th scope="col">Percentile</th>
              <th scope="col">Direction</th>
            </tr>
          </thead>
          <tbody>
            {signals.signals.map((signal) => (
              <tr key={signal.symbol} data-symbol={signal.symbol}>
                <td className="num">{signal.rank}</td>
                <th scope="row">
                  <Link to={`/markets/${encodeURIComponent(signal.symbol)}`}>{signal.symbol}</Link>
                </th>
                <td className="num" data-field="score">
                  {figure(signal.score, 5)}
                </td>
                <td>
                  <span className="bar" aria-hidden="true">
                    <span style={{ width: `${Math.round(signal.percentile * 100)}%` }} />
                  </span>{" "}
                  {Math.round(signal.percentile * 100)}
                </td>
                <td
                  className={signal.direction === "long" ? "up" : signal.direction === "short" ? "down" : ""}
                >
                  {signal.direction}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <p className="muted">
        Scores rank the expected {signals.horizon_days}-day forward return across the universe on{" "}
        {signals.as_of}; the direction is the model&apos;s long, short or flat call. Not advice.
      </p>
    </section>
  );
}

function OtherModels({
  models,
  accuracy,
  served,
}: {
  models: ModelOut[];
  accuracy: ModelAccuracy[];
  served: string;
}) {
  const others = accuracy.filter((row) => row.model_version !== served);
  const promoted = models.filter((m) => m.promoted && m.version !== served);
  if (others.length === 0 && promoted.length === 0) return null;
  return (
    <section className="panel" aria-label="Other models">
      <h2>Other promoted models</h2>
      <div className="scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Kind</th>
              <th scope="col">Live accuracy</th>
            </tr>
          </thead>
          <tbody>
            {promoted.map((m) => (
              <tr key={m.version}>
                <th scope="row">{m.version}</th>
                <td>{m.kind}</td>
                <td>{accuracyText(accuracy.find((row) => row.model_version === m.version))}</td>
              </tr>
            ))}
            {others
              .filter((row) => !promoted.some((m) => m.version === row.model_version))
              .map((row) => (
                <tr key={row.model_version}>
                  <th scope="row">{row.model_version}</th>
                  <td>{row.kind}</td>
                  <td>{accuracyText(row)}</td>
                </tr>
              ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

export default function Signals() {
  const signals = useSignals();
  const models = useModels();
  const accuracy = useAccuracy();
  if (signals.error) {
    const error = signals.error;
    return (
      <section className="panel" aria-label="Signals">
        <h1 className="visually-hidden">Signals</h1>
        <p className="error" role="alert" data-testid="signals-error">
          {error instanceof ApiError ? error.detail : "could not load signals"}
        </p>
        {error instanceof ApiError && error.status === 409 && (
          <p className="muted">
            On first start <code>tradestack up</code> trains a model in the background; this screen looks
            again every 10 seconds.
          </p>
        )}
      </section>
    );
  }
  const data = signals.data;
  if (!data) return <p className="loading">Loading signals…</p>;
  const model = models.data?.find((m) => m.version === data.model_version);
  const live = accuracy.data?.find((row) => row.model_version === data.model_version);
  return (
    <div className="stack">
      <h1 className="visually-hidden">Signals</h1>
      <ModelSummary signals={data} model={model} live={live} />
      <Ranked signals={data} />
      <OtherModels models={models.data ?? []} accuracy={accuracy.data ?? []} served={data.model_version} />
    </div>
  );
}
