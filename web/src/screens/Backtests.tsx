import { useQuery } from "@tanstack/react-query";
import { useMemo } from "react";
import { Link, useParams } from "react-router-dom";
import { api, ApiError } from "../api/client";
import type { BacktestDetail, BacktestList, BacktestSummary } from "../api/types";
import { fillColumns, statusColumn } from "../components/columns";
import { DataTable, type Column } from "../components/DataTable";
import { EquityChart } from "../components/EquityChart";
import {
  day,
  equityCurve,
  minute,
  money,
  runFills,
  runOrders,
  stat,
  type RunFill,
  type RunOrder,
} from "../lib/backtest";
import { round } from "../lib/decimal";
import { figure, percent, time } from "../lib/format";

/** The command that stores a run (checked against `tradestack backtest run --help`). */
export const RUN_COMMAND = "tradestack backtest run sma_cross --symbols AAPL";

function useBacktests() {
  return useQuery({
    queryKey: ["backtests"],
    queryFn: async () => (await api<BacktestList>("/api/backtests")).backtests,
    refetchInterval: 30_000,
  });
}

function useBacktest(runId: string) {
  return useQuery({
    queryKey: ["backtest", runId],
    queryFn: () => api<BacktestDetail>(`/api/backtests/${encodeURIComponent(runId)}`),
    staleTime: Infinity, // a stored run never changes
  });
}

function sign(value: number | null): string {
  return value === null || value === 0 ? "" : value > 0 ? "up" : "down";
}

/** A statistic's cell: the shown text, and the API's number in `data-value` (what the e2e test compares). */
function Stat({ name, value, text }: { name: string; value: number | null; text: string }) {
  return (
    <td
      className={`num ${name === "total_return" ? sign(value) : ""}`}
      data-field={name}
      data-value={value ?? ""}
    >
      {text}
    </td>
  );
}

function Empty() {
  return (
    <section className="panel" aria-label="No backtests" data-testid="backtests-empty">
      <h2>No stored backtest runs yet</h2>
      <p>Run a strategy over the shipped history and keep the result with:</p>
      <pre>
        <code data-testid="run-command">{RUN_COMMAND}</code>
      </pre>
      <p className="muted">
        Options: <code>--from</code>/<code>--to</code> (YYYY-MM-DD),{" "}
        <code>--param fast=10 --param slow=30</code>, <code>--capital</code>, <code>--fees</code> (bps),{" "}
        <code>--slippage</code> (bps); the other strategy is <code>bollinger</code>. Runs are stored by
        default (<code>--no-store</code> skips it); this list looks again every 30 seconds.
      </p>
    </section>
  );
}

/** A statistic's cell: the shown text, and the API's number in `data-value` (what the e2e test compares). */
function statColumn(
  name: string,
  header: string,
  text: (value: number | null) => string,
): Column<BacktestSummary> {
  return {
    key: name,
    header,
    num: true,
    cell: (run) => text(stat(run.metrics, name)),
    attributes: (run) => {
      const value = stat(run.metrics, name);
      return {
        className: name === "total_return" ? sign(value) : undefined,
        "data-field": name,
        "data-value": value ?? "",
      };
    },
  };
}

function runColumns(selected?: string): Column<BacktestSummary>[] {
  return [
    {
      key: "strategy",
      header: "Strategy",
      rowHeader: true,
      cell: (run) => (
        <Link
          to={`/backtests/${encodeURIComponent(run.id)}`}
          aria-current={run.id === selected ? "page" : undefined}
        >
          {run.strategy}
        </Link>
      ),
    },
    { key: "symbols", header: "Symbols", cell: (run) => run.symbols.join(", ") },
    { key: "period", header: "Period", cell: (run) => `${day(run.first_bar)} – ${day(run.last_bar)}` },
    statColumn("total_return", "Total return", (v) => percent(v, 2)),
    statColumn("sharpe", "Sharpe", (v) => figure(v, 2)),
    statColumn("max_drawdown", "Max drawdown", (v) => percent(v, 2)),
    statColumn("trades", "Trades", (v) => (v === null ? "–" : String(v))),
    { key: "created", header: "Created", cell: (run) => minute(run.created_at) },
  ];
}

