import { useCallback, useState } from "react";
import { useParams } from "react-router-dom";
import type { LiveFrame } from "../api/live";
import { useInstruments } from "../api/queries";
import type { Quote } from "../api/types";
import { useAccount, useAuth } from "../auth";
import { Chart } from "../components/Chart";
import { InstrumentInfo } from "../components/InstrumentInfo";
import { OrderBook } from "../components/OrderBook";
import { TradeTicket } from "../components/TradeTicket";
import { Watchlist } from "../components/Watchlist";
import { useChannel } from "../hooks";

export function Markets() {
  const { symbol: routed } = useParams();
  const instruments = useInstruments();
  const { can } = useAuth();
  const accountId = useAccount();
  const [quote, setQuote] = useState<Quote | null>(null);
  const list = instruments.data ?? [];
  const symbol = (routed ?? "AAPL").toUpperCase();
  const instrument = list.find((i) => i.symbol === symbol) ?? list[0];
  const onQuote = useCallback((frame: LiveFrame) => setQuote(frame.data as unknown as Quote), []);
  useChannel(instrument ? `quotes:${instrument.symbol}` : null, onQuote);
  if (instruments.isPending) return <p className="loading">Loading instruments…</p>;
  if (!instrument) return <p className="error">No instruments are configured.</p>;
  const current = quote?.symbol === instrument.symbol ? quote : null;
  return (
    <div className="markets">
      <h1 className="visually-hidden">Markets</h1>
      <Watchlist instruments={list} selected={instrument.symbol} />
      <Chart key={instrument.symbol} symbol={instrument.symbol} />
      <div className="side-panels">
        {can("trade:own") && accountId && (
          <TradeTicket
            key={instrument.symbol}
            instrument={instrument}
            quote={current}
            accountId={accountId}
          />
        )}
        <OrderBook symbol={instrument.symbol} />
        <InstrumentInfo instrument={instrument} />
      </div>
    </div>
  );
}
