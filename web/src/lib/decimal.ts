// Exact decimal arithmetic on strings (the API sends money, prices and quantities as strings).
// Never a float: values are scaled BigInts.

export interface Dec {
  units: bigint;
  scale: number;
}

const PATTERN = /^([+-])?(\d+)(?:\.(\d+))?$/;

export function parse(text: string): Dec | null {
  const match = PATTERN.exec(text.trim());
  if (!match) return null;
  const [, sign, whole = "0", fraction = ""] = match;
  const units = BigInt(whole + fraction) * (sign === "-" ? -1n : 1n);
  return { units, scale: fraction.length };
}

function mustParse(text: string): Dec {
  const value = parse(text);
  if (value === null) throw new Error(`not a decimal: ${text}`);
  return value;
}

function rescale(value: Dec, scale: number): bigint {
  return value.units * 10n ** BigInt(scale - value.scale);
}

export function toString(value: Dec): string {
  const negative = value.units < 0n;
  const digits = (negative ? -value.units : value.units).toString().padStart(value.scale + 1, "0");
  const whole = digits.slice(0, digits.length - value.scale);
  const fraction = value.scale ? "." + digits.slice(digits.length - value.scale) : "";
  return (negative ? "-" : "") + whole + fraction;
}

export function add(a: string, b: string): string {
  const x = mustParse(a);
  const y = mustParse(b);
  const scale = Math.max(x.scale, y.scale);
  return toString({ units: rescale(x, scale) + rescale(y, scale), scale });
}

export function multiply(a: string, b: string): string {
  const x = mustParse(a);
  const y = mustParse(b);
  return toString({ units: x.units * y.units, scale: x.scale + y.scale });
}

export function compare(a: string, b: string): number {
  const x = mustParse(a);
  const y = mustParse(b);
  const scale = Math.max(x.scale, y.scale);
  const difference = rescale(x, scale) - rescale(y, scale);
  return difference === 0n ? 0 : difference > 0n ? 1 : -1;
}

/** `value` moved by `direction` steps of `step`, snapped onto the step grid, never below one step. */
export function stepBy(value: string, step: string, direction: 1 | -1): string {
  const increment = mustParse(step);
  const current = parse(value) ?? { units: 0n, scale: 0 };
  const scale = Math.max(increment.scale, current.scale);
  const unit = rescale(increment, scale);
  const units = rescale(current, scale);
  let steps = units / unit; // truncates toward zero: snap down onto the grid
  if (direction === 1 || units % unit === 0n) steps += BigInt(direction);
  if (steps < 1n) steps = 1n;
  return toString({ units: steps * increment.units, scale: increment.scale });
}

/** True when `value` is a positive multiple of `step`. */
export function onGrid(value: string, step: string): boolean {
  const x = parse(value);
  const increment = mustParse(step);
  if (x === null || x.units <= 0n) return false;
  const scale = Math.max(increment.scale, x.scale);
  return rescale(x, scale) % rescale(increment, scale) === 0n;
}

/** Round for display to `places` decimals (half away from zero). */
export function round(value: string, places: number): string {
  const x = mustParse(value);
  if (x.scale <= places) return toString({ units: rescale(x, places), scale: places });
  const factor = 10n ** BigInt(x.scale - places);
  const half = factor / 2n;
  const units = x.units >= 0n ? (x.units + half) / factor : (x.units - half) / factor;
  return toString({ units, scale: places });
}

/** Percentage change from `from` to `to`, rounded to 2 places (as text). */
export function percentChange(from: string, to: string): string | null {
  const x = mustParse(from);
  const y = mustParse(to);
  if (x.units === 0n) return null;
  const scale = Math.max(x.scale, y.scale);
  const a = rescale(x, scale);
  const b = rescale(y, scale);
  const basisPoints = ((b - a) * 1000000n) / a; // 1e-4 %
  return round(toString({ units: basisPoints, scale: 4 }), 2);
}

/** Digits after the point of a tick or lot size. */
export function placesOf(step: string): number {
  return mustParse(step).scale;
}

/** `value` divided by 10^`places`, exactly (e.g. basis points to a fraction). */
export function shift(value: string, places: number): string {
  const x = mustParse(value);
  return toString({ units: x.units, scale: x.scale + places });
}

/** The larger of two decimals. */
export function max(a: string, b: string): string {
  return compare(a, b) >= 0 ? a : b;
}

/** Fee of `bps` basis points on `notional`, at least `minimum` (nothing on a zero notional). */
export function fee(notional: string, bps: string, minimum: string): string {
  if (compare(notional, "0") <= 0) return "0";
  return max(shift(multiply(notional, bps), 4), minimum);
}
