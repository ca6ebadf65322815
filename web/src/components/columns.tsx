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

/** An order's status badge, with the reason when it has one (a denial, a rejection). */
export function statusColumn<O extends { status: string; reason?: string | null }>(): Column<O> {
  return {
    key: "status",
    header: "Status",
    cell: (order) => (
      <>
        <span className={`status status-${order.status}`}>{order.status}</span>
        {order.reason && <span className="muted"> {order.reason}</span>}
      </>
    ),
  };
}
