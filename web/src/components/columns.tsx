import type { Column } from "./DataTable";
import { time } from "../lib/format";

interface FillLike {
  ts: string;
  symbol: string;
  side: string;
  quantity: string;
  price: string;
}

/** The columns every fills table starts with (live fills, a backtest's fills), then `extra`. */
export function fillColumns<F extends FillLike>(extra: Column<F>[] = []): Column<F>[] {
  return [
    { key: "time", header: "Time", cell: (fill) => time(fill.ts) },
    { key: "symbol", header: "Symbol", cell: (fill) => fill.symbol },
    {
      key: "side",
      header: "Side",
      cell: (fill) => fill.side,
      attributes: (fill) => ({ className: fill.side }),
    },
    { key: "quantity", header: "Qty", num: true, cell: (fill) => fill.quantity },
    { key: "price", header: "Price", num: true, cell: (fill) => fill.price },
    ...extra,
  ];
}
