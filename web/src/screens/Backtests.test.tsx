import { screen, within } from "@testing-library/react";
import { MemoryRouter, Route, Routes } from "react-router-dom";
import { drawn } from "../test/chart";
import { renderWithQuery } from "../test/render";
import Backtests, { RUN_COMMAND } from "./Backtests";

vi.mock("lightweight-charts", () => import("../test/chart"));

const METRICS = {
  start_equity: "100000",
  final_equity: "104500.5",
  total_return: 0.045005,
  annual_return: 0.0112,
  annual_volatility: 0.0403,
  sharpe: 0.7099508641302763,
  sortino: null,
  max_drawdown: -0.0725,
  max_drawdown_duration_periods: 12,
  calmar: 0.39,
  trades: 4,
  round_trips: 2,
  hit_rate: 0.5,
  turnover: 1.25,
  exposure: 0.589,
  fees_paid: "2.5",
  periods_per_year: 252,
};
const SUMMARY = {
  id: "run-1",
  created_at: "2026-12-04T13:45:00+00:00",
  strategy: "sma_cross",
  symbols: ["AAPL", "MSFT"],
  first_bar: "2000-03-01T00:00:00+00:00",
  last_bar: "2000-03-04T00:00:00+00:00",
  bars: 4,
  code_version: "0.1.0",
  data_fingerprint: "ab12",
  final_equity: "104500.5",
  metrics: METRICS,
};
const DETAIL = {
  ...SUMMARY,
  spec: { strategy: "sma_cross", params: { fast: "5" }, capital: "100000", currency: "USD", fee_bps: "1" },
  result: {
    equity: [
      { ts: "2000-03-01T00:00:00+00:00", equity: 100000 },
      { ts: "2000-03-02T00:00:00+00:00", equity: 110000 },
      { ts: "2000-03-03T00:00:00+00:00", equity: 99000 },
      { ts: "2000-03-04T00:00:00+00:00", equity: 104500.5 },
    ],
    orders: [
      {
        id: "o-1",
        symbol: "AAPL",
        side: "buy",
        type: "market",
        quantity: "10",
        status: "filled",
        filled_quantity: "10",
        reason: null,
        created_at: "2000-03-01T00:00:00+00:00",
      },
      {
        id: "o-2",
        symbol: "AAPL",
        side: "sell",
        type: "market",
        quantity: "10",
        status: "denied",
        filled_quantity: "0",
        reason: "position: nothing to sell",
        created_at: "2000-03-02T00:00:00+00:00",
      },
    ],
    fills: [
      {
        order_id: "o-1",
        symbol: "AAPL",
        side: "buy",
        quantity: "10",
        price: "101.25",
        fee: "1.0125",
        realized: "0",
        ts: "2000-03-02T00:00:00+00:00",
      },
      { order_id: "o-9", symbol: "AAPL", side: "buy", quantity: 3 },
    ],
  },
};

function routedFetch(routes: Record<string, [number, unknown]>) {
  vi.stubGlobal(
    "fetch",
    vi.fn(async (url: string) => {
      const [status, body] = routes[url] ?? [500, { detail: `unexpected ${url}` }];
      return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
    }),
  );
}

afterEach(() => {
  vi.unstubAllGlobals();
  drawn.series = [];
});

function show(path: string) {
  renderWithQuery(
    <MemoryRouter initialEntries={[path]}>
      <Routes>
        <Route path="/backtests" element={<Backtests />} />
        <Route path="/backtests/:runId" element={<Backtests />} />
      </Routes>
    </MemoryRouter>,
  );
}

it("lists the stored runs with their headline figures", async () => {
  routedFetch({ "/api/backtests": [200, { backtests: [SUMMARY] }] });
  show("/backtests");
  const table = await screen.findByTestId("backtests-table");
  const row = table.querySelector("tr[data-run-id='run-1']") as HTMLElement;
  expect(within(row).getByRole("link", { name: "sma_cross" })).toHaveAttribute("href", "/backtests/run-1");
  expect(within(row).getByText("AAPL, MSFT")).toBeInTheDocument();
  expect(within(row).getByText("2000-03-01 – 2000-03-04")).toBeInTheDocument();
  expect(row.querySelector("[data-field=total_return]")).toHaveTextContent("4.50 %");
  expect(row.querySelector("[data-field=total_return]")).toHaveClass("up");
  expect(row.querySelector("[data-field=sharpe]")).toHaveTextContent("0.71");
  expect(row.querySelector("[data-field=sharpe]")).toHaveAttribute("data-value", "0.7099508641302763");
  expect(row.querySelector("[data-field=max_drawdown]")).toHaveTextContent("-7.25 %");
  expect(row.querySelector("[data-field=trades]")).toHaveTextContent("4");
  expect(within(row).getByText("2026-12-04 13:45 UTC")).toBeInTheDocument();
  expect(screen.queryByTestId("backtests-empty")).toBeNull();
});