function Runs({ runs, selected }: { runs: BacktestSummary[]; selected?: string }) {
  return (
    <section className="panel" aria-label="Backtest runs">
      <h2>Runs</h2>
      <DataTable
        testId="backtests-table"
        columns={runColumns(selected)}
        rows={runs}
        rowKey={(run) => run.id}
        rowAttributes={(run) => ({
          "data-run-id": run.id,
          className: run.id === selected ? "selected" : undefined,
        })}
      />
    </section>
  );
}

const ROWS: [string, string, (value: number | null) => string][] = [
  ["total_return", "Total return", (v) => percent(v, 2)],
  ["annual_return", "Annual return", (v) => percent(v, 2)],
  ["annual_volatility", "Annual volatility", (v) => percent(v, 2)],
  ["sharpe", "Sharpe", (v) => figure(v, 2)],
  ["sortino", "Sortino", (v) => figure(v, 2)],
  ["max_drawdown", "Max drawdown", (v) => percent(v, 2)],
  ["max_drawdown_duration_periods", "Longest drawdown (bars)", (v) => figure(v, 0)],
  ["calmar", "Calmar", (v) => figure(v, 2)],
  ["trades", "Trades (fills)", (v) => figure(v, 0)],
  ["round_trips", "Exits", (v) => figure(v, 0)],
  ["hit_rate", "Hit rate (exits beating their fee)", (v) => percent(v, 1)],
  ["turnover", "Turnover (× average equity)", (v) => figure(v, 2)],
  ["exposure", "Exposure (bars with a position)", (v) => percent(v, 1)],
  ["periods_per_year", "Periods a year", (v) => figure(v, 0)],
];

