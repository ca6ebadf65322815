"""Keyset pages, one way for every list: newest first, and `before` of a page is the `next` of the previous
one (``<ts>~<id>``: the last row's time and id) or an ISO 8601 time (rows strictly before it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import Select, and_, or_

from tradestack.core.errors import ValidationFailedError

Before = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=200,
        description="Page backwards: the `next` of the previous page, or an ISO 8601 time (rows strictly before it).",
    ),
]


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page starts: rows strictly older than (`ts`, `id`); without `id`, strictly before `ts`."""

    ts: datetime
    id: str | None = None


def parse_cursor(text: str | None) -> Cursor | None:
    """`before` of a page: the `next` of the previous page, or an ISO 8601 time (naive is UTC); 422 otherwise."""
    if text is None:
        return None
    stamp, separator, row_id = text.partition("~")
    try:
        ts = datetime.fromisoformat(stamp)
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except (ValueError, OverflowError):
        ts = None
    if ts is None or (separator and not (row_id and row_id.isprintable())):
        raise ValidationFailedError(
            f"before: give the `next` of the previous page or an ISO 8601 time such as 2026-11-20T15:00:00Z, got {text!r}"
        )
    return Cursor(ts, row_id if separator else None)


def format_cursor(ts: datetime, row_id: str) -> str:
    """The cursor that continues a page after the row (`ts`, `row_id`)."""
    return f"{ts.astimezone(UTC).isoformat().replace('+00:00', 'Z')}~{row_id}"


def older_than(query: Select[Any], ts_column: Any, id_column: Any, before: Cursor | None) -> Select[Any]:
    """`query` narrowed to the rows of the page that starts at `before` (ordered by `ts_column`, `id_column` descending)."""
    if before is None:
        return query
    if before.id is None:
        return query.where(ts_column < before.ts)
    return query.where(or_(ts_column < before.ts, and_(ts_column == before.ts, id_column < before.id)))
