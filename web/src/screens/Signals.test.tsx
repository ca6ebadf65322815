import { screen, within } from "@testing-library/react";
import { MemoryRouter } from "react-router-dom";
import { renderWithQuery } from "../test/render";
import Signals, { accuracyText } from "./Signals";

const SIGNALS = {
  model_version: "alpha-20260101-abc",
  as_of: "2013-02-15",
  horizon_days: 5,
  signals: [
    { symbol: "MSFT", score: 0.0123, rank: 1, universe_size: 3, percentile: 1, direction: "long" },
    { symbol: "AAPL", score: 0.0001, rank: 2, universe_size: 3, percentile: 0.5, direction: "flat" },
    { symbol: "IBM", score: -0.02, rank: 3, universe_size: 3, percentile: 0, direction: "short" },
  ].map((s) => ({ ...s, model_version: "alpha-20260101-abc", as_of: "2013-02-15", horizon_days: 5 })),
};
const MODELS = {
  models: [
    {
      version: "alpha-20260101-abc",
      kind: "alpha",
      created_at: "2026-01-01T00:00:00Z",
      promoted: true,
      promoted_at: "2026-01-01T00:00:00Z",
      data_fingerprint: "f",
      horizon: 5,
      universe: ["AAPL", "IBM", "MSFT"],
      training_window: ["2009-01-02", "2013-02-15"],
      metrics: {
        model: { ic: 0.0421, rank_ic: 0.05, hit_rate: 0.53 },
        momentum: { ic: null, rank_ic: 0.01 },
      },
    },
  ],
};

/** Answers by URL (the screen's three queries run in parallel, in any order). */
function routedFetch(routes: Record<string, [number, unknown]>) {
  vi.stubGlobal(
    "fetch",
    vi.fn(async (url: string) => {
      const [status, body] = routes[url] ?? [500, { detail: `unexpected ${url}` }];
      return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
    }),
  );
}

afterEach(() => vi.unstubAllGlobals());

function show() {
  renderWithQuery(
    <MemoryRouter>
      <Signals />
    </MemoryRouter>,
  );
}

it("shows the ranked universe, the model's out-of-sample figures and its live accuracy", async () => {
  routedFetch({
    "/api/trading/signals": [200, SIGNALS],
    "/api/models": [200, MODELS],
    "/api/trading/signals/accuracy": [
      200,
      {
        scope: "installation",
        models: [
          {
            model_version: "alpha-20260101-abc",
            kind: "alpha",
            hits: 7,
            calls: 12,
            accuracy: 7 / 12,
            pending: 1,
          },
          { model_version: "lob-1", kind: "orderbook", hits: 0, calls: 0, accuracy: null, pending: 3 },
        ],
      },
    ],
  });
  show();
  const table = await screen.findByTestId("signals-table");
  const rows = within(table).getAllByRole("row").slice(1);
  expect(rows.map((row) => row.getAttribute("data-symbol"))).toEqual(["MSFT", "AAPL", "IBM"]);
  expect(within(rows[0]!).getByText("long")).toHaveClass("up");
  expect(within(rows[2]!).getByText("short")).toHaveClass("down");
  expect(within(rows[2]!).getByText("-0.02000")).toBeInTheDocument();
  expect(within(rows[0]!).getByRole("link", { name: "MSFT" })).toHaveAttribute("href", "/markets/MSFT");
  expect(screen.getByTestId("model-version")).toHaveTextContent("alpha-20260101-abc");
  expect(await screen.findByText("58.3 % (7 of 12, 1 waiting)")).toBeInTheDocument();
  expect(await screen.findByText("0.0421")).toBeInTheDocument();
  expect(screen.getByText(/trained 2009-01-02 to 2013-02-15/)).toBeInTheDocument();
  const others = screen.getByRole("region", { name: "Other models" });
  expect(within(others).getByText("no call judged yet (3 waiting for their horizon)")).toBeInTheDocument();
});

it("says why there are no signals yet instead of an empty table", async () => {
  routedFetch({
    "/api/trading/signals": [
      409,
      {
        error: "ConflictError",
        detail: "no promoted alpha model: train one with `tradestack signals train --promote`",
      },
    ],
    "/api/models": [200, { models: [] }],
    "/api/trading/signals/accuracy": [200, { scope: "installation", models: [] }],
  });
  show();
  expect(await screen.findByTestId("signals-error")).toHaveTextContent("no promoted alpha model");
  expect(screen.getByText(/trains a model in the background/)).toBeInTheDocument();
  expect(screen.queryByTestId("signals-table")).toBeNull();
});

it("says when the model was never evaluated out of sample instead of a table of dashes", async () => {
  const quick = { ...MODELS.models[0]!, metrics: {} };
  routedFetch({
    "/api/trading/signals": [200, SIGNALS],
    "/api/models": [200, { models: [quick] }],
    "/api/trading/signals/accuracy": [200, { scope: "installation", models: [] }],
  });
  show();
  expect(await screen.findByTestId("not-evaluated")).toHaveTextContent("tradestack signals train --promote");
  expect(screen.queryByRole("table", { name: "Out-of-sample evaluation" })).toBeNull();
  expect(screen.getByTestId("live-accuracy")).toHaveTextContent("not served yet");
});

it("words the live accuracy honestly before any call is judged", () => {
  expect(accuracyText(undefined)).toBe("not served yet");
  const none = { model_version: "v", kind: "alpha" as const, hits: 0, calls: 0, accuracy: null, pending: 0 };
  expect(accuracyText(none)).toBe("no call judged yet");
  expect(accuracyText({ ...none, hits: 1, calls: 2, accuracy: 0.5 })).toBe("50.0 % (1 of 2)");
});