function Metrics({ run }: { run: BacktestDetail }) {
  const currency = typeof run.spec.currency === "string" ? run.spec.currency : "";
  const cash = (name: string) => {
    const value = money(run.metrics, name);
    return value === null ? "–" : `${round(value, 2)} ${currency}`;
  };
  return (
    <section className="panel" aria-label="Metrics">
      <h2>Metrics</h2>
      <div className="scroll">
        <table className="compact metrics" data-testid="backtest-metrics">
          <tbody>
            <tr>
              <th scope="row">Start equity</th>
              <td
                className="num"
                data-field="start_equity"
                data-value={money(run.metrics, "start_equity") ?? ""}
              >
                {cash("start_equity")}
              </td>
            </tr>
            <tr>
              <th scope="row">Final equity</th>
              <td className="num" data-field="final_equity" data-value={run.final_equity}>
                {`${round(run.final_equity, 2)} ${currency}`}
              </td>
            </tr>
            <tr>
              <th scope="row">Fees paid</th>
              <td className="num" data-field="fees_paid" data-value={money(run.metrics, "fees_paid") ?? ""}>
                {cash("fees_paid")}
              </td>
            </tr>
            {ROWS.map(([name, label, text]) => {
              const value = stat(run.metrics, name);
              return (
                <tr key={name}>
                  <th scope="row">{label}</th>
                  <Stat name={name} value={value} text={text(value)} />
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function Spec({ run }: { run: BacktestDetail }) {
  const params = run.spec.params;
  const entries = typeof params === "object" && params !== null ? Object.entries(params) : [];
  const text = (name: string) => {
    const value = run.spec[name];
    return typeof value === "string" || typeof value === "number" ? String(value) : "–";
  };
  return (
    <section className="panel" aria-label="Run">
      <h2>
        {run.strategy} on {run.symbols.join(", ")}
      </h2>
      <dl className="grid">
        <dt>Period</dt>
        <dd>
          {day(run.first_bar)} – {day(run.last_bar)} ({run.bars} bars)
        </dd>
        <dt>Parameters</dt>
        <dd>
          {entries.length
            ? entries.map(([k, v]) => `${k}=${String(v)}`).join(", ")
            : "the strategy's defaults"}
        </dd>
        <dt>Capital</dt>
        <dd>
          {text("capital")} {text("currency")}
        </dd>
        <dt>Fees</dt>
        <dd>
          {text("fee_bps")} bps (minimum {text("fee_minimum")}), slippage {text("slippage_bps")} bps
        </dd>
        <dt>Fills</dt>
        <dd>{text("fill_rule")}</dd>
        <dt>Created</dt>
        <dd>
          {minute(run.created_at)} by version {run.code_version}
        </dd>
        <dt>Data</dt>
        <dd className="break">{run.data_fingerprint}</dd>
      </dl>
    </section>
  );
}

const orderColumns: Column<RunOrder>[] = [
  { key: "time", header: "Time", cell: (order) => time(order.created_at) },
  { key: "symbol", header: "Symbol", cell: (order) => order.symbol },
  {
    key: "side",
    header: "Side",
    cell: (order) => order.side,
    attributes: (order) => ({ className: order.side }),
  },
  { key: "type", header: "Type", cell: (order) => order.type },
  { key: "quantity", header: "Qty", num: true, cell: (order) => order.quantity },
  { key: "filled", header: "Filled", num: true, cell: (order) => order.filled_quantity },
  statusColumn<RunOrder>(),
];

const runFillColumns = fillColumns<RunFill>([
  { key: "fee", header: "Fee", num: true, cell: (fill) => fill.fee },
  { key: "realized", header: "Realised P&L", num: true, cell: (fill) => fill.realized },
]);

/** The run's orders and fills as it stored them (`result.orders`, `result.fills`). */
function Trades({ run }: { run: BacktestDetail }) {
  const orders = useMemo(() => runOrders(run.result), [run.result]);
  const fills = useMemo(() => runFills(run.result), [run.result]);
  const currency = typeof run.spec.currency === "string" ? run.spec.currency : "";
  return (
    <div className="columns">
      <section className="panel" aria-label="Orders of the run">
        <h2>Orders ({orders.length})</h2>
        <DataTable
          testId="backtest-orders"
          columns={orderColumns}
          rows={orders}
          rowKey={(order) => order.id}
          rowAttributes={(order) => ({ "data-order-id": order.id, "data-status": order.status })}
          empty="The strategy sent no orders."
        />
      </section>
      <section className="panel" aria-label="Fills of the run">
        <h2>
          Fills ({fills.length}){currency && `, money in ${currency}`}
        </h2>
        <DataTable
          testId="backtest-fills"
          columns={runFillColumns}
          rows={fills}
          rowKey={(fill) => String(fill.seq)}
          empty="Nothing was filled."
        />
      </section>
    </div>
  );
}

function Detail({ runId }: { runId: string }) {
  const run = useBacktest(runId);
  if (run.error) {
    return (
      <p className="error" role="alert">
        {run.error instanceof ApiError ? run.error.detail : "could not load the run"}
      </p>
    );
  }
  if (!run.data) return <p className="loading">Loading the run…</p>;
  const data = run.data;
  const currency = typeof data.spec.currency === "string" ? data.spec.currency : "";
  const start = money(data.metrics, "start_equity");
  return (
    <div className="stack" data-testid="backtest-detail" data-run-id={data.id}>
      <Spec run={data} />
      <div className="columns">
        <Metrics run={data} />
        <EquityChart
          curve={equityCurve(data.result)}
          start={start === null ? null : Number(start)}
          currency={currency}
        />
      </div>
      <Trades run={data} />
    </div>
  );
}

export default function Backtests() {
  const { runId } = useParams();
  const runs = useBacktests();
  let list;
  if (runs.error) {
    list = (
      <p className="error" role="alert">
        {runs.error instanceof ApiError ? runs.error.detail : "could not load the backtests"}
      </p>
    );
  } else if (!runs.data) {
    list = <p className="loading">Loading backtests…</p>;
  } else if (runs.data.length === 0) {
    list = <Empty />;
  } else {
    list = <Runs runs={runs.data} selected={runId} />;
  }
  return (
    <div className="stack">
      <h1 className="visually-hidden">Backtests</h1>
      {list}
      {runId ? (
        <Detail runId={runId} />
      ) : (
        runs.data?.length !== 0 && <p className="muted">Choose a run to see its metrics and equity curve.</p>
      )}
    </div>
  );
}
