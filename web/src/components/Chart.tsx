import { useQuery } from "@tanstack/react-query";
import {
  CandlestickSeries,
  createChart,
  HistogramSeries,
  type IChartApi,
  type ISeriesApi,
  type UTCTimestamp,
} from "lightweight-charts";
import { useCallback, useEffect, useRef, useState, type RefObject } from "react";
import { api, ApiError } from "../api/client";
import type { LiveFrame } from "../api/live";
import type { Candle } from "../api/types";
import { useChannel, useThemeName } from "../hooks";

export const TIMEFRAMES = ["1m", "5m", "15m", "1h", "1d"] as const;
export type Timeframe = (typeof TIMEFRAMES)[number];
const PAGE = 300;

interface CandleList {
  candles: Candle[];
}

export function seconds(ts: string): UTCTimestamp {
  return Math.floor(Date.parse(ts) / 1000) as UTCTimestamp;
}

function bar(candle: Candle) {
  // Display only: the chart library draws numbers; the exact strings stay in `candles`.
  return {
    time: seconds(candle.ts),
    open: Number(candle.open),
    high: Number(candle.high),
    low: Number(candle.low),
    close: Number(candle.close),
  };
}

function volumeBar(candle: Candle) {
  const up = Number(candle.close) >= Number(candle.open);
  return {
    time: seconds(candle.ts),
    value: Number(candle.volume),
    color: up ? "rgba(38,166,154,0.5)" : "rgba(239,83,80,0.5)",
  };
}

function candlesUrl(symbol: string, timeframe: Timeframe, end?: string): string {
  const params = new URLSearchParams({ symbol, timeframe, limit: String(PAGE) });
  if (end) params.set("end", end);
  return `/api/market/candles?${params.toString()}`;
}

function palette() {
  const style = getComputedStyle(document.documentElement);
  const read = (name: string, fallback: string) => style.getPropertyValue(name).trim() || fallback;
  return {
    background: read("--panel", "#131722"),
    text: read("--text", "#d1d4dc"),
    grid: read("--grid", "#2a2e39"),
  };
}

/** A chart's colours from the page's theme (CSS variables). */
export function themed() {
  const colours = palette();
  return {
    layout: { background: { color: colours.background }, textColor: colours.text, attributionLogo: true },
    grid: { vertLines: { color: colours.grid }, horzLines: { color: colours.grid } },
  };
}

/** Recolours `chart` when the theme changes. */
export function useRestyled(chart: RefObject<IChartApi | null>): void {
  const theme = useThemeName();
  useEffect(() => {
    chart.current?.applyOptions(themed());
  }, [chart, theme]);
}

