import { AreaSeries, createChart, LineSeries, type IChartApi } from "lightweight-charts";
import { useEffect, useMemo, useRef } from "react";
import { drawdowns, type EquityPoint } from "../lib/backtest";
import { seconds, themed, useRestyled } from "./Chart";

export const EQUITY_COLOUR = "#2962ff";
export const DRAWDOWN_COLOUR = "#ef5350";

/** A stored run's equity curve (top pane) and its drawdown under the running peak (bottom pane). */
export function EquityChart({
  curve,
  start,
  currency,
}: {
  curve: EquityPoint[];
  start: number | null;
  currency: string;
}) {
  const container = useRef<HTMLDivElement>(null);
  const chart = useRef<IChartApi | null>(null);
  const underwater = useMemo(() => drawdowns(curve, start), [curve, start]);
  const deepest = underwater.length ? Math.min(...underwater) : null;

  useEffect(() => {
    if (!container.current) return;
    // A small minimum bar spacing: the whole run fits a phone-width chart (thousands of daily points).
    const created = createChart(container.current, {
      ...themed(),
      autoSize: true,
      timeScale: { minBarSpacing: 0.05, lockVisibleTimeRangeOnResize: true },
    });
    // Display only: the chart draws floats; the exact figures are in the metrics table.
    const equity = created.addSeries(LineSeries, { color: EQUITY_COLOUR, lineWidth: 2, title: currency });
    equity.setData(curve.map((p) => ({ time: seconds(p.ts), value: p.equity })));
    const drawdown = created.addSeries(
      AreaSeries,
      {
        lineColor: DRAWDOWN_COLOUR,
        topColor: "rgba(239,83,80,0.05)",
        bottomColor: "rgba(239,83,80,0.4)",
        lineWidth: 1,
        title: "drawdown",
        priceFormat: { type: "percent" },
      },
      1,
    );
    drawdown.setData(curve.map((p, i) => ({ time: seconds(p.ts), value: (underwater[i] ?? 0) * 100 })));
    created.panes()[1]?.setHeight(110);
    created.timeScale().fitContent();
    chart.current = created;
    return () => {
      created.remove();
      chart.current = null;
    };
  }, [curve, underwater, currency]);

  useRestyled(chart);

  const last = curve.at(-1);
  return (
    <section className="panel chart-panel" aria-label="Equity curve">
      <h2>Equity and drawdown</h2>
      <p className="muted">
        {curve.length} points
        {last && `, last ${last.equity.toFixed(2)} ${currency} on ${last.ts.slice(0, 10)}`}
        {deepest !== null && `; deepest drawdown ${(deepest * 100).toFixed(2)} %`}
      </p>
      <div
        className="chart"
        ref={container}
        data-testid="equity-chart"
        data-points={curve.length}
        data-last-equity={last?.equity}
        data-max-drawdown={deepest ?? undefined}
      />
    </section>
  );
}
