"""`tradestack check integrity`: the book-keeping invariants, checked on whatever database is configured.

1. Every journal entry sums to zero in each currency.
2. Positions in the journal (quantities on ``position:`` postings) equal the fold of the fills
   (currency pairs excepted: their fills are conversions of cash, not positions).
3. Every order's stored state equals the fold of its events, whose sequence numbers have no holes.
4. Every fill belongs to an order whose events record that fill, with the same quantity and price.
5. Balances are the fold of the journal: for every trading account and ledger account, the row in
   ``balances`` has the currency of its postings and the sums of their amounts and quantities, and
   every ledger account that has postings has a balance row.

How it scales: nothing builds an ORM object per row. Sums are SQL aggregates on PostgreSQL
(NUMERIC is exact); SQLite keeps decimals as text, so SQL ``SUM`` would use floats, and there the
rows are streamed with Core and summed in Python. The orders are proven set-based on PostgreSQL
(`integrity_orders`), and the domain folds only the orders that pass cannot prove. On
PostgreSQL everything reads one REPEATABLE READ snapshot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

import orjson
from sqlalchemy import Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.core.money import EXACT, plain
from tradestack.domain.instruments import CATALOG
from tradestack.domain.orders import FillEvent, InvalidTransition, Order, OrderEvent, event_from_dict
from tradestack.kit.db import Database
from tradestack.models.books import BalanceRow, FillRow, JournalEntryRow, PostingRow
from tradestack.models.trading import OrderEventRow, OrderRow
from tradestack.ops.integrity_orders import orders_to_fold

_CURRENCY_PAIRS = frozenset(i.symbol for i in CATALOG if i.currency_pair is not None)
"""Symbols whose fills are booked as conversions of cash (no position to compare)."""
MAX_PROBLEMS = 50
ORDER_CONNECTIONS = 2  # sessions sharing the orders' SQL pass on PostgreSQL
FOLD_BATCH = 2000
# Column values have at most 38 digits: at `EXACT`'s precision their sums never round.


@dataclass
class IntegrityReport:
    """What was checked and what is wrong (empty `problems`: all invariants hold)."""

    checked: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every invariant holds."""
        return not self.problems

    def problem(self, text: str) -> None:
        """Record a problem (the first `MAX_PROBLEMS` are kept)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)


@dataclass
class _Fold:
    """The sums of one ledger account's postings."""

    currencies: set[str] = field(default_factory=set)
    amount: Decimal = Decimal(0)
    quantity: Decimal | None = None


Folds = dict[tuple[str, str], _Fold]
Sums = dict[tuple[Any, ...], list[Decimal | None]]


def _text(quantity: Decimal | None) -> str:
    return "none" if quantity is None else plain(quantity)


async def _sums(
    session: AsyncSession, keys: Sequence[Any], values: Sequence[Any], query: Select[Any], *, nonzero: bool = False
) -> Sums:
    """Exact sums of `values` grouped by `keys` over `query`'s FROM/WHERE (a sum of only NULLs is None, as in SQL).

    PostgreSQL sums in SQL; on SQLite (decimals stored as text) the rows are streamed and summed in Python.
    With `nonzero`, only the groups whose first sum is not zero are returned.
    """
    sums: Sums = {}
    if session.get_bind().dialect.name == "postgresql":
        grouped = query.with_only_columns(*keys, *(func.sum(value) for value in values)).group_by(*keys)
        if nonzero:
            grouped = grouped.having(func.sum(values[0]) != 0)
        for row in await session.execute(grouped):
            sums[tuple(row[: len(keys)])] = list(row[len(keys) :])
        return sums
    result = await session.stream(query.with_only_columns(*keys, *values))
    with localcontext(EXACT):
        async for partition in result.partitions(5000):
            for row in partition:
                key = tuple(row[: len(keys)])
                totals = sums.setdefault(key, [None] * len(values))
                for index, value in enumerate(row[len(keys) :]):
                    if value is not None:
                        current = totals[index]
                        totals[index] = value if current is None else current + value
    if nonzero:
        return {key: totals for key, totals in sums.items() if totals[0] != 0}
    return sums


async def _count(session: AsyncSession, query: Select[Any]) -> int:
    return int((await session.execute(query)).scalar_one())


