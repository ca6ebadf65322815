"""Orders against their events, set-based on PostgreSQL: the part of `check integrity` that scales with orders.

The exact check folds each order's events through the domain (`Order.from_events`: the
transition table and every rule of `Order.apply`) and compares the result with the stored
status, filled quantity and version. That costs tens of microseconds per order, so on
PostgreSQL one SQL pass first proves most orders right without building a Python object per row,
and only the rest are folded by the domain:

An order is proven in SQL when each of its events has a kind whose effect depends on nothing but
the kind (submitted, accepted, denied, rejected, canceled, expired), its sequence numbers run
1..n, its stored version is n and its filled quantity 0, and each payload has exactly the
fields `event_from_dict` reads with the right types: ``kind`` and ``order_id`` equal to the row's,
``ts`` equal to the row's timestamp in ISO 8601 UTC, a non-blank ``reason`` on the events that
carry one, and a ``request`` object whose ids are non-blank strings. The rest of each request
(symbol, side, type, quantity, prices, time in force) is checked by the domain once per distinct
set of terms, and the sequence of kinds is folded through the domain's `TRANSITIONS` once per
distinct sequence, against the stored status. Anything else (fills, replaces, triggers, payloads
that differ in any way, orders that fills point at, orders without events) is folded by the
domain, so the problems reported are the same words as before. A payload that is not JSON at
all makes the SQL pass fail; then every order is folded by the domain.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import orjson
from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.domain.orders import EVENT_TYPES, TRANSITIONS, OrderStatus, event_from_dict
from tradestack.models.trading import FillRow, OrderEventRow, OrderRow

SIMPLE_KINDS = ("submitted", "accepted", "denied", "rejected", "canceled", "expired")
"""Event kinds whose effect on an order is its kind alone (beyond the payload's own fields)."""
INVALID_TEXT = "22P02"  # invalid_text_representation: a payload that is not JSON
_SAMPLE_TS = datetime(2000, 1, 1, tzinfo=UTC).isoformat()

_EVENTS, _ORDERS, _FILLS = OrderEventRow.__tablename__, OrderRow.__tablename__, FillRow.__tablename__
# The row's timestamp as `datetime.isoformat()` writes a UTC time (microseconds only when not zero).
_TS_TEXT = (
    "to_char(e.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
    " || CASE WHEN extract(microseconds FROM e.ts)::bigint % 1000000 = 0 THEN ''"
    " ELSE to_char(e.ts AT TIME ZONE 'UTC', '.US') END || '+00:00'"
)
_BLANKLESS = "'[A-Za-z0-9]'"  # contains a letter or digit: certainly not blank for str.strip()
_TERMS = "((p.j -> 'request') - 'client_order_id' - 'account_id')"
_SHAPE = f"""
CASE WHEN jsonb_typeof(p.j) = 'object'
      AND jsonb_typeof(p.j -> 'kind') = 'string' AND p.j ->> 'kind' = e.kind
      AND jsonb_typeof(p.j -> 'order_id') = 'string' AND p.j ->> 'order_id' = e.order_id AND e.order_id ~ {_BLANKLESS}
      AND jsonb_typeof(p.j -> 'ts') = 'string' AND p.j ->> 'ts' = {_TS_TEXT}
THEN CASE
  WHEN e.kind IN ('accepted', 'expired') THEN p.j - 'kind' - 'order_id' - 'ts' = '{{}}'::jsonb
  WHEN e.kind IN ('denied', 'rejected', 'canceled') THEN
       jsonb_typeof(p.j -> 'reason') = 'string' AND p.j ->> 'reason' ~ {_BLANKLESS}
       AND p.j - 'kind' - 'order_id' - 'ts' - 'reason' = '{{}}'::jsonb
  WHEN e.kind = 'submitted' AND jsonb_typeof(p.j -> 'request') = 'object' THEN
       p.j - 'kind' - 'order_id' - 'ts' - 'request' = '{{}}'::jsonb
       AND jsonb_typeof(p.j -> 'request' -> 'client_order_id') = 'string'
       AND p.j -> 'request' ->> 'client_order_id' ~ {_BLANKLESS}
       AND jsonb_typeof(p.j -> 'request' -> 'account_id') = 'string'
       AND p.j -> 'request' ->> 'account_id' ~ {_BLANKLESS}
       AND NOT ({_TERMS}::text = ANY(CAST(:bad_terms AS text[])))
  ELSE false END
ELSE false END
"""
_PER_ORDER = f"""
SELECT e.order_id, count(*) AS n, min(e.seq) AS first_seq, max(e.seq) AS last_seq,
       string_agg(e.kind, ',' ORDER BY e.seq) AS kinds, bool_and({_SHAPE}) AS shapes_ok
FROM {_EVENTS} e CROSS JOIN LATERAL (SELECT e.payload::jsonb AS j) p
GROUP BY e.order_id
"""  # noqa: S608 - table names and SQL fragments are constants of this module
_GROUPS = text(f"""
WITH ev AS ({_PER_ORDER})
SELECT ev.kinds, o.status, count(*) AS orders,
       array_agg(o.id) FILTER (
         WHERE NOT (ev.shapes_ok AND ev.first_seq = 1 AND ev.last_seq = ev.n AND o.version = ev.n AND o.filled_quantity = 0)
       ) AS odd
FROM {_ORDERS} o JOIN ev ON ev.order_id = o.id
GROUP BY ev.kinds, o.status
""").bindparams(bindparam("bad_terms"))  # noqa: S608 - constants of this module
_GROUP_MEMBERS = text(f"""
WITH ev AS (SELECT order_id, string_agg(kind, ',' ORDER BY seq) AS kinds FROM {_EVENTS} GROUP BY order_id)
SELECT o.id FROM {_ORDERS} o JOIN ev ON ev.order_id = o.id WHERE ev.kinds = :kinds AND o.status = :status
""")  # noqa: S608 - constants of this module
_DISTINCT_TERMS = text(f"""
SELECT DISTINCT {_TERMS}::text FROM {_EVENTS} e CROSS JOIN LATERAL (SELECT e.payload::jsonb AS j) p
WHERE e.kind = 'submitted' AND jsonb_typeof(p.j) = 'object' AND jsonb_typeof(p.j -> 'request') = 'object'
""")  # noqa: S608 - constants of this module
_WITHOUT_EVENTS = text(f"SELECT o.id FROM {_ORDERS} o WHERE NOT EXISTS (SELECT 1 FROM {_EVENTS} e WHERE e.order_id = o.id)")  # noqa: S608 - constants
_FILLED = text(f"SELECT DISTINCT order_id FROM {_FILLS}")  # noqa: S608 - constant


def _bad_terms(terms: Iterable[str]) -> list[str]:
    """The distinct request terms (as PostgreSQL's jsonb text) that the domain refuses in an `OrderSubmitted`."""
    bad: list[str] = []
    for written in terms:
        request = orjson.loads(written)
        if not isinstance(request, dict):
            bad.append(written)
            continue
        event = {"kind": "submitted", "order_id": "sample", "ts": _SAMPLE_TS}
        event["request"] = request | {"client_order_id": "sample", "account_id": "sample"}  # type: ignore[assignment]
        try:
            event_from_dict(event)
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


async def orders_to_fold(session: AsyncSession) -> list[str] | None:
    """Ids of the orders the SQL pass cannot prove (sorted); None when the pass cannot run (fold them all).

    Runs in a savepoint, so a payload that is not JSON (SQLSTATE 22P02, the only error it absorbs)
    leaves the session's transaction usable.
    """
    try:
        async with session.begin_nested():
            terms = (await session.execute(_DISTINCT_TERMS)).scalars().all()
            bad = _bad_terms(terms)
            suspects: set[str] = set()
            for kinds, status, _count, odd in await session.execute(_GROUPS, {"bad_terms": bad}):
                suspects.update(odd or ())
                simple = all(kind in SIMPLE_KINDS for kind in kinds.split(","))
                expected, _ = fold_kinds(kinds)
                if not simple or expected is None or expected.value != status:
                    members = await session.execute(_GROUP_MEMBERS, {"kinds": kinds, "status": status})
                    suspects.update(members.scalars())
            suspects.update((await session.execute(_WITHOUT_EVENTS)).scalars())
            suspects.update((await session.execute(_FILLED)).scalars())
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != INVALID_TEXT:
            raise
        return None
    return sorted(suspects)
