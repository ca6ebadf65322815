import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useCallback, useState, type FormEvent } from "react";
import { Link, useParams } from "react-router-dom";
import { api, ApiError } from "../api/client";
import type { Fill, FillPage, Order, OrderEvent, OrderPage } from "../api/types";
import { useAccount, useAuth } from "../auth";
import { fillColumns, statusColumn } from "../components/columns";
import { DataTable, type Column } from "../components/DataTable";
import { time } from "../lib/format";
import { useAccountStream } from "../hooks";

const FILTERS = ["all", "open", "filled", "canceled", "denied"] as const;
type Filter = (typeof FILTERS)[number];
const FINAL = new Set(["filled", "canceled", "denied", "expired", "rejected"]);

function useLiveOrders() {
  const queryClient = useQueryClient();
  const onOrder = useCallback(() => {
    void queryClient.invalidateQueries({ queryKey: ["orders"] });
    void queryClient.invalidateQueries({ queryKey: ["order"] });
  }, [queryClient]);
  const onFill = useCallback(() => {
    void queryClient.invalidateQueries({ queryKey: ["fills"] });
    void queryClient.invalidateQueries({ queryKey: ["portfolio"] });
  }, [queryClient]);
  useAccountStream("orders", onOrder);
  useAccountStream("fills", onFill);
}

function CancelButton({ order }: { order: Order }) {
  const queryClient = useQueryClient();
  const cancel = useMutation({
    mutationFn: () => api<Order>(`/api/orders/${order.id}`, { method: "DELETE" }),
    onSettled: () => queryClient.invalidateQueries({ queryKey: ["orders"] }),
  });
  if (FINAL.has(order.status)) return null;
  return (
    <>
      <button
        type="button"
        onClick={() => cancel.mutate()}
        disabled={cancel.isPending}
        aria-label={`Cancel order ${order.id.slice(0, 8)}`}
      >
        Cancel
      </button>
      {cancel.error && <span className="field-error">{(cancel.error as ApiError).detail}</span>}
    </>
  );
}

function OrdersTable({ canTrade }: { canTrade: boolean }) {
  const [filter, setFilter] = useState<Filter>("all");
  const [symbol, setSymbol] = useState("");
  const params = new URLSearchParams({ limit: "100" });
  if (filter !== "all") params.set("status", filter);
  if (symbol.trim()) params.set("symbol", symbol.trim().toUpperCase());
  const orders = useQuery({
    queryKey: ["orders", filter, symbol.trim().toUpperCase()],
    queryFn: () => api<OrderPage>(`/api/orders?${params.toString()}`),
  });
  return (
    <section className="panel" aria-label="Orders">
      <h2>Orders</h2>
      <div className="filters">
        <div role="group" aria-label="Status filter">
          {FILTERS.map((f) => (
            <button
              key={f}
              type="button"
              aria-pressed={f === filter}
              className={f === filter ? "active" : ""}
              onClick={() => setFilter(f)}
            >
              {f}
            </button>
          ))}
        </div>
        <label>
          Symbol <input value={symbol} onChange={(e) => setSymbol(e.target.value)} size={10} />
        </label>
      </div>
      {orders.error && <p className="error">{(orders.error as ApiError).detail}</p>}
      <DataTable
        testId="orders-table"
        columns={orderColumns(canTrade)}
        rows={orders.data?.items ?? []}
        rowKey={(order) => order.id}
        rowAttributes={(order) => ({ "data-order-id": order.id, "data-status": order.status })}
      />
    </section>
  );
}

function orderColumns(canTrade: boolean): Column<Order>[] {
  return [
    {
      key: "time",
      header: "Time",
      cell: (order) => <Link to={`/orders/${order.id}`}>{time(order.created_at)}</Link>,
    },
    { key: "symbol", header: "Symbol", cell: (order) => order.symbol },
    {
      key: "side",
      header: "Side",
      cell: (order) => order.side,
      attributes: (order) => ({ className: order.side }),
    },
    { key: "type", header: "Type", cell: (order) => `${order.type} ${order.time_in_force}` },
    { key: "quantity", header: "Qty", num: true, cell: (order) => order.quantity },
    { key: "limit", header: "Limit", num: true, cell: (order) => order.limit_price ?? "–" },
    { key: "filled", header: "Filled", num: true, cell: (order) => order.filled_quantity },
    { key: "average", header: "Avg price", num: true, cell: (order) => order.average_fill_price ?? "–" },
    statusColumn<Order>(),
    {
      key: "actions",
      header: <span className="visually-hidden">Actions</span>,
      cell: (order) => canTrade && <CancelButton order={order} />,
    },
  ];
}

