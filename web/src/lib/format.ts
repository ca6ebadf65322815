/** A figure from the API (float or null/NaN) with a fixed number of decimals; "–" when there is none. */
export function figure(value: number | null | undefined, digits = 4): string {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : value.toFixed(digits);
}

/** A fraction (0.12) as a percentage ("12.0 %"); "–" when there is none. */
export function percent(value: number | null | undefined, digits = 1): string {
  return value === null || value === undefined || Number.isNaN(value)
    ? "–"
    : `${(value * 100).toFixed(digits)} %`;
}

/** An ISO 8601 time in the browser's locale and time zone. */
export function time(ts: string): string {
  return new Date(ts).toLocaleString();
}
