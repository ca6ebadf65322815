"""Orders and their events, risk limits and trading states in the database.

Orders are stored as their append-only events (`order_events`) plus a projection (`orders`) that
always equals the fold of the events, written in the same transaction. Every writer of one
trading account's books (the order desk, cancels and replaces, executions in the engine,
conversions, limits, halts) first takes the account's lock with `BooksService.lock` (or
`lock_many`), which also bumps its books version, so reads that decide a write (buying power, the
next event's sequence number, balances) cannot race, and an order desk knows when what it keeps
of the account went stale.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, cast

import orjson
from sqlalchemy import (
    Row,
    String,
    Table,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.types import BigInteger, Integer

from tradestack.domain.orders import Order, OrderEvent, OrderStatus, event_from_dict
from tradestack.domain.risk import TradingState
from tradestack.kit.db import (
    Alongside,
    Database,
    PerDialect,
    execute_core,
    in_list,
    on_postgresql,
    probes_from_here,
    unnest_insert,
    unnested,
    with_alongside,
)
from tradestack.kit.pages import Cursor, older_than
from tradestack.models.trading import OrderEventRow, OrderRow, RiskLimitsRow, TradingStateRow

OPEN_STATUSES = tuple(status.value for status in OrderStatus if status.is_open)
GLOBAL_SCOPE = "global"

# The tables themselves, for Core executemany INSERTs (no ORM bulk-insert work per statement).
_ORDERS = cast(Table, OrderRow.__table__)
_ORDER_EVENTS = cast(Table, OrderEventRow.__table__)
_IN_CHUNK = 500  # ids in one IN (...): well under SQLite's 32,766 parameters
# The order desk runs these once a group: built once, not per call (building a statement and its cache key cost
# more CPU than running it on SQLite).
# The orders of (account id, client order id) pairs: on PostgreSQL the pairs are joined as two arrays unnested side by
# side, one index lookup each (two ANYs had the generic plan probe every account with every client order id); elsewhere
# an IN of each, the exact pairs picked in Python.
_PAIRS = unnested(("accounts", "account_id", String()), ("clients", "client_order_id", String()))
# The orders of each account tagged with a desk version above the one given for it, the same way on PostgreSQL;
# elsewhere above the least of them, the exact ones picked in Python.
_KNOWN = unnested(("added_accounts", "account_id", String()), ("added_versions", "desk_version", BigInteger()))
_NEWEST_DESK_VERSION = literal_column(str(2**63 - 1), BigInteger())
_INSERT_ORDERS = insert(_ORDERS)
_INSERT_ORDER_EVENTS = insert(_ORDER_EVENTS)


# New orders and their events in one statement on PostgreSQL (the events' foreign key is checked at its end): one round
# trip and one execution of each INSERT for the whole group, where two executemany cost two round trips and one
# execution per row. The group's last statement before its COMMIT: its key checks (five an order: account, instrument,
# two events' order, ...) are index probes planned once per connection, not at every check (`probes_after`).
_INSERT_NEW_ORDERS = unnest_insert(_ORDER_EVENTS, probes_after=True).add_cte(unnest_insert(_ORDERS).cte("new_orders"))
_ORDER_COLUMNS = tuple(column.name for column in _ORDERS.c)
_EVENT_COLUMNS = tuple(column.name for column in _ORDER_EVENTS.c)
_STATES = PerDialect.listing(
    lambda listed: select(TradingStateRow.scope, TradingStateRow.state, TradingStateRow.reason).where(
        listed(TradingStateRow.scope, "scopes")
    )
)


# The parts of `_desk_reads` besides the trading states, each read only when the group has something to read with it.
_DESK_PARTS = ("order", "desk", "added")


def _desk_reads(postgresql: bool, parts: frozenset[str]) -> Any:
    """What the order desk reads of a group once its accounts are locked, in one statement (one round trip, not
    three): rows of the orders' columns and a ``part`` column saying what each row is:

    - ``order``: the order of one of the group's (account id, client order id) pairs (all its columns);
    - ``desk``: an open order, or one created at or after ``since``, of the accounts whose orders the desk reads
      again (the columns the risk state counts and its creation time; the others NULL);
    - ``added``: an order another order desk wrote since, of the accounts only order desks wrote since this desk did:
      one tagged with a desk version above the one the desk knows (the ``desk`` columns and ``desk_version``);
    - ``state``: the trading state of one of ``scopes``: its scope in ``id``, its state in ``status``,
      its reason in ``reason``.

    Only the `parts` asked for besides the states: a part the group has nothing to read with is not in the statement,
    since PostgreSQL plans the statement at every run (`kit.db.postgres_session_settings`) and each part over
    ``orders`` weighs every index of it (most groups read neither ``desk`` nor one of the others: a third of the
    plan's time each, measured). Every column is named in every part, so any part can come first.

    On PostgreSQL, without the ``desk`` part (the desk reloads no account: no other read follows, only the group's
    INSERT), the statement ends the transaction's planning at each run (`kit.db.probes_from_here`): the INSERT, which
    reads no table (rows from arrays), then runs a plan made once for the connection, where planning it at each run
    cost the server ~180-200 us a group (pg_stat_statements). Its own parts are still planned at each run: a generic
    plan of them (values unknown) read every order of an account with a long history for the ``desk`` part (~300,000
    rows for ~400 wanted, measured), and one made while the statistics called ``orders`` empty probed the pairs of the
    ``order`` part through the wrong index (every order of the account, kept as the table grows).

    Oldest first (created_at, id), states first."""
    columns = [column for column in _ORDERS.c if column.name != "fingerprint"]
    names = [column.name for column in columns]

    def part(name: str, values: Sequence[Any], fingerprint: Any) -> Any:
        labelled = [value.label(column) for value, column in zip(values, names, strict=True)]
        return select(literal_column(f"'{name}'", String()).label("part"), *labelled, fingerprint.label("fingerprint"))

    counted = {"id", "account_id", "symbol", "side", "type", "quantity", "filled_quantity", "limit_price", "stop_price"}
    counted |= {"status", "created_at"}  # what `open_order_of` and the order times read; the others NULL
    selects = []
    if "order" in parts:
        stored = part("order", columns, _ORDERS.c.fingerprint)
        selects.append(
            stored.join_from(
                _ORDERS,
                _PAIRS,
                and_(_ORDERS.c.account_id == _PAIRS.c.account_id, _ORDERS.c.client_order_id == _PAIRS.c.client_order_id),
            )
            if postgresql
            else stored.where(
                _ORDERS.c.account_id.in_(bindparam("accounts", expanding=True)),
                _ORDERS.c.client_order_id.in_(bindparam("clients", expanding=True)),
            )
        )
    if "desk" in parts:
        desk = part("desk", [c if c.name in counted else null() for c in columns], null())
        selects.append(
            desk.where(
                in_list(_ORDERS.c.account_id, "desk_accounts", postgresql=postgresql),
                or_(_ORDERS.c.status.in_(OPEN_STATUSES), _ORDERS.c.created_at >= bindparam("since")),
            )
        )
    if "added" in parts:
        tagged = part("added", [c if c.name in {*counted, "desk_version"} else null() for c in columns], null())
        selects.append(
            tagged.join_from(
                _ORDERS,
                _KNOWN,
                # Row comparisons: only the index on (account_id, desk_version) can serve them, so the plan the order
                # desk's connection keeps for this read (`kit.db.probes_from_here`) probes it whatever the statistics
                # said when it was made (an equality on account_id alone let such a plan pick any index of `orders`).
                and_(
                    tuple_(_ORDERS.c.account_id, _ORDERS.c.desk_version) > tuple_(_KNOWN.c.account_id, _KNOWN.c.desk_version),
                    tuple_(_ORDERS.c.account_id, _ORDERS.c.desk_version) <= tuple_(_KNOWN.c.account_id, _NEWEST_DESK_VERSION),
                ),
            )
            if postgresql
            else tagged.where(
                _ORDERS.c.account_id.in_(bindparam("added_accounts", expanding=True)),
                _ORDERS.c.desk_version > bindparam("added_since"),
            )
        )
    by_name = {
        "id": TradingStateRow.scope,
        "status": TradingStateRow.state,
        "reason": TradingStateRow.reason,
    }
    states = part("state", [by_name.get(name, null()) for name in names], null()).where(
        in_list(TradingStateRow.scope, "scopes", postgresql=postgresql)
    )
    if postgresql and "desk" not in parts:
        states = states.where(probes_from_here())
    if not selects:
        return states.order_by(TradingStateRow.scope)  # every created_at NULL: by id (the scope)
    return union_all(*selects, states).order_by(literal_column("created_at").nulls_first(), literal_column("id"))


# Every combination of parts, built once (`_desk_reads`).
_DESK_READS = {
    frozenset(chosen): PerDialect(_desk_reads(True, frozenset(chosen)), _desk_reads(False, frozenset(chosen)))
    for chosen in itertools.chain.from_iterable(itertools.combinations(_DESK_PARTS, n) for n in range(len(_DESK_PARTS) + 1))
}

_LIMITS_OF = PerDialect.listing(
    lambda listed: select(RiskLimitsRow.account_id, RiskLimitsRow.limits).where(listed(RiskLimitsRow.account_id, "accounts"))
)
# The events of several orders, oldest first (what the engine folds the orders it is told of from).
_EVENTS_OF = PerDialect.listing(
    lambda listed: (
        select(OrderEventRow.order_id, OrderEventRow.payload)
        .where(listed(OrderEventRow.order_id, "orders"))
        .order_by(OrderEventRow.order_id, OrderEventRow.seq)
    )
)

# The stored versions of orders (what the engine's events are compare-and-set against, `versions_of`).
_VERSIONS_OF = PerDialect.listing(lambda listed: select(OrderRow.id, OrderRow.version).where(listed(OrderRow.id, "orders")))
# What a group of engine events writes of its orders (`append_many`): each order's projection moved once, compare-and-set
# on the version it was read at, and the events; on PostgreSQL each from arrays (one execution whatever the number of
# orders), elsewhere an executemany. On PostgreSQL the UPDATE is the group's first write, after its reads: what follows
# in its transaction (the events, the fills, journal entries, postings and balances) is writes from arrays and their
# key checks, one a row and key, which then run plans kept for the connection, made without sequential scans
# (`probes_from_here`), not planned again at each check (444 fills/s against 349 without, groups of 20: one run each).
_PROJECTED = (
    "quantity", "limit_price", "stop_price", "status", "filled_quantity", "average_fill_price", "reason", "version",
    "updated_at",
)  # fmt: skip
_MOVED = unnested(
    ("moved_id", "id", String()),
    ("moved_read_version", "read_version", Integer()),
    *((f"moved_{name}", name, _ORDERS.c[name].type) for name in _PROJECTED),
)
_MOVE_ORDERS = PerDialect(
    update(_ORDERS)
    .where(_ORDERS.c.id == _MOVED.c.id, _ORDERS.c.version == _MOVED.c.read_version, probes_from_here())
    .values({name: _MOVED.c[name] for name in _PROJECTED}),
    update(_ORDERS)
    .where(_ORDERS.c.id == bindparam("moved_id"), _ORDERS.c.version == bindparam("moved_read_version"))
    .values({name: bindparam(f"moved_{name}") for name in _PROJECTED}),
)
_APPEND_EVENTS = PerDialect(unnest_insert(_ORDER_EVENTS), _INSERT_ORDER_EVENTS)


@asynccontextmanager
async def books_session(database: Database) -> AsyncIterator[AsyncSession]:
    """A read-write session for changing trading books; commits when the block ends without error.

    On SQLite (one process, one writer) trading writes are also serialised in this process, so a
    transaction never reads balances another one is about to change.
    """
    async with database.writing(), database.session() as session:
        yield session


@dataclass(slots=True)
class DeskReads:
    """What `TradingRepository.desk_reads` read: the stored orders by (account id, client order id), the open order rows
    and the order times since, by account, the orders other desks added since a known desk version (oldest first), by
    account, and the trading states by scope."""

    stored: dict[tuple[str, str], Any]
    open_rows: dict[str, list[Any]]
    times: dict[str, list[datetime]]
    added: dict[str, list[Any]]
    states: dict[str, TradingState]


class ConcurrentUpdate(Exception):  # noqa: N818 - named for what happened
    """The order changed between reading it and writing its next event."""


class TradingRepository:
    """SQL for orders, fills, limits and states. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def _postgresql(self) -> bool:
        return on_postgresql(self.session)

    # -- orders ----------------------------------------------------------------------------------

    async def by_client_order_id(self, account_id: str, client_order_id: str) -> OrderRow | None:
        query = select(OrderRow).where(OrderRow.account_id == account_id, OrderRow.client_order_id == client_order_id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def get(self, order_id: str, *, lock: bool = False) -> OrderRow | None:
        query = select(OrderRow).where(OrderRow.id == order_id)
        if lock and self._postgresql:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def versions_of(self, order_ids: Sequence[str]) -> dict[str, int]:
        """The stored orders' versions by id (unknown ones absent), one query per `_IN_CHUNK` orders."""
        versions: dict[str, int] = {}
        for start in range(0, len(order_ids), _IN_CHUNK):
            rows = await execute_core(
                self.session, _VERSIONS_OF.of(self.session), {"orders": list(order_ids[start : start + _IN_CHUNK])}
            )
            versions.update((order_id, version) for order_id, version in rows)
        return versions

    async def events(self, order_id: str) -> list[OrderEvent]:
        rows = await self.session.scalars(
            select(OrderEventRow.payload).where(OrderEventRow.order_id == order_id).order_by(OrderEventRow.seq)
        )
        return [event_from_dict(orjson.loads(payload)) for payload in rows]

    async def event_rows(self, order_id: str) -> list[OrderEventRow]:
        return list(
            await self.session.scalars(
                select(OrderEventRow).where(OrderEventRow.order_id == order_id).order_by(OrderEventRow.seq)
            )
        )

    async def load(self, order_id: str) -> Order | None:
        """The order folded from its events (None when unknown)."""
        events = await self.events(order_id)
        return Order.from_events(events) if events else None

    async def load_many(self, order_ids: Sequence[str]) -> dict[str, Order]:
        """The orders folded from their events, by id (unknown ones absent), one query per `_IN_CHUNK` orders."""
        loaded: dict[str, Order] = {}
        for start in range(0, len(order_ids), _IN_CHUNK):
            events = await self._events_of(order_ids[start : start + _IN_CHUNK])
            loaded.update((order_id, Order.from_events(found)) for order_id, found in events.items())
        return loaded

    async def _events_of(self, order_ids: Sequence[str]) -> dict[str, list[OrderEvent]]:
        """The events of several orders, oldest first, by order id (orders without any absent)."""
        payloads = await execute_core(self.session, _EVENTS_OF.of(self.session), {"orders": list(order_ids)})
        events: dict[str, list[OrderEvent]] = {}
        for order_id, payload in payloads:
            events.setdefault(order_id, []).append(event_from_dict(orjson.loads(payload)))
        return events

    async def create(self, order: Order, events: Sequence[OrderEvent], fingerprint: str) -> OrderRow:
        """Insert a new order: its projection and its first events (`order` is their fold)."""
        request = order.submitted_request
        row = OrderRow(
            id=order.id,
            account_id=request.account_id,
            client_order_id=request.client_order_id,
            fingerprint=fingerprint,
            symbol=request.symbol,
            side=request.side.value,
            type=request.type.value,
            time_in_force=request.time_in_force.value,
            created_at=order.created_at,
        )
        _project(row, order)
        self.session.add(row)
        await self.session.flush()
        self._add_events(order.id, 1, events)
        await self.session.flush()
        return row

    async def append(self, row: OrderRow, order: Order, events: Sequence[OrderEvent]) -> None:
        """Append `events` to the stored order `row` and move its projection to `order` (their fold).

        Compare-and-set on the version: raises `ConcurrentUpdate` when someone else appended first.
        """
        first_seq = row.version + 1
        result = await self.session.execute(
            update(OrderRow)
            .where(OrderRow.id == row.id, OrderRow.version == row.version)
            .values(**_projection(order))
            .execution_options(synchronize_session=False)
        )
        if int(result.rowcount or 0) != 1:  # type: ignore[attr-defined]
            raise ConcurrentUpdate(f"order {row.id} changed while it was being updated")
        self._add_events(row.id, first_seq, events)
        await self.session.flush()
        for name, value in _projection(order).items():  # what the UPDATE wrote: nothing left for the next flush to write
            set_committed_value(row, name, value)

    async def append_many(self, appended: Sequence[tuple[int, Order, Sequence[OrderEvent]]]) -> None:
        """`append` for several stored orders, each given once as (the version its row was read at, the order after the
        events: their fold, the events): one statement moves the projections, one stores the events, whatever their
        number. Compare-and-set on each version: raises `ConcurrentUpdate` when one of the orders changed since it was
        read, the others then already moved (roll the transaction back)."""
        if not appended:
            return
        if len({order.id for _, order, _ in appended}) != len(appended):
            raise ValueError("an order appended to twice in one statement: give its events together")
        moved = [
            {"moved_id": order.id, "moved_read_version": version} | {f"moved_{k}": v for k, v in _projection(order).items()}
            for version, order, _ in appended
        ]
        events = [
            {
                "order_id": order.id,
                "seq": version + 1 + n,
                "kind": e.kind,
                "ts": e.ts,
                "payload": orjson.dumps(e.to_dict()).decode(),
            }
            for version, order, order_events in appended
            for n, e in enumerate(order_events)
        ]
        if self._postgresql:
            result = await execute_core(
                self.session, _MOVE_ORDERS.postgresql, {name: [row[name] for row in moved] for name in moved[0]}
            )
        else:
            result = await execute_core(self.session, _MOVE_ORDERS.other, moved if len(moved) > 1 else moved[0])
        if int(result.rowcount or 0) != len(moved):
            raise ConcurrentUpdate(
                f"{len(moved) - int(result.rowcount or 0)} of {len(moved)} orders changed while they were being updated"
            )
        if self._postgresql:
            await execute_core(
                self.session,
                _APPEND_EVENTS.postgresql,
                {f"order_events_{name}": [row[name] for row in events] for name in _EVENT_COLUMNS},
            )
        else:
            await execute_core(self.session, _APPEND_EVENTS.other, events)

    async def create_many(
        self,
        created: Sequence[tuple[Order, Sequence[OrderEvent], str]],
        desk_versions: Mapping[str, int],
        alongside: Alongside | None = None,
    ) -> None:
        """Insert new orders (order, its first events, fingerprint), each tagged with its account's desk version in
        `desk_versions` (the order desk's lock's): on PostgreSQL one statement of column arrays
        (`_INSERT_NEW_ORDERS`), which also writes another module's rows `alongside` (the group's audit entries),
        elsewhere two executemany statements (projections, events) and no `alongside`."""
        if not created:
            return
        projections, events = _new_rows(created, desk_versions)
        if self._postgresql:
            columns = {f"orders_{name}": [row[name] for row in projections] for name in _ORDER_COLUMNS}
            columns |= {f"order_events_{name}": [row[name] for row in events] for name in _EVENT_COLUMNS}
            if alongside is None:
                await execute_core(self.session, _INSERT_NEW_ORDERS, columns)
            else:
                statement = with_alongside(_INSERT_NEW_ORDERS, alongside.cte)
                await execute_core(self.session, statement, columns | alongside.parameters)
            return
        if alongside is not None:
            raise ValueError("rows alongside the orders' need PostgreSQL")
        await execute_core(self.session, _INSERT_ORDERS, projections)
        await execute_core(self.session, _INSERT_ORDER_EVENTS, events)

    async def with_client_prefix(
        self, account_id: str, prefix: str, *, changed_since: datetime | None = None
    ) -> list[tuple[OrderRow, list[OrderEvent]]]:
        """The account's orders whose client order id starts with `prefix` (a strategy's), oldest first, with their events;
        with `changed_since`, only those updated at or after it."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = select(OrderRow).where(OrderRow.account_id == account_id, OrderRow.client_order_id.like(pattern, escape="\\"))
        if changed_since is not None:
            query = query.where(OrderRow.updated_at >= changed_since)
        rows = list(await self.session.scalars(query.order_by(OrderRow.created_at, OrderRow.id)))
        if not rows:
            return []
        events = await self._events_of([row.id for row in rows])
        return [(row, events.get(row.id, [])) for row in rows]

    def _add_events(self, order_id: str, first_seq: int, events: Sequence[OrderEvent]) -> None:
        self.session.add_all(
            OrderEventRow(
                order_id=order_id,
                seq=first_seq + n,
                kind=event.kind,
                ts=event.ts,
                payload=orjson.dumps(event.to_dict()).decode(),
            )
            for n, event in enumerate(events)
        )

    async def page(
        self,
        account_ids: Sequence[str],
        *,
        status: Sequence[str] | None,
        symbol: str | None,
        before: Cursor | None,
        limit: int,
    ) -> list[OrderRow]:
        """Orders of `account_ids`, newest first, after the keyset cursor `before` (created_at, id)."""
        query = select(OrderRow).where(OrderRow.account_id.in_(account_ids))
        if status:
            query = query.where(OrderRow.status.in_(status))
        if symbol:
            query = query.where(OrderRow.symbol == symbol)
        query = older_than(query, OrderRow.created_at, OrderRow.id, before)
        query = query.order_by(OrderRow.created_at.desc(), OrderRow.id.desc()).limit(limit)
        return list(await self.session.scalars(query))

    async def desk_reads(
        self,
        keys: Sequence[tuple[str, str]],
        account_ids: Sequence[str],
        since: datetime,
        scopes: Sequence[str],
        known: Mapping[str, int] | None = None,
    ) -> DeskReads:
        """What the order desk reads of a group after locking it, in one statement (`_desk_reads`): the stored orders of
        the (account id, client order id) `keys`; the open orders and the times of the orders created at or after
        `since` of `account_ids`; the orders tagged with a desk version above the one `known` gives for their account
        (account id: desk version); the trading states of `scopes` and the global one (absent ones ACTIVE)."""
        wanted = set(keys)
        known = known or {}
        reads = DeskReads(
            stored={},
            open_rows={account_id: [] for account_id in account_ids},
            times={account_id: [] for account_id in account_ids},
            added={account_id: [] for account_id in known},
            states={},
        )
        parameters: dict[str, Any] = {"scopes": [GLOBAL_SCOPE, *scopes]}
        parts = []
        if wanted:
            parts.append("order")
            parameters |= {"accounts": [a for a, _ in wanted], "clients": [c for _, c in wanted]}
        if account_ids:
            parts.append("desk")
            parameters |= {"desk_accounts": list(account_ids), "since": since}
        if known:
            parts.append("added")
            parameters["added_accounts"] = list(known)
            if self._postgresql:
                parameters["added_versions"] = list(known.values())
            else:
                parameters["added_since"] = min(known.values())
        for row in await execute_core(self.session, _DESK_READS[frozenset(parts)].of(self.session), parameters):
            part = row.part
            if part == "desk":
                if row.status in OPEN_STATUSES:
                    reads.open_rows[row.account_id].append(row)
                if row.created_at >= since:
                    reads.times[row.account_id].append(row.created_at)
            elif part == "order":
                if (key := (row.account_id, row.client_order_id)) in wanted:
                    reads.stored[key] = row
            elif part == "added":
                if row.desk_version > known[row.account_id]:
                    reads.added[row.account_id].append(row)
            else:
                reads.states[row.id] = TradingState(row.status)
        return reads

    async def open_orders(self, account_ids: Sequence[str] | None = None) -> list[OrderRow]:
        """Open orders (all accounts when `account_ids` is None), oldest first."""
        query = select(OrderRow).where(OrderRow.status.in_(OPEN_STATUSES))
        if account_ids is not None:
            query = query.where(OrderRow.account_id.in_(account_ids))
        return list(await self.session.scalars(query.order_by(OrderRow.created_at, OrderRow.id)))

    async def orders_since(self, account_id: str, since: datetime) -> int:
        """Orders the account submitted at or after `since`."""
        query = select(func.count()).where(OrderRow.account_id == account_id, OrderRow.created_at >= since)
        return int((await self.session.execute(query)).scalar_one())

    # -- limits and states -----------------------------------------------------------------------

    async def limits(self, account_id: str) -> RiskLimitsRow | None:
        return await self.session.get(RiskLimitsRow, account_id)

    async def limits_of(self, account_ids: Sequence[str]) -> dict[str, str]:
        """The stored limits (JSON text) of several accounts, by account id (accounts on the defaults absent)."""
        rows = await execute_core(self.session, _LIMITS_OF.of(self.session), {"accounts": list(account_ids)})
        return {account_id: limits for account_id, limits in rows}

    async def put_limits(self, account_id: str, limits: str, now: datetime, by: str | None) -> None:
        row = await self.session.get(RiskLimitsRow, account_id)
        if row is None:
            self.session.add(RiskLimitsRow(account_id=account_id, limits=limits, updated_at=now, updated_by=by))
        else:
            row.limits, row.updated_at, row.updated_by = limits, now, by
        await self.session.flush()

    async def states(self, account_id: str | Sequence[str] | None) -> dict[str, Row[str, str, str | None]]:
        """The global state and, when given, the account's (or those of several accounts), by scope: rows of
        (scope, state, reason)."""
        accounts = [] if account_id is None else [account_id] if isinstance(account_id, str) else list(account_id)
        rows = await execute_core(self.session, _STATES.of(self.session), {"scopes": [GLOBAL_SCOPE, *accounts]})
        return {row.scope: row for row in rows}

    async def all_states(self) -> list[TradingStateRow]:
        return list(await self.session.scalars(select(TradingStateRow).order_by(TradingStateRow.scope)))

    async def put_state(self, scope: str, state: str, reason: str | None, now: datetime, by: str | None) -> None:
        row = await self.session.get(TradingStateRow, scope)
        if row is None:
            self.session.add(TradingStateRow(scope=scope, state=state, reason=reason, updated_at=now, updated_by=by))
        else:
            row.state, row.reason, row.updated_at, row.updated_by = state, reason, now, by
        await self.session.flush()


_AVERAGE_PLACES = Decimal("1e-18")
_WIDE = Context(prec=60, rounding=ROUND_HALF_EVEN)


def _new_rows(
    created: Sequence[tuple[Order, Sequence[OrderEvent], str]], desk_versions: Mapping[str, int]
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The rows of new orders: their projections and their events."""
    projections: list[dict[str, object]] = []
    events: list[dict[str, object]] = []
    for order, order_events, fingerprint in created:
        request = order.submitted_request
        projections.append(
            {
                "id": order.id, "account_id": request.account_id, "client_order_id": request.client_order_id,
                "fingerprint": fingerprint, "symbol": request.symbol, "side": request.side.value,
                "type": request.type.value, "time_in_force": request.time_in_force.value, "created_at": order.created_at,
                "desk_version": desk_versions.get(request.account_id), **_projection(order),
            }
        )  # fmt: skip
        events += [
            {"order_id": order.id, "seq": n + 1, "kind": e.kind, "ts": e.ts, "payload": orjson.dumps(e.to_dict()).decode()}
            for n, e in enumerate(order_events)
        ]
    return projections, events


def _projection(order: Order) -> dict[str, object]:
    request = order.request
    average = order.average_fill_price
    return {
        "quantity": request.quantity,
        "limit_price": request.limit_price,
        "stop_price": request.stop_price,
        "status": order.status.value,
        "filled_quantity": order.filled_quantity,
        # Exact when it terminates within the column's 18 places (always, when every fill has one price).
        "average_fill_price": None if average is None else _WIDE.quantize(average, _AVERAGE_PLACES).normalize(_WIDE),
        "reason": order.reason,
        "version": order.version,
        "updated_at": order.updated_at,
    }


def _project(row: OrderRow, order: Order) -> None:
    for name, value in _projection(order).items():
        setattr(row, name, value)
