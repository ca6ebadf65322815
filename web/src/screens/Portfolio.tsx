import { useQueryClient } from "@tanstack/react-query";
import { useCallback } from "react";
import { ApiError } from "../api/client";
import { usePortfolio } from "../api/queries";
import type { Portfolio as PortfolioOut } from "../api/types";
import { useAccount } from "../auth";
import { DataTable, type Column } from "../components/DataTable";
import { EquityHistory } from "../components/EquityHistory";
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

type Position = PortfolioOut["positions"][number];

function positionColumns(base: string): Column<Position>[] {
  return [
    { key: "symbol", header: "Symbol", rowHeader: true, cell: (p) => p.symbol },
    {
      key: "quantity",
      header: "Qty",
      num: true,
      cell: (p) => p.quantity,
      attributes: () => ({ "data-field": "quantity" }),
    },
    { key: "average", header: "Avg cost", num: true, cell: (p) => p.average_cost },
    {
      key: "mark",
      header: "Mark",
      num: true,
      cell: (p) => p.mark_price,
      attributes: (p) => ({ title: `marked at ${p.mark_source}` }),
    },
    { key: "value", header: "Value", num: true, cell: (p) => money(p.market_value, p.quote_currency) },
    {
      key: "unrealized",
      header: "Unrealised",
      num: true,
      cell: (p) => money(p.unrealized_pnl, p.quote_currency),
      attributes: (p) => ({ className: sign(p.unrealized_pnl) }),
    },
    {
      key: "value-base",
      header: `Value (${base})`,
      num: true,
      cell: (p) => money(p.market_value_base, base),
    },
  ];
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
      <EquityHistory accountId={accountId} />
      <div className="columns">
        <section className="panel" aria-label="Cash">
          <h2>Cash by currency</h2>
          <DataTable
            testId="cash-table"
            columns={[
              { key: "currency", header: "Currency", rowHeader: true, cell: ([currency]) => currency },
              { key: "balance", header: "Balance", num: true, cell: ([, amount]) => amount },
              {
                key: "realized",
                header: "Realised P&L",
                num: true,
                cell: ([currency]) => data.realized_pnl[currency] ?? "0",
              },
              { key: "fees", header: "Fees", num: true, cell: ([currency]) => data.fees[currency] ?? "0" },
            ]}
            rows={Object.entries(data.cash)}
            rowKey={([currency]) => currency}
            rowAttributes={([currency]) => ({ "data-currency": currency })}
          />
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
          <DataTable
            testId="positions-table"
            columns={positionColumns(base)}
            rows={data.positions}
            rowKey={(position) => position.symbol}
            rowAttributes={(position) => ({ "data-symbol": position.symbol })}
            empty="No open positions."
          />
        </section>
      </div>
    </div>
  );
}
