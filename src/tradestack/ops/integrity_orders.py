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

from collections.abc import Iterable
from datetime import UTC, datetime

import orjson
from sqlalchemy import text
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
_REQUEST_HEAD = (
    """h.head || ',"request":{"client_order_id":"' || o.client_order_id || '","account_id":"' || o.account_id || '",'"""
)
_SUBMITTED = f"""e.kind = 'submitted' AND o.client_order_id ~ {_ID} AND o.account_id ~ {_ID}
       AND left(e.payload, length(r.request_head)) = r.request_head AND right(e.payload, 2) = '}}}}'"""
_SHAPE = f"""
CASE WHEN e.order_id ~ {_ID} THEN CASE
  WHEN e.kind IN ('accepted', 'expired') THEN e.payload = h.head || '}}'
  WHEN e.kind IN ('denied', 'rejected', 'canceled') THEN
       left(e.payload, length(h.head) + 10) = h.head || ',"reason":' AND right(e.payload, 1) = '}}'
       AND substr(e.payload, length(h.head) + 11, length(e.payload) - length(h.head) - 11) ~ {_REASON}
  WHEN h.submitted THEN true
  ELSE false END
ELSE false END
"""
# Per order: its kinds in sequence (a plain life has at most three events: submitted, accepted and one
# that ends it), its request terms (the submitted payload after the ids; NULL when it is not written as
# the template) and whether everything else is proven.
_PER_ORDER = f"""
WITH per_order AS (
  SELECT o.id, o.status,
         concat_ws(',', max(e.kind) FILTER (WHERE e.seq = 1), max(e.kind) FILTER (WHERE e.seq = 2),
                   max(e.kind) FILTER (WHERE e.seq = 3)) AS kinds,
         max(substr(e.payload, length(h.request_head) + 1, length(e.payload) - length(h.request_head) - 2))
           FILTER (WHERE e.seq = 1 AND h.submitted) AS terms,
         (count(*) <= {MAX_PLAIN_EVENTS} AND min(e.seq) = 1 AND max(e.seq) = count(*) AND o.version = count(*)
          AND o.filled_quantity = 0 AND bool_and({_SHAPE})) AS proven
  FROM {_ORDERS} o JOIN {_EVENTS} e ON e.order_id = o.id
  CROSS JOIN LATERAL (SELECT {_HEAD} AS head OFFSET 0) h0
  CROSS JOIN LATERAL (SELECT CASE WHEN e.kind = 'submitted' THEN {_REQUEST_HEAD.replace("h.head", "h0.head")} END
                      AS request_head OFFSET 0) r
  CROSS JOIN LATERAL (SELECT h0.head AS head, r.request_head, coalesce({_SUBMITTED}, false) AS submitted OFFSET 0) h
  GROUP BY o.id
)
"""  # noqa: S608 - table names and SQL fragments are constants of this module
_GROUPS_SELECT = (
    "SELECT kinds, status, terms, array_agg(id) FILTER (WHERE NOT coalesce(proven, false)) FROM per_order "
    "GROUP BY kinds, status, terms"
)
_MEMBERS_SELECT = "SELECT id FROM per_order WHERE kinds = :kinds AND status = :status AND terms IS NOT DISTINCT FROM :terms"
_GROUPS = text(_PER_ORDER + _GROUPS_SELECT)
_GROUP_MEMBERS = text(_PER_ORDER + _MEMBERS_SELECT)
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


async def orders_to_fold(session: AsyncSession) -> list[str]:
    """Ids of the orders the SQL pass cannot prove, sorted (all the others are proven right)."""
    suspects: set[str] = set()
    checked_terms: dict[str, bool] = {}
    for kinds, status, terms, unproven in (await session.execute(_GROUPS)).all():
        suspects.update(unproven or ())
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