async def _journal(session: AsyncSession, report: IntegrityReport) -> tuple[dict[tuple[str, str], Decimal], Folds]:
    """Check that entries balance; returns positions by (account, symbol) and the fold of every ledger account."""
    postings = select(PostingRow.entry_id)
    unbalanced = await _sums(session, [PostingRow.entry_id, PostingRow.currency], [PostingRow.amount], postings, nonzero=True)
    for (entry_id, currency), (total,) in sorted(unbalanced.items()):
        report.problem(f"journal entry {entry_id} does not balance: {currency} postings sum to {plain(total or Decimal(0))}")
    empty = await session.scalars(
        select(JournalEntryRow.id)
        .where(~select(PostingRow.entry_id).where(PostingRow.entry_id == JournalEntryRow.id).exists())
        .order_by(JournalEntryRow.id)
    )
    for entry_id in empty:
        report.problem(f"journal entry {entry_id} has no postings")
    report.checked["journal entries"] = await _count(session, select(func.count(func.distinct(PostingRow.entry_id))))
    report.checked["postings"] = await _count(session, select(func.count()).select_from(PostingRow))
    by_account = await _sums(
        session,
        [JournalEntryRow.account_id, PostingRow.account, PostingRow.currency],
        [PostingRow.amount, PostingRow.quantity],
        select(PostingRow.entry_id).join(JournalEntryRow, JournalEntryRow.id == PostingRow.entry_id),
    )
    positions: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    folds: Folds = defaultdict(_Fold)
    with localcontext(EXACT):
        for (account_id, ledger_account, currency), (amount, quantity) in by_account.items():
            fold = folds[(account_id, ledger_account)]
            fold.currencies.add(currency)
            fold.amount += amount or Decimal(0)
            if quantity is not None:
                fold.quantity = (fold.quantity or Decimal(0)) + quantity
            if ledger_account.startswith("position:"):
                positions[(account_id, ledger_account.removeprefix("position:"))] += quantity or Decimal(0)
    return positions, folds


async def _balances(session: AsyncSession, report: IntegrityReport, folds: Folds) -> None:
    """Compare every row of `balances` with the fold of its postings (`folds`, emptied as it goes)."""
    columns = (BalanceRow.account_id, BalanceRow.ledger_account, BalanceRow.currency, BalanceRow.amount, BalanceRow.quantity)
    rows = (await session.execute(select(*columns).order_by(BalanceRow.account_id, BalanceRow.ledger_account))).all()
    for account_id, ledger_account, currency, amount, quantity in rows:
        name = f"balance {ledger_account} of account {account_id}"
        fold = folds.pop((account_id, ledger_account), _Fold())
        if fold.currencies and fold.currencies != {currency}:
            report.problem(f"{name}: kept in {currency} but its postings are in {', '.join(sorted(fold.currencies))}")
        if amount != fold.amount:
            report.problem(f"{name}: amount {plain(amount)} but its postings sum to {plain(fold.amount)}")
        if quantity != fold.quantity:
            report.problem(f"{name}: quantity {_text(quantity)} but its postings' quantities sum to {_text(fold.quantity)}")
    for (account_id, ledger_account), fold in sorted(folds.items()):
        report.problem(f"balance {ledger_account} of account {account_id} is missing: its postings sum to {plain(fold.amount)}")
    report.checked["balances"] = len(rows)


async def _fill_positions(session: AsyncSession, report: IntegrityReport) -> dict[tuple[str, str], Decimal]:
    sums = await _sums(session, [FillRow.account_id, FillRow.symbol, FillRow.side], [FillRow.quantity], select(FillRow.id))
    positions: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    with localcontext(EXACT):
        for (account_id, symbol, side), (quantity,) in sums.items():
            quantity = quantity or Decimal(0)
            if symbol not in _CURRENCY_PAIRS:
                positions[(account_id, symbol)] += quantity if side == "buy" else -quantity
    report.checked["fills"] = await _count(session, select(func.count()).select_from(FillRow))
    return positions


def _fold(report: IntegrityReport, order: Any, rows: list[Any], folded: dict[str, list[FillEvent]]) -> None:
    """Fold one order's events (`rows`: seq, payload) through the domain and compare with its stored state."""
    order_id, status, filled_quantity, version = order
    sequence = [seq for seq, _ in rows]
    if sequence != list(range(1, len(rows) + 1)):
        report.problem(f"order {order_id}: event sequence {sequence} has holes or does not start at 1")
        return
    try:
        parsed: list[OrderEvent] = [event_from_dict(orjson.loads(payload)) for _, payload in rows]
        state = Order.from_events(parsed)
    except (InvalidTransition, ValueError, TypeError, KeyError) as exc:
        report.problem(f"order {order_id}: its events do not fold: {exc}")
        return
    folded[order_id] = [e for e in parsed if isinstance(e, FillEvent)]
    stored = (status, filled_quantity, version)
    expected = (state.status.value, state.filled_quantity, state.version)
    if stored != expected:
        report.problem(
            f"order {order_id}: stored status/filled/version {stored[0]}/{stored[1]}/{stored[2]} "
            f"but its events give {expected[0]}/{expected[1]}/{expected[2]}"
        )


