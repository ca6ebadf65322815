import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useId, useState, type FormEvent } from "react";
import { api, ApiError } from "../api/client";
import type { Instrument, Order, OrderType, Quote, TimeInForce } from "../api/types";
import { fee, multiply, onGrid, parse, round, stepBy } from "../lib/decimal";

export const ORDER_TYPES: OrderType[] = ["market", "limit", "stop", "stop_limit"];
export const TIME_IN_FORCE: TimeInForce[] = ["day", "gtc", "ioc", "fok"];
type Field = "quantity" | "limit_price" | "stop_price" | "time_in_force" | "form";

// Which field a risk denial is about (checks named by the server's OrderDeniedError).
const CHECK_FIELDS: Record<string, Field> = {
  max_order_notional: "quantity",
  max_position: "quantity",
  max_gross_exposure: "quantity",
  buying_power: "quantity",
  short_selling: "quantity",
  price_collar: "limit_price",
  reference_price: "limit_price",
};

/** Errors by field, from a 422 (validation problems or a risk denial). */
export function errorsByField(error: ApiError): Partial<Record<Field, string>> {
  const found: Partial<Record<Field, string>> = {};
  for (const problem of error.fields) {
    const match = /^body\.(quantity|limit_price|stop_price|time_in_force)\b/.exec(problem);
    const field: Field = (match?.[1] as Field | undefined) ?? "form";
    found[field] = found[field] ? `${found[field]}; ${problem}` : problem;
  }
  if (Object.keys(found).length) return found;
  const check = typeof error.body.check === "string" ? error.body.check : null;
  if (check && CHECK_FIELDS[check]) return { [CHECK_FIELDS[check]]: error.detail };
  const detail = error.detail.toLowerCase();
  const named = (["limit_price", "stop_price", "quantity"] as const).find(
    (f) => detail.includes(f.replace("_", " ")) || detail.includes(f),
  );
  if (named) return { [named]: error.detail };
  if (/time.in.force|good-till|day order|\b(gtc|ioc|fok)\b/.test(detail))
    return { time_in_force: error.detail };
  return { form: error.detail };
}

interface Props {
  instrument: Instrument;
  quote: Quote | null;
  accountId: string;
}

