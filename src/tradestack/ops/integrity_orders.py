"""Orders against their events, set-based on PostgreSQL: the part of `check integrity` that scales with orders.

The exact check folds each order's events through the domain (`Order.from_events`: the
transition table and every rule of `Order.apply`) and compares the result with the stored
status, filled quantity and version. That costs tens of microseconds per order, so on
PostgreSQL one SQL pass first proves most orders right without building a Python object per row,
and only the rest are folded by the domain:

An order is proven in SQL when each of its events has a kind whose effect depends on nothing but
the kind (submitted, accepted, denied, rejected, canceled, expired), its sequence numbers run
1..n, its stored version is n and its filled quantity 0, and each payload is, character for
character, the JSON the order service writes for that event (``orjson.dumps(event.to_dict())``)
built in SQL from the row: ``kind``, ``order_id`` and ``ts`` (the row's timestamp in ISO 8601
UTC) as written, a ``reason`` that is a plain non-blank JSON string, a ``request`` whose ids are
the order row's. Ids must be plain (letters, digits, ``_.:@+-``) so the text needs no escaping;
comparing text needs no JSON parsing. The rest of each request (symbol, side, type, quantity,
prices, time in force) is checked by the domain once per distinct text, spliced into the same
template, and each distinct sequence of kinds is folded through the domain's `TRANSITIONS`
against the stored status. Anything else (fills, replaces, triggers, payloads written any other
way, orders that fills point at, orders without events) is folded by the domain, so the
problems reported are in the same words as before. The SQL never parses JSON, so a payload that
is not JSON at all is simply not proven.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.domain.orders import EVENT_TYPES, TRANSITIONS, OrderStatus, event_from_dict
from tradestack.models.books import FillRow
from tradestack.models.trading import OrderEventRow, OrderRow

MAX_PLAIN_EVENTS = 3
SIMPLE_KINDS = ("submitted", "accepted", "denied", "rejected", "canceled", "expired")
"""Event kinds whose effect on an order is its kind alone (beyond the payload's own fields)."""
_SAMPLE_TS = datetime(2000, 1, 1, tzinfo=UTC).isoformat()

_EVENTS, _ORDERS, _FILLS = OrderEventRow.__tablename__, OrderRow.__tablename__, FillRow.__tablename__
# The row's timestamp as `datetime.isoformat()` writes a UTC time (microseconds only when not zero).
_TS_TEXT = (
    "to_char(e.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
    " || CASE WHEN extract(microseconds FROM e.ts)::bigint % 1000000 = 0 THEN ''"
    " ELSE to_char(e.ts AT TIME ZONE 'UTC', '.US') END || '+00:00'"
)
_ID = "'^[A-Za-z0-9_.:@+-]+$'"  # needs no JSON escaping, and is not blank for str.strip()
# A JSON string without escapes or control characters, not blank (``\\:`` is a colon that text() must not bind).
_REASON = '\'^"[^"\\\\[\\:cntrl\\:]]*[A-Za-z0-9][^"\\\\[\\:cntrl\\:]]*"$\''
_HEAD = f"""'{{"kind":"' || e.kind || '","order_id":"' || e.order_id || '","ts":"' || {_TS_TEXT} || '"'"""
# The submitted payload after its head: the request's ids, then its terms and the two closing braces.
_REQUEST_1, _REQUEST_2, _REQUEST_3 = ',"request":{"client_order_id":"', '","account_id":"', '",'
_PREFIX = f"h.head || '{_REQUEST_1}' || o.client_order_id || '{_REQUEST_2}' || o.account_id || '{_REQUEST_3}'"
_TERMS_AT = f"length(h.head) + length(o.client_order_id) + length(o.account_id) + {len(_REQUEST_1 + _REQUEST_2 + _REQUEST_3) + 1}"
# Whether one event's payload is written as the template for its kind (ids are checked once per order).
_SHAPE = f"""
CASE
  WHEN e.kind = 'submitted' THEN starts_with(e.payload, {_PREFIX}) AND right(e.payload, 2) = '}}}}'
  WHEN e.kind IN ('accepted', 'expired') THEN e.payload = h.head || '}}'
  WHEN e.kind IN ('denied', 'rejected', 'canceled') THEN
       starts_with(e.payload, h.head || ',"reason":') AND right(e.payload, 1) = '}}'
       AND substr(e.payload, length(h.head) + 11, length(e.payload) - length(h.head) - 11) ~ {_REASON}
  ELSE false END
"""


def _per_order(where: str = "") -> str:
    """Per order: its kinds in sequence (a plain life has at most three events: submitted, accepted and
    one that ends it), its request terms (the submitted payload after the ids; NULL when it is not
    written as the template) and whether everything else is proven. `where` narrows the orders and
    events read (an id range, on both tables so each is one index range scan)."""
    return f"""
WITH per_order AS (
  SELECT o.id, o.status,
         concat_ws(',', max(e.kind COLLATE "C") FILTER (WHERE e.seq = 1), max(e.kind COLLATE "C") FILTER (WHERE e.seq = 2),
                   max(e.kind COLLATE "C") FILTER (WHERE e.seq = 3)) AS kinds,
         max(left(k.tail, -2) COLLATE "C") FILTER (WHERE e.seq = 1 AND e.kind = 'submitted' AND k.ok) AS terms,
         (count(*) <= {MAX_PLAIN_EVENTS} AND min(e.seq) = 1 AND max(e.seq) = count(*) AND o.version = count(*)
          AND o.filled_quantity = 0 AND o.id ~ {_ID} AND o.client_order_id ~ {_ID} AND o.account_id ~ {_ID}
          AND bool_and(k.ok)) AS proven
  FROM {_ORDERS} o JOIN {_EVENTS} e ON e.order_id = o.id
  CROSS JOIN LATERAL (SELECT {_HEAD} AS head OFFSET 0) h
  CROSS JOIN LATERAL (SELECT {_SHAPE} AS ok,
                             CASE WHEN e.kind = 'submitted' THEN substr(e.payload, {_TERMS_AT}) END AS tail OFFSET 0) k
  {where}
  GROUP BY o.id
)
"""  # noqa: S608 - table names and SQL fragments are constants of this module


_GROUPS_SELECT = (
    "SELECT kinds, status, terms, array_agg(id) FILTER (WHERE NOT coalesce(proven, false)) FROM per_order "
    "GROUP BY kinds, status, terms"
)
_MEMBERS_SELECT = "SELECT id FROM per_order WHERE kinds = :kinds AND status = :status AND terms IS NOT DISTINCT FROM :terms"
_GROUP_MEMBERS = text(_per_order() + _MEMBERS_SELECT)
_SPLIT_AT = text(f"SELECT id FROM {_ORDERS} ORDER BY id OFFSET :skip LIMIT 1")  # noqa: S608 - constant
_COUNT = text(f"SELECT count(*) FROM {_ORDERS}")  # noqa: S608 - constant


# The plan the pass is written for, whatever the statistics (a database just restored has none): both
# tables read in id order from their primary keys and merged, one group per order, no parallel workers
# (the pass is shared out by id ranges instead), no memoizing of per-event values that never repeat,
# and the groups of orders hashed in memory.
_PLAN = {
    "enable_hashjoin": "off", "enable_sort": "off", "enable_memoize": "off",
    "max_parallel_workers_per_gather": "0", "work_mem": "'64MB'",
}  # fmt: skip


def _groups(low: bool, high: bool) -> TextClause:
    """The groups query over the orders with ids in [:low, :high) (a missing bound: unbounded)."""
    bounds = [f"{column} {op} :{name}" for name, op, on in (("low", ">=", low), ("high", "<", high)) if on
              for column in ("o.id", "e.order_id")]  # fmt: skip
    return text(_per_order(f"WHERE {' AND '.join(bounds)}" if bounds else "") + _GROUPS_SELECT)


_WITHOUT_EVENTS = text(f"SELECT o.id FROM {_ORDERS} o WHERE NOT EXISTS (SELECT 1 FROM {_EVENTS} e WHERE e.order_id = o.id)")  # noqa: S608 - constants
_FILLED = text(f"SELECT DISTINCT order_id FROM {_FILLS}")  # noqa: S608 - constant


_SAMPLE = (
    '{"kind":"submitted","order_id":"sample","ts":"'
    + _SAMPLE_TS
    + '","request":{"client_order_id":"sample","account_id":"sample",'
)


def _bad_terms(terms: Iterable[str]) -> list[str]:
    """The distinct request terms (the text after the ids) with which the domain refuses an `OrderSubmitted`."""
    bad: list[str] = []
    for written in terms:
        try:
            data = orjson.loads(_SAMPLE + written + "}}")
            if not isinstance(data, dict):
                raise TypeError("not an object")
            event_from_dict(data)
        except (ValueError, TypeError):
            bad.append(written)
    return bad


def fold_kinds(kinds: str) -> tuple[OrderStatus | None, str | None]:
    """The status `TRANSITIONS` reaches through these event kinds (comma-separated), or the reason it cannot."""
    status: OrderStatus | None = None
    for kind in kinds.split(","):
        event_type = EVENT_TYPES.get(kind)
        if event_type is None:
            return None, f"unknown kind {kind}"
        target = TRANSITIONS.get((status, event_type))
        if target is None:
            return None, f"{event_type.__name__} cannot follow {status}"
        status = target
    return status, None


async def _split_points(session: AsyncSession, parts: int) -> list[str]:
    """Order ids cutting the orders (in id order) into `parts` ranges of about the same size."""
    total = int((await session.execute(_COUNT)).scalar_one())
    points: list[str] = []
    for part in range(1, parts):
        point = (await session.execute(_SPLIT_AT, {"skip": total * part // parts})).scalar_one_or_none()
        if point is not None and (not points or point > points[-1]):
            points.append(point)
    return points


async def orders_to_fold(session: AsyncSession, helpers: Sequence[AsyncSession] = ()) -> list[str]:
    """Ids of the orders the SQL pass cannot prove, sorted (all the others are proven right).

    `helpers`: more sessions reading the same snapshot as `session`; the pass is cut into id ranges,
    one per session, that run at once (on PostgreSQL, each session is a server process of its own).
    """
    sessions = [session, *helpers]
    points = await _split_points(session, len(sessions)) if helpers else []
    bounds = list(zip([None, *points], [*points, None], strict=True))

    async def groups(reader: AsyncSession, low: str | None, high: str | None) -> list[Any]:
        values = {name: value for name, value in (("low", low), ("high", high)) if value is not None}
        for name, value in _PLAN.items():
            await reader.execute(text(f"SET LOCAL {name} = {value}"))
        try:
            return list((await reader.execute(_groups("low" in values, "high" in values), values)).all())
        finally:
            for name in _PLAN:
                await reader.execute(text(f"SET LOCAL {name} TO DEFAULT"))

    parts = await asyncio.gather(*(groups(reader, low, high) for reader, (low, high) in zip(sessions, bounds, strict=False)))
    merged: dict[tuple[str, str, str | None], list[str]] = {}
    for kinds, status, terms, unproven in (row for part in parts for row in part):
        merged.setdefault((kinds, status, terms), []).extend(unproven or ())
    suspects: set[str] = set()
    checked_terms: dict[str, bool] = {}
    for (kinds, status, terms), unproven in merged.items():
        suspects.update(unproven)
        simple = all(kind in SIMPLE_KINDS for kind in kinds.split(","))
        expected, _ = fold_kinds(kinds)
        if terms is not None and terms not in checked_terms:
            checked_terms[terms] = not _bad_terms([terms])
        if not simple or expected is None or expected.value != status or (terms is not None and not checked_terms[terms]):
            members = await session.execute(_GROUP_MEMBERS, {"kinds": kinds, "status": status, "terms": terms})
            suspects.update(members.scalars())
    suspects.update((await session.execute(_WITHOUT_EVENTS)).scalars())
    suspects.update((await session.execute(_FILLED)).scalars())
    return sorted(suspects)
