import { screen } from "@testing-library/react";
import { drawn } from "../test/chart";
import { renderWithQuery } from "../test/render";
import { EquityHistory } from "./EquityHistory";

vi.mock("lightweight-charts", () => import("../test/chart"));

const SERIES = {
  account_id: "acc-1",
  base_currency: "AUD",
  start: "2026-11-04T15:00:00Z",
  end: "2026-12-04T15:00:00Z",
  recorded_since: "2026-12-04T14:00:00Z",
  interval_seconds: 60,
  max_points: 1000,
  downsampled: false,
  points: [
    { ts: "2026-12-04T14:00:00.100000Z", equity: "100000" },
    { ts: "2026-12-04T14:00:00.900000Z", equity: "100001.5" },
    { ts: "2026-12-04T14:01:00Z", equity: "100250.25" },
  ],
};

function answer(body: unknown, status = 200) {
  const calls: string[] = [];
  vi.stubGlobal(
    "fetch",
    vi.fn(async (url: string) => {
      calls.push(url);
      return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
    }),
  );
  return calls;
}

afterEach(() => {
  vi.unstubAllGlobals();
  drawn.series = [];
});

it("draws the recorded equity, one point a second, and keeps the API's last figure", async () => {
  const calls = answer(SERIES);
  renderWithQuery(<EquityHistory accountId="acc-1" />);
  const chart = await screen.findByTestId("equity-chart");
  expect(calls).toEqual(["/api/portfolio/equity?account_id=acc-1"]);
  expect(drawn.series).toHaveLength(1); // no drawdown pane for an account
  expect(drawn.series[0]?.data).toEqual([
    { time: 1796392800, value: 100001.5 },
    { time: 1796392860, value: 100250.25 },
  ]);
  expect(chart).toHaveAttribute("data-last-equity", "100250.25");
  expect(chart).toHaveAttribute("data-last-ts", "2026-12-04T14:01:00Z");
  expect(screen.getByText(/nothing before that is reconstructed/)).toHaveTextContent(
    "Recorded every 60 s since 2026-12-04 14:00 UTC; nothing before that is reconstructed. 3 points, last 100250.25 AUD at 2026-12-04 14:01 UTC.",
  );
});

it("says that nothing is recorded yet, and that history is not invented", async () => {
  answer({ ...SERIES, recorded_since: null, points: [] });
  renderWithQuery(<EquityHistory accountId="acc-1" />);
  expect(await screen.findByTestId("equity-history-empty")).toHaveTextContent(
    "No equity recorded yet for this account.",
  );
  expect(screen.getByText(/history from before that is not reconstructed/)).toBeInTheDocument();
  expect(screen.queryByTestId("equity-chart")).toBeNull();
});

it("shows the server's refusal", async () => {
  answer({ error: "NotFoundError", detail: "no account acc-1: GET /api/accounts lists yours" }, 404);
  renderWithQuery(<EquityHistory accountId="acc-1" />);
  expect(await screen.findByRole("alert")).toHaveTextContent("no account acc-1");
});
