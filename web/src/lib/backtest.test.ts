import { drawdowns, equityCurve, minute, stat } from "./backtest";

const point = (equity: number, day = 1) => ({ ts: `2020-01-0${day}T00:00:00+00:00`, equity });

it("measures the drawdown under the running peak, starting from the capital", () => {
  const curve = [point(100), point(110, 2), point(99, 3), point(121, 4), point(108.9, 5)];
  const under = drawdowns(curve, 100);
  expect(under[0]).toBe(0);
  expect(under[1]).toBe(0);
  expect(under[2]).toBeCloseTo(-0.1, 12);
  expect(under[3]).toBe(0);
  expect(under[4]).toBeCloseTo(-0.1, 12);
  // A curve that starts below the capital is already under water.
  expect(drawdowns([point(90)], 100)[0]).toBeCloseTo(-0.1, 12);
  expect(drawdowns([point(90)])[0]).toBe(0);
});

it("reads the stored result and metrics without trusting their shape", () => {
  expect(equityCurve({ equity: [point(1), { ts: 5, equity: 2 }, null, point(3, 2)] })).toEqual([
    point(1),
    point(3, 2),
  ]);
  expect(equityCurve({})).toEqual([]);
  expect(stat({ sharpe: 0.7, sortino: null, calmar: "1" }, "sharpe")).toBe(0.7);
  expect(stat({ sortino: null }, "sortino")).toBeNull();
  expect(stat({ calmar: "1" }, "calmar")).toBeNull();
  expect(minute("2026-12-04T13:45:12.5+00:00")).toBe("2026-12-04 13:45 UTC");
});