async def _fold_batch(
    session: AsyncSession, report: IntegrityReport, orders: list[Any], folded: dict[str, list[FillEvent]]
) -> None:
    ids = [order[0] for order in orders]
    events: dict[str, list[Any]] = defaultdict(list)
    query = (
        select(OrderEventRow.order_id, OrderEventRow.seq, OrderEventRow.payload)
        .where(OrderEventRow.order_id.in_(ids))
        .order_by(OrderEventRow.order_id, OrderEventRow.seq)
    )
    for order_id, seq, payload in await session.execute(query):
        events[order_id].append((seq, payload))
    for order in orders:
        _fold(report, order, events.get(order[0], []), folded)


async def _orders(
    session: AsyncSession, report: IntegrityReport, helpers: Sequence[AsyncSession] = ()
) -> dict[str, list[FillEvent]]:
    """Check each order against its events; returns the fill events of every order the domain folded.

    On PostgreSQL the orders proven by SQL are not folded here (they have no fill events); `helpers`
    (sessions on the same snapshot) share that SQL pass.
    """
    columns = (OrderRow.id, OrderRow.status, OrderRow.filled_quantity, OrderRow.version)
    to_fold = await orders_to_fold(session, helpers) if session.get_bind().dialect.name == "postgresql" else None
    folded: dict[str, list[FillEvent]] = {}
    if to_fold is None:  # every order, in id order, a batch at a time
        last: str | None = None
        while True:
            query = select(*columns).order_by(OrderRow.id).limit(FOLD_BATCH)
            batch = (await session.execute(query if last is None else query.where(OrderRow.id > last))).all()
            if not batch:
                break
            await _fold_batch(session, report, list(batch), folded)
            last = batch[-1][0]
    else:
        for start in range(0, len(to_fold), FOLD_BATCH):
            ids = to_fold[start : start + FOLD_BATCH]
            batch = (await session.execute(select(*columns).where(OrderRow.id.in_(ids)).order_by(OrderRow.id))).all()
            await _fold_batch(session, report, list(batch), folded)
    orphans = await session.scalars(
        select(OrderEventRow.order_id)
        .where(~select(OrderRow.id).where(OrderRow.id == OrderEventRow.order_id).exists())
        .distinct()
        .order_by(OrderEventRow.order_id)
    )
    for order_id in orphans:
        report.problem(f"order events of {order_id} belong to no order")
    report.checked["orders"] = await _count(session, select(func.count()).select_from(OrderRow))
    report.checked["orders folded by the domain"] = len(folded)
    return folded


async def _snapshot_helpers(database: Database, session: AsyncSession, stack: AsyncExitStack, count: int) -> list[AsyncSession]:
    """`count` more read-only sessions reading the snapshot of `session` (a REPEATABLE READ transaction)."""
    snapshot = (await session.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
    helpers = []
    for _ in range(count):
        helper = await stack.enter_async_context(database.read_session())
        await helper.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        await helper.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
        helpers.append(helper)
    return helpers


async def check_integrity(database: Database, *, connections: int = ORDER_CONNECTIONS) -> IntegrityReport:
    """Run every invariant in one read-only snapshot.

    On PostgreSQL without a read replica, the orders' SQL pass is shared by `connections`
    sessions importing that snapshot (a snapshot cannot be shared with a replica's sessions).
    """
    report = IntegrityReport()
    async with database.read_session() as session, AsyncExitStack() as stack:
        helpers: list[AsyncSession] = []
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            if database.replica_engine is None and connections > 1:
                helpers = await _snapshot_helpers(database, session, stack, connections - 1)
        journal_positions, folds = await _journal(session, report)
        await _balances(session, report, folds)
        fill_positions = await _fill_positions(session, report)
        orders = await _orders(session, report, helpers)
        for key in sorted(set(journal_positions) | set(fill_positions)):
            in_journal, from_fills = journal_positions.get(key, Decimal(0)), fill_positions.get(key, Decimal(0))
            if in_journal != from_fills:
                report.problem(f"account {key[0]} {key[1]}: the journal holds {plain(in_journal)} "
                               f"but the fills add up to {plain(from_fills)}")  # fmt: skip
        fills = await session.stream(
            select(FillRow.id, FillRow.order_id, FillRow.quantity, FillRow.price).order_by(FillRow.order_id, FillRow.id)
        )
        async for partition in fills.partitions(5000):
            for fill_id, order_id, quantity, price in partition:
                fill_events = orders.get(order_id)
                if fill_events is None:
                    continue  # already reported with its order
                recorded = [e for e in fill_events if e.fill_id == fill_id]
                if not recorded:
                    report.problem(f"fill {fill_id}: order {order_id}'s events do not record it")
                elif (recorded[0].quantity, recorded[0].price) != (quantity, price):
                    report.problem(f"fill {fill_id}: {plain(quantity)} @ {plain(price)} but the order's event says "
                                   f"{plain(recorded[0].quantity)} @ {plain(recorded[0].price)}")  # fmt: skip
    return report