it("tells how to create a run when there is none", async () => {
  routedFetch({ "/api/backtests": [200, { backtests: [] }] });
  show("/backtests");
  expect(await screen.findByTestId("run-command")).toHaveTextContent(RUN_COMMAND);
  expect(RUN_COMMAND).toBe("tradestack backtest run sma_cross --symbols AAPL");
  expect(screen.queryByTestId("backtests-table")).toBeNull();
});

it("shows a run's metrics and draws its equity curve and drawdown", async () => {
  routedFetch({
    "/api/backtests": [200, { backtests: [SUMMARY] }],
    "/api/backtests/run-1": [200, DETAIL],
  });
  show("/backtests/run-1");
  const metrics = await screen.findByTestId("backtest-metrics");
  expect(metrics.querySelector("[data-field=final_equity]")).toHaveTextContent("104500.50 USD");
  expect(metrics.querySelector("[data-field=fees_paid]")).toHaveTextContent("2.50 USD");
  expect(metrics.querySelector("[data-field=sortino]")).toHaveTextContent("–");
  expect(metrics.querySelector("[data-field=hit_rate]")).toHaveTextContent("50.0 %");
  expect(screen.getByText("fast=5")).toBeInTheDocument();
  const [equity, drawdown] = drawn.series;
  expect(equity?.data).toEqual([
    { time: 951868800, value: 100000 },
    { time: 951955200, value: 110000 },
    { time: 952041600, value: 99000 },
    { time: 952128000, value: 104500.5 },
  ]);
  const under = (drawdown?.data ?? []) as { value: number }[];
  expect(under.map((p) => p.value)).toEqual([
    0,
    0,
    expect.closeTo(-10, 9),
    expect.closeTo((104500.5 / 110000 - 1) * 100, 9),
  ]);
  const chart = screen.getByTestId("equity-chart");
  expect(chart).toHaveAttribute("data-points", "4");
  expect(Number(chart.getAttribute("data-max-drawdown"))).toBeCloseTo(-0.1, 12);
  expect(screen.getByText(/deepest drawdown -10.00 %/)).toBeInTheDocument();
});

it("says when a run does not exist", async () => {
  routedFetch({
    "/api/backtests": [200, { backtests: [SUMMARY] }],
    "/api/backtests/nope": [404, { error: "NotFoundError", detail: "no backtest 'nope'" }],
  });
  show("/backtests/nope");
  expect(await screen.findByRole("alert")).toHaveTextContent("no backtest 'nope'");
});

it("lists a run's orders and fills as stored, leaving out malformed entries", async () => {
  routedFetch({
    "/api/backtests": [200, { backtests: [SUMMARY] }],
    "/api/backtests/run-1": [200, DETAIL],
  });
  show("/backtests/run-1");
  const orders = await screen.findByTestId("backtest-orders");
  expect(orders.querySelectorAll("tbody tr")).toHaveLength(2);
  const denied = orders.querySelector("tr[data-order-id='o-2']") as HTMLElement;
  expect(denied).toHaveAttribute("data-status", "denied");
  expect(within(denied).getByText("position: nothing to sell")).toBeInTheDocument();
  const fills = screen.getByTestId("backtest-fills");
  const rows = fills.querySelectorAll("tbody tr");
  expect(rows).toHaveLength(1);
  expect(within(rows[0] as HTMLElement).getByText("101.25")).toHaveClass("num");
  expect(within(rows[0] as HTMLElement).getByText("1.0125")).toBeInTheDocument();
  expect(screen.getByRole("heading", { name: "Fills (1), money in USD" })).toBeInTheDocument();
});