function FillsTable({ accountId }: { accountId: string }) {
  const fills = useQuery({
    queryKey: ["fills", accountId],
    queryFn: () => api<FillPage>(`/api/fills?account_id=${encodeURIComponent(accountId)}&limit=50`),
  });
  return (
    <section className="panel" aria-label="Fills">
      <h2>Fills</h2>
      <DataTable
        testId="fills-table"
        columns={fillColumns<Fill>([
          { key: "fee", header: "Fee", num: true, cell: (fill) => `${fill.fee} ${fill.fee_currency}` },
          { key: "liquidity", header: "Liquidity", cell: (fill) => fill.liquidity },
        ])}
        rows={fills.data?.items ?? []}
        rowKey={(fill) => fill.id}
      />
    </section>
  );
}

function ReplaceForm({ order }: { order: Order }) {
  const queryClient = useQueryClient();
  const [quantity, setQuantity] = useState(order.quantity);
  const [limit, setLimit] = useState(order.limit_price ?? "");
  const replace = useMutation({
    mutationFn: () =>
      api<Order>(`/api/orders/${order.id}`, {
        method: "PATCH",
        json: { quantity, ...(order.limit_price ? { limit_price: limit } : {}) },
      }),
    onSettled: () => {
      void queryClient.invalidateQueries({ queryKey: ["order", order.id] });
      void queryClient.invalidateQueries({ queryKey: ["orders"] });
    },
  });
  function submit(event: FormEvent) {
    event.preventDefault();
    replace.mutate();
  }
  return (
    <form onSubmit={submit} className="replace" aria-label="Replace order">
      <label>
        Quantity <input value={quantity} onChange={(e) => setQuantity(e.target.value)} inputMode="decimal" />
      </label>
      {order.limit_price && (
        <label>
          Limit price <input value={limit} onChange={(e) => setLimit(e.target.value)} inputMode="decimal" />
        </label>
      )}
      <button type="submit" disabled={replace.isPending}>
        Replace
      </button>
      {replace.error && (
        <p className="field-error" role="alert">
          {(replace.error as ApiError).detail}
        </p>
      )}
    </form>
  );
}

function OrderDetail({ orderId, canTrade }: { orderId: string; canTrade: boolean }) {
  const order = useQuery({
    queryKey: ["order", orderId],
    queryFn: () => api<Order>(`/api/orders/${orderId}`),
  });
  const events = useQuery({
    queryKey: ["order", orderId, "events"],
    queryFn: () => api<OrderEvent[]>(`/api/orders/${orderId}/events`),
  });
  if (order.error) return <p className="error">{(order.error as ApiError).detail}</p>;
  const data = order.data;
  return (
    <section className="panel" aria-label="Order detail">
      <p>
        <Link to="/orders">← All orders</Link>
      </p>
      {data && (
        <>
          <h2>
            {data.side} {data.quantity} {data.symbol} —{" "}
            <span className={`status status-${data.status}`}>{data.status}</span>
          </h2>
          <dl className="grid">
            <dt>Order id</dt>
            <dd>{data.id}</dd>
            <dt>Client order id</dt>
            <dd>{data.client_order_id}</dd>
            <dt>Type</dt>
            <dd>
              {data.type} {data.time_in_force}
            </dd>
            <dt>Limit / stop</dt>
            <dd>
              {data.limit_price ?? "–"} / {data.stop_price ?? "–"}
            </dd>
            <dt>Filled</dt>
            <dd>
              {data.filled_quantity} at {data.average_fill_price ?? "–"}
            </dd>
            {data.reason && (
              <>
                <dt>Reason</dt>
                <dd>{data.reason}</dd>
              </>
            )}
          </dl>
          {canTrade && !FINAL.has(data.status) && (
            <div className="actions">
              <CancelButton order={data} />
              <ReplaceForm order={data} />
            </div>
          )}
        </>
      )}
      <h3>Events</h3>
      <ol className="events">
        {events.data?.map((event) => (
          <li key={event.seq}>
            <strong>{event.kind}</strong> <time dateTime={event.ts}>{time(event.ts)}</time>{" "}
            <code>{JSON.stringify(event.data)}</code>
          </li>
        ))}
      </ol>
    </section>
  );
}

export default function Orders() {
  const { orderId } = useParams();
  const { can } = useAuth();
  const accountId = useAccount();
  useLiveOrders();
  const canTrade = can("trade:own");
  return (
    <div className="stack">
      <h1 className="visually-hidden">Orders and fills</h1>
      {orderId ? <OrderDetail orderId={orderId} canTrade={canTrade} /> : <OrdersTable canTrade={canTrade} />}
      {!orderId && accountId && <FillsTable accountId={accountId} />}
    </div>
  );
}
