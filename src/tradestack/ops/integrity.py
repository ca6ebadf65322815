"""`tradestack check integrity`: the book-keeping invariants, checked on whatever database is configured.

1. Every journal entry sums to zero in each currency.
2. Positions in the journal (quantities on ``position:`` postings) equal the fold of the fills.
3. Every order's stored state equals the fold of its events, whose sequence numbers have no holes.
4. Every fill belongs to an order whose events record that fill, with the same quantity and price.
5. Balances are the fold of the journal: for every trading account and ledger account, the row in
   ``balances`` has the currency of its postings and the sums of their amounts and quantities, and
   every ledger account that has postings has a balance row.

Exact decimals are summed in Python: SQLite keeps them as text, so SQL ``SUM`` would use floats.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, localcontext

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.core.money import plain
from tradestack.domain.orders import FillEvent, InvalidTransition, Order, OrderEvent, event_from_dict
from tradestack.kit.db import Database
from tradestack.models.books import BalanceRow, FillRow, JournalEntryRow, PostingRow
from tradestack.models.trading import OrderEventRow, OrderRow

MAX_PROBLEMS = 50
# Column values have at most 38 digits: at this precision their sums never round.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


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


def _text(quantity: Decimal | None) -> str:
    return "none" if quantity is None else plain(quantity)


async def _journal(session: AsyncSession, report: IntegrityReport) -> tuple[dict[tuple[str, str], Decimal], Folds]:
    """Check that entries balance; returns positions by (account, symbol) and the fold of every ledger account."""
    columns = (PostingRow.entry_id, JournalEntryRow.account_id, PostingRow.account, PostingRow.currency)
    rows = await session.execute(
        select(*columns, PostingRow.amount, PostingRow.quantity).join(JournalEntryRow, JournalEntryRow.id == PostingRow.entry_id)
    )
    sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    positions: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    folds: Folds = defaultdict(_Fold)
    postings = 0
    with localcontext(_EXACT):
        for entry_id, account_id, ledger_account, currency, amount, quantity in rows:
            postings += 1
            sums[(entry_id, currency)] += amount
            fold = folds[(account_id, ledger_account)]
            fold.currencies.add(currency)
            fold.amount += amount
            if quantity is not None:
                fold.quantity = (fold.quantity or Decimal(0)) + quantity
            if ledger_account.startswith("position:"):
                positions[(account_id, ledger_account.removeprefix("position:"))] += quantity or Decimal(0)
    entries = {entry for entry, _ in sums}
    for (entry_id, currency), total in sorted(sums.items()):
        if total != 0:
            report.problem(f"journal entry {entry_id} does not balance: {currency} postings sum to {total}")
    empty = await session.scalars(select(JournalEntryRow.id).where(JournalEntryRow.id.not_in(select(PostingRow.entry_id))))
    for entry_id in empty:
        report.problem(f"journal entry {entry_id} has no postings")
    report.checked["journal entries"] = len(entries)
    report.checked["postings"] = postings
    return positions, folds


async def _balances(session: AsyncSession, report: IntegrityReport, folds: Folds) -> None:
    """Compare every row of `balances` with the fold of its postings (`folds`, emptied as it goes)."""
    rows = list(await session.scalars(select(BalanceRow).order_by(BalanceRow.account_id, BalanceRow.ledger_account)))
    for row in rows:
        name = f"balance {row.ledger_account} of account {row.account_id}"
        fold = folds.pop((row.account_id, row.ledger_account), _Fold())
        if fold.currencies and fold.currencies != {row.currency}:
            report.problem(f"{name}: kept in {row.currency} but its postings are in {', '.join(sorted(fold.currencies))}")
        if row.amount != fold.amount:
            report.problem(f"{name}: amount {plain(row.amount)} but its postings sum to {plain(fold.amount)}")
        if row.quantity != fold.quantity:
            report.problem(f"{name}: quantity {_text(row.quantity)} but its postings' quantities sum to {_text(fold.quantity)}")
    for (account_id, ledger_account), fold in sorted(folds.items()):
        report.problem(f"balance {ledger_account} of account {account_id} is missing: its postings sum to {plain(fold.amount)}")
    report.checked["balances"] = len(rows)


async def _fills(session: AsyncSession, report: IntegrityReport) -> tuple[dict[tuple[str, str], Decimal], list[FillRow]]:
    fills = list(await session.scalars(select(FillRow)))
    positions: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for fill in fills:
        positions[(fill.account_id, fill.symbol)] += fill.quantity if fill.side == "buy" else -fill.quantity
    report.checked["fills"] = len(fills)
    return positions, fills


async def _orders(session: AsyncSession, report: IntegrityReport) -> dict[str, list[FillEvent]]:
    """Check each order against its events; returns the fill events of every order that folds."""
    events: dict[str, list[OrderEventRow]] = defaultdict(list)
    for row in await session.scalars(select(OrderEventRow).order_by(OrderEventRow.order_id, OrderEventRow.seq)):
        events[row.order_id].append(row)
    folded: dict[str, list[FillEvent]] = {}
    orders = list(await session.scalars(select(OrderRow)))
    for order in orders:
        rows = events.pop(order.id, [])
        if [r.seq for r in rows] != list(range(1, len(rows) + 1)):
            report.problem(f"order {order.id}: event sequence {[r.seq for r in rows]} has holes or does not start at 1")
            continue
        try:
            parsed: list[OrderEvent] = [event_from_dict(orjson.loads(r.payload)) for r in rows]
            state = Order.from_events(parsed)
        except (InvalidTransition, ValueError, TypeError, KeyError) as exc:
            report.problem(f"order {order.id}: its events do not fold: {exc}")
            continue
        folded[order.id] = [e for e in parsed if isinstance(e, FillEvent)]
        stored = (order.status, order.filled_quantity, order.version)
        expected = (state.status.value, state.filled_quantity, state.version)
        if stored != expected:
            report.problem(
                f"order {order.id}: stored status/filled/version {stored[0]}/{stored[1]}/{stored[2]} "
                f"but its events give {expected[0]}/{expected[1]}/{expected[2]}"
            )
    for order_id in events:
        report.problem(f"order events of {order_id} belong to no order")
    report.checked["orders"] = len(orders)
    return folded


async def check_integrity(database: Database) -> IntegrityReport:
    """Run every invariant in one read-only snapshot."""
    report = IntegrityReport()
    async with database.read_session() as session:
        journal_positions, folds = await _journal(session, report)
        await _balances(session, report, folds)
        fill_positions, fill_rows = await _fills(session, report)
        fills = [(f.id, f.order_id, f.quantity, f.price) for f in fill_rows]  # plain values: the session ends here
        orders = await _orders(session, report)
    for key in sorted(set(journal_positions) | set(fill_positions)):
        in_journal, from_fills = journal_positions.get(key, Decimal(0)), fill_positions.get(key, Decimal(0))
        if in_journal != from_fills:
            report.problem(f"account {key[0]} {key[1]}: the journal holds {in_journal} but the fills add up to {from_fills}")
    for fill_id, order_id, quantity, price in fills:
        fill_events = orders.get(order_id)
        if fill_events is None:
            continue  # already reported with its order
        recorded = [e for e in fill_events if e.fill_id == fill_id]
        if not recorded:
            report.problem(f"fill {fill_id}: order {order_id}'s events do not record it")
        elif (recorded[0].quantity, recorded[0].price) != (quantity, price):
            report.problem(f"fill {fill_id}: {quantity} @ {price} but the order's event says "
                           f"{recorded[0].quantity} @ {recorded[0].price}")  # fmt: skip
    return report
