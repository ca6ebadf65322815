import { useMemo } from "react";
import { ApiError } from "../api/client";
import { useEquityHistory } from "../api/queries";
import { minute } from "../lib/backtest";
import { round } from "../lib/decimal";
import { EquityChart } from "./EquityChart";

/** An account's recorded equity in its base currency over time, or why there is none yet. */
export function EquityHistory({ accountId }: { accountId: string }) {
  const history = useEquityHistory(accountId);
  const curve = useMemo(
    () => (history.data?.points ?? []).map((p) => ({ ts: p.ts, equity: Number(p.equity) })),
    [history.data],
  );
  if (history.error) {
    return (
      <section className="panel" aria-label="Equity over time">
        <h2>Equity over time</h2>
        <p className="error" role="alert">
          {history.error instanceof ApiError ? history.error.detail : "could not load the equity history"}
        </p>
      </section>
    );
  }
  const data = history.data;
  if (!data) return <p className="loading">Loading the equity history…</p>;
  const every = `every ${data.interval_seconds} s`;
  const first = data.points.at(0);
  const last = data.points.at(-1);
  if (!first || !last) {
    return (
      <section className="panel" aria-label="Equity over time" data-testid="equity-history-empty">
        <h2>Equity over time</h2>
        <p>
          {data.recorded_since
            ? `No equity recorded in the last 30 days (recording started ${minute(data.recorded_since)}).`
            : "No equity recorded yet for this account."}
        </p>
        <p className="muted">
          Equity in {data.base_currency} is recorded {every} from when recording started, valued as this page
          values it; history from before that is not reconstructed. The first point appears within a minute.
        </p>
      </section>
    );
  }
  return (
    <EquityChart
      curve={curve}
      start={null}
      currency={data.base_currency}
      title="Equity over time"
      drawdown={false}
      exactLast={last.equity}
      summary={
        <>
          Recorded {every} since {minute(data.recorded_since ?? first.ts)}; nothing before that is
          reconstructed. {data.points.length} points{data.downsampled ? " (thinned to fit)" : ""}, last{" "}
          {round(last.equity, 2)} {data.base_currency} at {minute(last.ts)}.
        </>
      }
    />
  );
}
