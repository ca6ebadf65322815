// A stored backtest's figures as the API returns them (`metrics` and `result` are open JSON
// objects): read with type checks, never assumed. Ratios are fractions; NaN arrives as null.

/** A statistic of `metrics` (a float or null), or null when it is missing or not a number. */
export function stat(metrics: Record<string, unknown>, name: string): number | null {
  const value = metrics[name];
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** A money figure of `metrics` (an exact decimal string), or null. */
export function money(metrics: Record<string, unknown>, name: string): string | null {
  const value = metrics[name];
  return typeof value === "string" ? value : null;
}

export interface EquityPoint {
  ts: string;
  equity: number;
}

/** The equity curve of a stored result (`result.equity`: [{ts, equity}]), oldest first. */
export function equityCurve(result: Record<string, unknown>): EquityPoint[] {
  const points = result.equity;
  if (!Array.isArray(points)) return [];
  return points.filter(
    (p): p is EquityPoint =>
      typeof p === "object" &&
      p !== null &&
      typeof (p as EquityPoint).ts === "string" &&
      typeof (p as EquityPoint).equity === "number",
  );
}

/**
 * The drawdown at each point: equity over its running peak, minus one (0 at a new high, -0.07 is
 * 7 % under the peak). The peak starts at `start` (the starting capital), as the metrics' maximum
 * drawdown does.
 */
export function drawdowns(curve: EquityPoint[], start: number | null = null): number[] {
  let peak = start ?? Number.NEGATIVE_INFINITY;
  return curve.map(({ equity }) => {
    peak = Math.max(peak, equity);
    return peak > 0 ? equity / peak - 1 : 0;
  });
}

/** "2000-03-01" from an ISO 8601 time. */
export function day(ts: string): string {
  return ts.slice(0, 10);
}

/** "2026-12-04 13:45 UTC" from an ISO 8601 time. */
export function minute(ts: string): string {
  const when = new Date(ts);
  return Number.isNaN(when.getTime()) ? ts : `${when.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** An order of a stored run (`result.orders`); decimals are exact strings. */
export interface RunOrder {
  id: string;
  symbol: string;
  side: string;
  type: string;
  quantity: string;
  status: string;
  filled_quantity: string;
  reason: string | null;
  created_at: string;
}

/** A fill of a stored run (`result.fills`): fee and realised P&L in the run's currency. */
export interface RunFill {
  /** Position in the run's fills (a stored fill has no id of its own). */
  seq: number;
  order_id: string;
  symbol: string;
  side: string;
  quantity: string;
  price: string;
  fee: string;
  realized: string;
  ts: string;
}

function records(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value)
    ? value.filter((item): item is Record<string, unknown> => typeof item === "object" && item !== null)
    : [];
}

function hasStrings(item: Record<string, unknown>, names: readonly string[]): boolean {
  return names.every((name) => typeof item[name] === "string");
}

const ORDER_FIELDS = [
  "id",
  "symbol",
  "side",
  "type",
  "quantity",
  "status",
  "filled_quantity",
  "created_at",
] as const;
const FILL_FIELDS = ["order_id", "symbol", "side", "quantity", "price", "fee", "realized", "ts"] as const;

/** The orders a stored run holds (malformed entries left out), oldest first. */
export function runOrders(result: Record<string, unknown>): RunOrder[] {
  return records(result.orders)
    .filter((item) => hasStrings(item, ORDER_FIELDS))
    .map((item) => ({
      ...(item as unknown as RunOrder),
      reason: typeof item.reason === "string" ? item.reason : null,
    }));
}

/** The fills a stored run holds (malformed entries left out), oldest first. */
export function runFills(result: Record<string, unknown>): RunFill[] {
  return records(result.fills)
    .filter((item) => hasStrings(item, FILL_FIELDS))
    .map((item, seq) => ({ ...(item as unknown as Omit<RunFill, "seq">), seq }));
}
