import { AreaSeries, createChart, LineSeries, type IChartApi } from "lightweight-charts";
import { useEffect, useMemo, useRef, type ReactNode } from "react";
import { drawdowns, type EquityPoint } from "../lib/backtest";
import { seconds, themed, useRestyled } from "./Chart";

export const EQUITY_COLOUR = "#2962ff";
export const DRAWDOWN_COLOUR = "#ef5350";

/** One point per second, the last of each (the chart's time axis is in whole seconds and strictly rising). */
export function perSecond(curve: EquityPoint[]): EquityPoint[] {
  const kept: EquityPoint[] = [];
  for (const point of curve) {
    const previous = kept.at(-1);
    if (previous && seconds(previous.ts) === seconds(point.ts)) kept[kept.length - 1] = point;
    else kept.push(point);
  }
  return kept;
}

/**
 * An equity curve over time (top pane) and, unless `drawdown` is false, its drawdown under the
 * running peak (bottom pane): a stored backtest's, or an account's recorded equity.
 */
export function EquityChart({
  curve,
  start,
  currency,
  title = "Equity and drawdown",
  drawdown = true,
  exactLast,
  summary,
}: {
  curve: EquityPoint[];
  start: number | null;
  currency: string;
  title?: string;
  drawdown?: boolean;
  /** The last point's exact figure (a decimal string from the API), kept in `data-last-equity`. */
  exactLast?: string;
  /** What the line under the title says (by default: points, last figure and deepest drawdown). */
  summary?: ReactNode;
}) {
  const container = useRef<HTMLDivElement>(null);
  const chart = useRef<IChartApi | null>(null);
  const drawn = useMemo(() => perSecond(curve), [curve]);
  const underwater = useMemo(() => drawdowns(drawn, start), [drawn, start]);
  const deepest = drawdown && underwater.length ? Math.min(...underwater) : null;

  useEffect(() => {
    if (!container.current) return;
    // A small minimum bar spacing: the whole run fits a phone-width chart (thousands of daily points).
    const created = createChart(container.current, {
      ...themed(),
      autoSize: true,
      timeScale: { minBarSpacing: 0.05, lockVisibleTimeRangeOnResize: true, timeVisible: !drawdown },
    });
    // Display only: the chart draws floats; the exact figures are in the tables.
    const equity = created.addSeries(LineSeries, { color: EQUITY_COLOUR, lineWidth: 2, title: currency });
    equity.setData(drawn.map((p) => ({ time: seconds(p.ts), value: p.equity })));
    if (drawdown) {
      const series = created.addSeries(
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
      series.setData(drawn.map((p, i) => ({ time: seconds(p.ts), value: (underwater[i] ?? 0) * 100 })));
      created.panes()[1]?.setHeight(110);
    }
    created.timeScale().fitContent();
    chart.current = created;
    return () => {
      created.remove();
      chart.current = null;
    };
  }, [drawn, underwater, currency, drawdown]);

  useRestyled(chart);

  const last = curve.at(-1);
  return (
    <section className="panel chart-panel" aria-label={title}>
      <h2>{title}</h2>
      <p className="muted">
        {summary ?? (
          <>
            {curve.length} points
            {last && `, last ${last.equity.toFixed(2)} ${currency} on ${last.ts.slice(0, 10)}`}
            {deepest !== null && `; deepest drawdown ${(deepest * 100).toFixed(2)} %`}
          </>
        )}
      </p>
      <div
        className="chart"
        ref={container}
        data-testid="equity-chart"
        data-points={curve.length}
        data-last-equity={exactLast ?? last?.equity}
        data-last-ts={last?.ts}
        data-max-drawdown={deepest ?? undefined}
      />
    </section>
  );
}
