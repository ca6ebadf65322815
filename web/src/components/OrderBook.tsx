import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useCallback } from "react";
import { api, ApiError } from "../api/client";
import type { LiveFrame } from "../api/live";
import type { OrderBook as Book } from "../api/types";
import { useChannel } from "../hooks";

export function OrderBook({ symbol }: { symbol: string }) {
  const queryClient = useQueryClient();
  const key = ["orderbook", symbol];
  const book = useQuery({
    queryKey: key,
    queryFn: () => api<Book>(`/api/market/orderbook?symbol=${encodeURIComponent(symbol)}&depth=10`),
    retry: false,
  });
  const onBook = useCallback(
    (frame: LiveFrame) => {
      const data = frame.data as unknown as Book;
      queryClient.setQueryData(["orderbook", symbol], {
        ...data,
        bids: data.bids.slice(0, 10),
        asks: data.asks.slice(0, 10),
      });
    },
    [queryClient, symbol],
  );
  useChannel(`orderbook:${symbol}`, onBook);
  const data = book.data;
  const largest = data ? Math.max(1, ...[...data.bids, ...data.asks].map(([, size]) => Number(size))) : 1;
  return (
    <section className="panel book" aria-label="Order book">
      <h2>Order book</h2>
      {book.error && !data && (
        <p className="muted">{book.error instanceof ApiError ? book.error.detail : "no order book"}</p>
      )}
      {data && (
        <table className="ladder">
          <thead>
            <tr>
              <th scope="col" className="num">
                Price
              </th>
              <th scope="col" className="num">
                Size
              </th>
            </tr>
          </thead>
          <tbody>
            {[...data.asks].reverse().map(([price, size]) => (
              <tr key={`a${price}`} className="ask">
                <td className="num">{price}</td>
                <td
                  className="num depth"
                  style={{ "--depth": `${(Number(size) / largest) * 100}%` } as React.CSSProperties}
                >
                  {size}
                </td>
              </tr>
            ))}
            {data.bids.map(([price, size]) => (
              <tr key={`b${price}`} className="bid">
                <td className="num">{price}</td>
                <td
                  className="num depth"
                  style={{ "--depth": `${(Number(size) / largest) * 100}%` } as React.CSSProperties}
                >
                  {size}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