export function TradeTicket({ instrument, quote, accountId }: Props) {
  const queryClient = useQueryClient();
  const id = useId();
  const [side, setSide] = useState<"buy" | "sell">("buy");
  const [type, setType] = useState<OrderType>("market");
  const [tif, setTif] = useState<TimeInForce>("day");
  const [quantity, setQuantity] = useState(instrument.lot_size);
  const [limitPrice, setLimitPrice] = useState("");
  const [stopPrice, setStopPrice] = useState("");
  const [errors, setErrors] = useState<Partial<Record<Field, string>>>({});
  const [result, setResult] = useState<Order | null>(null);
  const needsLimit = type === "limit" || type === "stop_limit";
  const needsStop = type === "stop" || type === "stop_limit";
  const tick = instrument.tick_size;
  const lot = instrument.lot_size;
  const marketPrice = side === "buy" ? quote?.ask : quote?.bid;
  const reference = needsLimit && limitPrice ? limitPrice : marketPrice;
  const notional = reference && parse(reference) && parse(quantity) ? multiply(quantity, reference) : null;
  const estimatedFee = notional
    ? fee(notional, instrument.fee_bps ?? "0", instrument.fee_minimum ?? "0")
    : null;

  const submit = useMutation({
    mutationFn: () =>
      api<Order>("/api/orders", {
        method: "POST",
        json: {
          account_id: accountId,
          client_order_id: crypto.randomUUID(),
          symbol: instrument.symbol,
          side,
          type,
          time_in_force: tif,
          quantity,
          limit_price: needsLimit ? limitPrice : null,
          stop_price: needsStop ? stopPrice : null,
        },
      }),
    onMutate: () => {
      setErrors({});
      setResult(null);
    },
    onSuccess: (order) => setResult(order),
    onError: (error) =>
      setErrors(
        error instanceof ApiError ? errorsByField(error) : { form: "the server could not be reached" },
      ),
    onSettled: () => {
      void queryClient.invalidateQueries({ queryKey: ["orders"] });
      void queryClient.invalidateQueries({ queryKey: ["portfolio"] });
    },
  });

  function onSubmit(event: FormEvent) {
    event.preventDefault();
    const local: Partial<Record<Field, string>> = {};
    if (!onGrid(quantity, lot))
      local.quantity = `quantity must be a positive multiple of the lot size ${lot}`;
    if (needsLimit && !onGrid(limitPrice, tick))
      local.limit_price = `limit price must be a multiple of the tick ${tick}`;
    if (needsStop && !onGrid(stopPrice, tick))
      local.stop_price = `stop price must be a multiple of the tick ${tick}`;
    if (Object.keys(local).length) {
      setErrors(local);
      return;
    }
    submit.mutate();
  }

  function priceField(
    field: "limit_price" | "stop_price",
    label: string,
    value: string,
    set: (v: string) => void,
  ) {
    const errorId = `${id}-${field}-error`;
    return (
      <div className="field">
        <label htmlFor={`${id}-${field}`}>{label}</label>
        <div className="stepper">
          <button
            type="button"
            aria-label={`${label} down one tick`}
            onClick={() => set(stepBy(value || marketPrice || tick, tick, -1))}
          >
            −
          </button>
          <input
            id={`${id}-${field}`}
            name={field}
            inputMode="decimal"
            value={value}
            placeholder={quote?.last ?? ""}
            aria-invalid={errors[field] ? true : undefined}
            aria-describedby={errors[field] ? errorId : undefined}
            onChange={(e) => set(e.target.value)}
          />
          <button
            type="button"
            aria-label={`${label} up one tick`}
            onClick={() => set(stepBy(value || marketPrice || tick, tick, 1))}
          >
            +
          </button>
        </div>
        {errors[field] && (
          <p className="field-error" id={errorId} role="alert" data-field={field}>
            {errors[field]}
          </p>
        )}
      </div>
    );
  }

  const quantityError = `${id}-quantity-error`;
  return (
    <section className="panel ticket" aria-label="Trade ticket">
      <h2>Trade {instrument.symbol}</h2>
      <form onSubmit={onSubmit} noValidate>
        <div className="sides" role="radiogroup" aria-label="Side">
          {(["buy", "sell"] as const).map((s) => (
            <label key={s} className={`side ${s} ${side === s ? "active" : ""}`}>
              <input type="radio" name="side" value={s} checked={side === s} onChange={() => setSide(s)} />
              {s === "buy" ? "Buy" : "Sell"}
            </label>
          ))}
        </div>
        <div className="row">
          <div className="field">
            <label htmlFor={`${id}-type`}>Type</label>
            <select
              id={`${id}-type`}
              value={type}
              onChange={(e) => {
                const next = e.target.value as OrderType;
                setType(next);
                if (next === "market" && tif === "gtc") setTif("day"); // a market order cannot rest
              }}
            >
              {ORDER_TYPES.map((t) => (
                <option key={t} value={t}>
                  {t.replace("_", " ")}
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor={`${id}-tif`}>Time in force</label>
            <select
              id={`${id}-tif`}
              value={tif}
              aria-invalid={errors.time_in_force ? true : undefined}
              aria-describedby={errors.time_in_force ? `${id}-tif-error` : undefined}
              onChange={(e) => setTif(e.target.value as TimeInForce)}
            >
              {TIME_IN_FORCE.map((t) => (
                <option key={t} value={t}>
                  {t.toUpperCase()}
                </option>
              ))}
            </select>
            {errors.time_in_force && (
              <p className="field-error" id={`${id}-tif-error`} role="alert" data-field="time_in_force">
                {errors.time_in_force}
              </p>
            )}
          </div>
        </div>
        <div className="field">
          <label htmlFor={`${id}-quantity`}>Quantity (lot {lot})</label>
          <div className="stepper">
            <button
              type="button"
              aria-label="Quantity down one lot"
              onClick={() => setQuantity(stepBy(quantity, lot, -1))}
            >
              −
            </button>
            <input
              id={`${id}-quantity`}
              name="quantity"
              inputMode="decimal"
              value={quantity}
              aria-invalid={errors.quantity ? true : undefined}
              aria-describedby={errors.quantity ? quantityError : undefined}
              onChange={(e) => setQuantity(e.target.value)}
            />
            <button
              type="button"
              aria-label="Quantity up one lot"
              onClick={() => setQuantity(stepBy(quantity, lot, 1))}
            >
              +
            </button>
          </div>
          {errors.quantity && (
            <p className="field-error" id={quantityError} role="alert" data-field="quantity">
              {errors.quantity}
            </p>
          )}
        </div>
        {needsLimit && priceField("limit_price", "Limit price", limitPrice, setLimitPrice)}
        {needsStop && priceField("stop_price", "Stop price", stopPrice, setStopPrice)}
        <p className="estimate" data-testid="notional">
          Est. notional: {notional ? `${notional} ${instrument.quote_currency}` : "–"}
        </p>
        <p className="estimate" data-testid="fee">
          Est. fee: {estimatedFee ? `${round(estimatedFee, 2)} ${instrument.quote_currency}` : "–"}{" "}
          <span className="muted">
            ({instrument.fee_bps ?? "0"} bps, min {instrument.fee_minimum ?? "0"})
          </span>
        </p>
        <button type="submit" className={`submit ${side}`} disabled={submit.isPending}>
          {side === "buy" ? "Buy" : "Sell"} {instrument.symbol}
        </button>
        {errors.form && (
          <p className="field-error" role="alert" data-field="form">
            {errors.form}
          </p>
        )}
        {result && (
          <p className="ok" role="status" data-testid="ticket-result">
            Order {result.id.slice(0, 8)} {result.status}
          </p>
        )}
      </form>
    </section>
  );
}
