import { useQuery } from "@tanstack/react-query";
import { useCallback, useState } from "react";
import { Link } from "react-router-dom";
import { api } from "../api/client";
import type { LiveFrame } from "../api/live";
import type { Candle, Instrument, Quote } from "../api/types";
import { percentChange } from "../lib/decimal";
import { useChannel } from "../hooks";

function WatchRow({ instrument, selected }: { instrument: Instrument; selected: boolean }) {
  const symbol = instrument.symbol;
  const [quote, setQuote] = useState<Quote | null>(null);
  const [tick, setTick] = useState<{ direction: "up" | "down" | ""; n: number }>({ direction: "", n: 0 });
  const daily = useQuery({
    queryKey: ["candles", symbol, "1d", "prev"],
    queryFn: async () =>
      (
        await api<{ candles: Candle[] }>(
          `/api/market/candles?symbol=${encodeURIComponent(symbol)}&timeframe=1d&limit=2`,
        )
      ).candles,
    staleTime: 60_000,
    retry: false,
  });
  const onQuote = useCallback((frame: LiveFrame) => {
    const next = frame.data as unknown as Quote;
    setQuote((previous) => {
      if (previous && previous.last !== next.last) {
        const up = Number(next.last) > Number(previous.last);
        setTick((t) => ({ direction: up ? "up" : "down", n: t.n + 1 }));
      }
      return next;
    });
  }, []);
  useChannel(`quotes:${symbol}`, onQuote);
  const previousClose =
    daily.data && daily.data.length >= 2 ? daily.data[daily.data.length - 2]?.close : undefined;
  const change = quote && previousClose ? percentChange(previousClose, quote.last) : null;
  return (
    <tr className={selected ? "selected" : ""} data-symbol={symbol}>
      <th scope="row">
        <Link to={`/markets/${symbol}`} aria-current={selected ? "page" : undefined}>
          {symbol}
        </Link>
      </th>
      <td className="num">{quote?.bid ?? "–"}</td>
      <td className="num">{quote?.ask ?? "–"}</td>
      <td key={tick.n} className={`num last flash-${tick.direction}`} data-testid={`last-${symbol}`}>
        {quote?.last ?? "–"}
      </td>
      <td className={`num ${change?.startsWith("-") ? "down" : "up"}`}>
        {change === null ? "–" : `${change}%`}
      </td>
    </tr>
  );
}

export function Watchlist({ instruments, selected }: { instruments: Instrument[]; selected: string }) {
  return (
    <section className="panel watchlist" aria-label="Watchlist">
      <h2>Watchlist</h2>
      <div className="scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">Symbol</th>
              <th scope="col" className="num">
                Bid
              </th>
              <th scope="col" className="num">
                Ask
              </th>
              <th scope="col" className="num">
                Last
              </th>
              <th scope="col" className="num">
                <abbr title="Change since the previous daily close">Chg</abbr>
              </th>
            </tr>
          </thead>
          <tbody>
            {instruments.map((instrument) => (
              <WatchRow
                key={instrument.symbol}
                instrument={instrument}
                selected={instrument.symbol === selected}
              />
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
