import type { HTMLAttributes, ReactNode, TdHTMLAttributes } from "react";

/** Attributes of a row or cell, `data-*` ones included (what the e2e tests select on). */
type DataAttributes = Record<`data-${string}`, string | number | undefined>;
export type RowAttributes = HTMLAttributes<HTMLTableRowElement> & DataAttributes;
export type CellAttributes = TdHTMLAttributes<HTMLTableCellElement> & DataAttributes;

export interface Column<T> {
  /** React key of the column (unique in the table). */
  key: string;
  header: ReactNode;
  /** A number: right-aligned with tabular figures. */
  num?: boolean;
  /** The cell names its row (`<th scope="row">`), for screen readers. */
  rowHeader?: boolean;
  cell: (row: T) => ReactNode;
  /** Extra attributes of the cell (`className` is added to `num`). */
  attributes?: (row: T) => CellAttributes;
}

/**
 * The dashboard's one table: a header row from `columns`, one row per item, scrolling sideways on a
 * narrow screen, and `empty` under it when there are no rows.
 */
export function DataTable<T>({
  columns,
  rows,
  rowKey,
  rowAttributes,
  testId,
  className,
  label,
  empty,
}: {
  columns: Column<T>[];
  rows: readonly T[];
  rowKey: (row: T) => string;
  rowAttributes?: (row: T) => RowAttributes;
  testId?: string;
  className?: string;
  /** Accessible name of the table (when the section around it does not name it). */
  label?: string;
  empty?: ReactNode;
}) {
  return (
    <>
      {/* Focusable, so a keyboard can scroll a table wider than a phone (axe: scrollable-region-focusable). */}
      <div className="scroll" tabIndex={0}>
        <table data-testid={testId} className={className} aria-label={label}>
          <thead>
            <tr>
              {columns.map((column) => (
                <th key={column.key} scope="col" className={column.num ? "num" : undefined}>
                  {column.header}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={rowKey(row)} {...rowAttributes?.(row)}>
                {columns.map((column) => {
                  const { className: extra, ...attributes } = column.attributes?.(row) ?? {};
                  const classes =
                    [column.num ? "num" : "", extra ?? ""].filter(Boolean).join(" ") || undefined;
                  return column.rowHeader ? (
                    <th key={column.key} scope="row" className={classes} {...attributes}>
                      {column.cell(row)}
                    </th>
                  ) : (
                    <td key={column.key} className={classes} {...attributes}>
                      {column.cell(row)}
                    </td>
                  );
                })}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {rows.length === 0 && empty !== undefined && <p className="muted">{empty}</p>}
    </>
  );
}