export function Chart({ symbol }: { symbol: string }) {
  const [timeframe, setTimeframe] = useState<Timeframe>("1d");
  const container = useRef<HTMLDivElement>(null);
  const chart = useRef<IChartApi | null>(null);
  const candleSeries = useRef<ISeriesApi<"Candlestick"> | null>(null);
  const volumeSeries = useRef<ISeriesApi<"Histogram"> | null>(null);
  const history = useRef<Candle[]>([]);
  const loadingOlder = useRef(false);
  const exhausted = useRef(false);
  const [liveLast, setLiveLast] = useState<Candle | null>(null);
  const [olderError, setOlderError] = useState<string | null>(null);

  const query = useQuery({
    queryKey: ["candles", symbol, timeframe],
    queryFn: async () => (await api<CandleList>(candlesUrl(symbol, timeframe))).candles,
    staleTime: Infinity,
  });

  const draw = useCallback((candles: Candle[]) => {
    history.current = [...candles]; // live candles are appended here, never to the query's data
    candleSeries.current?.setData(candles.map(bar));
    volumeSeries.current?.setData(candles.map(volumeBar));
  }, []);

  // The chart itself: created once per mount, restyled on theme change.
  useEffect(() => {
    if (!container.current) return;
    const created = createChart(container.current, {
      ...themed(),
      autoSize: true,
      timeScale: { timeVisible: true, secondsVisible: false },
    });
    candleSeries.current = created.addSeries(CandlestickSeries, {
      upColor: "#26a69a",
      downColor: "#ef5350",
      borderVisible: false,
      wickUpColor: "#26a69a",
      wickDownColor: "#ef5350",
    });
    volumeSeries.current = created.addSeries(HistogramSeries, {
      priceScaleId: "",
      priceFormat: { type: "volume" },
    });
    volumeSeries.current.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    chart.current = created;
    return () => {
      created.remove();
      chart.current = null;
      candleSeries.current = null;
      volumeSeries.current = null;
    };
  }, []);

  useRestyled(chart);

  useEffect(() => {
    exhausted.current = false;
    if (query.data) {
      draw(query.data);
      const count = query.data.length;
      chart.current?.timeScale().setVisibleLogicalRange({ from: Math.max(0, count - 150), to: count + 2 });
    }
  }, [query.data, draw]);

  // History by range: scrolling near the oldest candle loads the page before it.
  useEffect(() => {
    const current = chart.current;
    if (!current) return;
    const onRange = (range: { from: number } | null) => {
      if (!range || range.from > 10 || loadingOlder.current || exhausted.current) return;
      const oldest = history.current[0];
      if (!oldest) return;
      loadingOlder.current = true;
      api<CandleList>(candlesUrl(symbol, timeframe, oldest.ts))
        .then(({ candles }) => {
          const older = candles.filter((c) => c.ts < oldest.ts);
          if (older.length === 0) exhausted.current = true;
          else draw([...older, ...history.current]);
          setOlderError(null);
        })
        .catch((error: unknown) => {
          exhausted.current = true;
          setOlderError(error instanceof ApiError ? error.detail : "could not load older candles");
        })
        .finally(() => {
          loadingOlder.current = false;
        });
    };
    current.timeScale().subscribeVisibleLogicalRangeChange(onRange);
    return () => current.timeScale().unsubscribeVisibleLogicalRangeChange(onRange);
  }, [symbol, timeframe, draw]);

  // The current candle, live.
  const onCandle = useCallback((frame: LiveFrame) => {
    const data = frame.data as unknown as Candle | undefined;
    if (!data || typeof data.ts !== "string") return;
    const candles = history.current;
    const newest = candles.at(-1);
    if (newest && data.ts < newest.ts) return;
    const candle: Candle = {
      ts: data.ts,
      open: data.open,
      high: data.high,
      low: data.low,
      close: data.close,
      volume: data.volume,
    };
    if (newest && newest.ts === candle.ts) candles[candles.length - 1] = candle;
    else candles.push(candle);
    candleSeries.current?.update(bar(candle));
    volumeSeries.current?.update(volumeBar(candle));
    setLiveLast(candle);
  }, []);
  useChannel(`candles:${symbol}:${timeframe}`, onCandle);
  const loadedLast = query.data?.at(-1) ?? null;
  const last = liveLast && (!loadedLast || liveLast.ts >= loadedLast.ts) ? liveLast : loadedLast;

  return (
    <section className="panel chart-panel" aria-label={`${symbol} chart`}>
      <div className="chart-toolbar">
        <h2>{symbol}</h2>
        <div role="group" aria-label="Timeframe">
          {TIMEFRAMES.map((tf) => (
            <button
              key={tf}
              type="button"
              aria-pressed={tf === timeframe}
              className={tf === timeframe ? "active" : ""}
              onClick={() => {
                setTimeframe(tf);
                setLiveLast(null);
              }}
            >
              {tf}
            </button>
          ))}
        </div>
        {last && (
          <dl className="ohlc" data-testid="last-candle" data-ts={last.ts}>
            <dt>O</dt>
            <dd data-field="open">{last.open}</dd>
            <dt>H</dt>
            <dd data-field="high">{last.high}</dd>
            <dt>L</dt>
            <dd data-field="low">{last.low}</dd>
            <dt>C</dt>
            <dd data-field="close">{last.close}</dd>
          </dl>
        )}
      </div>
      {query.error && (
        <p className="error" role="alert">
          {query.error instanceof ApiError ? query.error.detail : "could not load candles"}
        </p>
      )}
      {olderError && <p className="muted">{olderError}</p>}
      <div
        className="chart"
        ref={container}
        data-testid="chart"
        data-history-last={loadedLast ? JSON.stringify(loadedLast) : undefined}
      />
    </section>
  );
}
