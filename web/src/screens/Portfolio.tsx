import { useQueryClient } from "@tanstack/react-query";
import { useCallback } from "react";
import { ApiError } from "../api/client";
import { usePortfolio } from "../api/queries";
import { useAccount } from "../auth";
import { useAccountStream } from "../hooks";
import { compare, round } from "../lib/decimal";

function money(value: string | null | undefined, currency: string): string {
  return value === null || value === undefined ? "–" : `${round(value, 2)} ${currency}`;
}

function sign(value: string | null | undefined): string {
  if (value === null || value === undefined) return "";
  const rounded = compare(round(value, 2), "0");
  return rounded < 0 ? "down" : rounded > 0 ? "up" : "";
}

export default function Portfolio() {
  const accountId = useAccount();
  const queryClient = useQueryClient();
  const portfolio = usePortfolio(accountId);
  const refresh = useCallback(() => {
    void queryClient.invalidateQueries({ queryKey: ["portfolio"] });
  }, [queryClient]);
  useAccountStream("portfolio", refresh);
  useAccountStream("fills", refresh);
  if (!accountId) return <p className="panel">You have no trading account.</p>;
  if (portfolio.error) return <p className="error">{(portfolio.error as ApiError).detail}</p>;
  const data = portfolio.data;
  if (!data) return <p className="loading">Loading portfolio…</p>;
  const base = data.base_currency;
  return (
    <div className="stack">
      <h1 className="visually-hidden">Portfolio</h1>
      <section className="panel summary" aria-label="Equity">
        <div className="figure">
          <span className="label">Equity</span>
          <span className="value" data-testid="equity">
            {money(data.equity, base)}
          </span>
        </div>
        <div className="figure">
          <span className="label">Cash ({base})</span>
          <span className="value">{money(data.cash_base, base)}</span>
        </div>
        <div className="figure">
          <span className="label">Positions ({base})</span>
          <span className="value">{money(data.market_value_base, base)}</span>
        </div>
        <div className="figure">
          <span className="label">Unrealised P&amp;L</span>
          <span className={`value ${sign(data.unrealized_pnl_base)}`}>
            {money(data.unrealized_pnl_base, base)}
          </span>
        </div>
        <p className="muted">As of {new Date(data.as_of).toLocaleString()}</p>
        {data.problems.map((problem) => (
          <p key={problem} className="error">
            {problem}
          </p>
        ))}
      </section>
      <div className="columns">
        <section className="panel" aria-label="Cash">
          <h2>Cash by currency</h2>
          <div className="scroll">
            <table data-testid="cash-table">
              <thead>
                <tr>
                  <th scope="col">Currency</th>
                  <th scope="col" className="num">
                    Balance
                  </th>
                  <th scope="col" className="num">
                    Realised P&amp;L
                  </th>
                  <th scope="col" className="num">
                    Fees
                  </th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(data.cash).map(([currency, amount]) => (
                  <tr key={currency} data-currency={currency}>
                    <th scope="row">{currency}</th>
                    <td className="num">{amount}</td>
                    <td className="num">{data.realized_pnl[currency] ?? "0"}</td>
                    <td className="num">{data.fees[currency] ?? "0"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {Object.keys(data.fx_rates).length > 0 && (
            <p className="muted">
              FX used:{" "}
              {Object.entries(data.fx_rates)
                .map(([pair, rate]) => `${pair} ${rate}`)
                .join(", ")}
            </p>
          )}
        </section>
        <section className="panel" aria-label="Positions">
          <h2>Positions</h2>
          <div className="scroll">
            <table data-testid="positions-table">
              <thead>
                <tr>
                  <th scope="col">Symbol</th>
                  <th scope="col" className="num">
                    Qty
                  </th>
                  <th scope="col" className="num">
                    Avg cost
                  </th>
                  <th scope="col" className="num">
                    Mark
                  </th>
                  <th scope="col" className="num">
                    Value
                  </th>
                  <th scope="col" className="num">
                    Unrealised
                  </th>
                  <th scope="col" className="num">
                    Value ({base})
                  </th>
                </tr>
              </thead>
              <tbody>
                {data.positions.map((position) => (
                  <tr key={position.symbol} data-symbol={position.symbol}>
                    <th scope="row">{position.symbol}</th>
                    <td className="num" data-field="quantity">
                      {position.quantity}
                    </td>
                    <td className="num">{position.average_cost}</td>
                    <td className="num" title={`marked at ${position.mark_source}`}>
                      {position.mark_price}
                    </td>
                    <td className="num">{money(position.market_value, position.quote_currency)}</td>
                    <td className={`num ${sign(position.unrealized_pnl)}`}>
                      {money(position.unrealized_pnl, position.quote_currency)}
                    </td>
                    <td className="num">{money(position.market_value_base, base)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {data.positions.length === 0 && <p className="muted">No open positions.</p>}
        </section>
      </div>
    </div>
  );
}
