// The chart library needs a real canvas: tests mock it with this module and read what was drawn.
//   vi.mock("lightweight-charts", () => import("../test/chart"));

export const drawn = { series: [] as { options: Record<string, unknown>; data: unknown[] }[] };

function series(options: Record<string, unknown>) {
  const one = { options, data: [] as unknown[] };
  drawn.series.push(one);
  return { setData: (data: unknown[]) => (one.data = data) };
}

export const LineSeries = "Line";
export const AreaSeries = "Area";
export const CandlestickSeries = "Candlestick";
export const HistogramSeries = "Histogram";

export function createChart() {
  return {
    addSeries: (_kind: string, options: Record<string, unknown>) => series(options),
    panes: () => [{ setHeight: () => undefined }, { setHeight: () => undefined }],
    timeScale: () => ({ fitContent: () => undefined }),
    applyOptions: () => undefined,
    remove: () => undefined,
  };
}
