"""Recording what the matching engine did: fills, triggers and expiries, the events of one engine step in one transaction.

A fill is written as a whole or not at all: the `fills` row, the order's fill event and its
projection, the journal entry with its postings and the balances they move. The fill id is the
primary key of `fills` and the order refuses a fill id it has already applied, so replaying an
execution (after a crash, or by a second engine) can never book it twice.

The engine, the single writer of its accounts' executions, writes the events of a step together
(`record_many`: group commit, one transaction of up to `GROUP_MOST` events where a quote crossing
many resting orders cost a transaction each), deciding each exactly as `record` does for one event
in a transaction of its own; when the group fails, it records them one by one. A group reads once
(its accounts locked in one statement, its orders, the fills already booked, the balances), decides
each event in memory against what the earlier ones changed, then writes one statement a table:
the orders' projections (each once, compare-and-set on the version read), their events, and
through the books' `FillBooking` the fills, journal entries, postings and balances (each once, at
the group's net). `record` is a group of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.books.service import BooksService, FillBooking
from tradestack.core.money import plain
from tradestack.domain.books import AccountBooks, AccountProfile
from tradestack.domain.instruments import Instrument
from tradestack.domain.marketdata import Side
from tradestack.domain.matching import Expired, Fill, Triggered
from tradestack.domain.orders import (
    FillEvent,
    Order,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderStatus,
    OrderTriggered,
)
from tradestack.domain.orders import fill_event as fill_event_of
from tradestack.domain.portfolio import FxRates, MissingFxRate
from tradestack.domain.riskstate import buying_power
from tradestack.kit.metrics import ORDERS
from tradestack.kit.runtime import Runtime
from tradestack.trading.repository import ConcurrentUpdate, TradingRepository, books_session
from tradestack.trading.schemas import OrderOut


class Recorded(StrEnum):
    """What became of an engine event."""

    APPLIED = "applied"
    GONE = "gone"  # the order is no longer open (canceled or ended meanwhile): drop it from the book
    STALE = "stale"  # matched on terms a replace has changed since (`admits`): drop it from the book, placed again anew
    DUPLICATE = "duplicate"  # this fill is already booked
    CANCELED = "canceled"  # the fill was refused (not enough cash) and the order canceled


@dataclass
class Result:
    outcome: Recorded
    order: OrderOut | None = None
    fill: FillEvent | None = None
    books: dict[str, dict[str, str]] | None = None


GROUP_MOST = 20
"""Engine events written in one transaction at most (`record_many`). The transaction holds its accounts' locks while it
writes, ~25-50 ms for 20 fills (~0.6-1 ms of CPU a fill, benchmarks/engine_fills.py on a loaded 2-core machine; ~7-11 ms
a fill before the group's writes went out one statement a table): an order of one of those accounts waits for it."""

SQLITE_GROUP_MOST = 10
"""The same on SQLite, where the transaction also holds the process's one writer, which order entry shares (any
account's order waits). Since a group is decided in memory and written one statement a table (`_Group`), groups of 10
keep order entry's wait behind a quote crossing 300 resting orders near one event a transaction's
(`benchmarks/engine_fills.py --orders 300 --accounts 20 --entry-probe` on a loaded 2-core machine, five runs a size;
fills/s, order entry's median wait, its max): one event a transaction 91-176 fills/s, 4.7-6.3 ms, 23-45 ms; groups of
10 570-937, 4.8-9.4 ms (at most 1.8x one-a-transaction's of the same pass), 21-41 ms; groups of 20 665-1156, 8.1-22.5
ms (2.7x and 3.6x in two of the five passes), 30-47 ms. With the earlier per-statement writes groups of 50 made it wait
~350 ms, hence one at a time then."""

Event = Fill | Triggered | Expired


async def record(runtime: Runtime, account_id: str, instrument: Instrument, event: Event, rates: FxRates) -> Result:
    """Write one engine event for an order of `account_id` in a transaction of its own (see the module docstring)."""
    return (await record_many(runtime, instrument, [(account_id, event)], rates))[0]


async def record_many(
    runtime: Runtime, instrument: Instrument, events: Sequence[tuple[str, Event]], rates: FxRates
) -> list[Result]:
    """Write engine events (the account id of the order, the event) of `instrument` in one transaction, in their order,
    each as `record` would in a transaction of its own: every later event sees what the earlier ones wrote (an order's
    next fill, an account's cash after its earlier fills). The accounts are locked once each, in id order, before
    anything is read. Raises, writing nothing, when any of them fails; `GROUP_MOST` of them at most.

    Each event is decided in memory against what the group read and what its earlier events changed (`_Group`); then
    the group's writes go out together, one statement a table (the orders' projections, their events, and through
    `BooksService.fill_booking` the fills, journal entries, postings and balances)."""
    if len(events) > GROUP_MOST:
        raise ValueError(f"{len(events)} events in one transaction: at most {GROUP_MOST}")
    async with books_session(runtime.database) as session:
        group = await _Group.read(session, runtime, events)
        written = [group.decide(account_id, instrument, event, rates) for account_id, event in events]
        try:
            await group.write()
        except ConcurrentUpdate:
            if len(events) > 1:
                raise  # the group is rolled back; the engine then records each event on its own
            written = [(None, Result(Recorded.GONE))]  # its one order changed meanwhile: nothing of it was written
    for before, result in written:  # counted once committed
        if before is not None and result.order is not None:
            _count(before, result.order)
    return [result for _, result in written]


def _count(before: OrderStatus, after: OrderOut) -> None:
    """Count an order that an engine event filled partly or ended."""
    status = OrderStatus(after.status)
    if status is not before and (status.is_terminal or status is OrderStatus.PARTIALLY_FILLED):
        ORDERS.labels(type=after.type, status=status.value).inc()


class _Group:
    """What a transaction of engine events read, kept current by what it decides: the accounts it locked, the orders
    (the versions their stored rows were read at, and their folds), the fills already booked, the booking of the
    accounts with fills (their books); and what it is to write of the orders."""

    def __init__(
        self,
        repo: TradingRepository,
        fx_fee_bps: Decimal,
        accounts: dict[str, AccountProfile],
        orders: tuple[dict[str, int], dict[str, Order]],
        booked: set[str],
        booking: FillBooking,
    ) -> None:
        self.repo = repo
        self.fx_fee_bps = fx_fee_bps
        self.accounts = accounts
        self.versions, self.orders = orders
        self.booked = booked
        self.booking = booking
        self.appended: dict[str, list[OrderEvent]] = {}  # the events to append, by order id, in the order decided

    @classmethod
    async def read(cls, session: AsyncSession, runtime: Runtime, events: Sequence[tuple[str, Event]]) -> _Group:
        """Lock the events' accounts (one statement, in id order), then read their orders, which of their fills are
        booked already and the balances of the accounts with fills."""
        repo, ledger = TradingRepository(session), BooksService(session, runtime.clock)
        accounts = await ledger.lock_all(sorted({account_id for account_id, _ in events}))
        order_ids = list(dict.fromkeys(event.order_id for _, event in events))
        orders = (await repo.versions_of(order_ids), await repo.load_many(order_ids))
        fills = [event for _, event in events if isinstance(event, Fill)]
        booked = await ledger.booked_fills([fill.fill_id for fill in fills])  # no query without fills
        filling = sorted({account_id for account_id, event in events if isinstance(event, Fill)} & accounts.keys())
        booking = await ledger.fill_booking([accounts[account_id] for account_id in filling])  # none without fills
        return cls(repo, runtime.settings.paper_fx_fee_bps, accounts, orders, booked, booking)

    def decide(self, account_id: str, instrument: Instrument, event: Event, rates: FxRates) -> tuple[OrderStatus | None, Result]:
        """Decide one event and keep what it writes; the order's status before it (None when nothing is written) and
        what became of it."""
        account = self.accounts.get(account_id)
        order = self.orders.get(event.order_id)
        if event.order_id not in self.versions or order is None or order.status.is_terminal or account is None:
            return None, Result(Recorded.GONE)
        new_events: list[OrderEvent]
        fill_event: FillEvent | None = None
        if isinstance(event, Fill):
            if event.fill_id in order.fill_ids or event.fill_id in self.booked:
                return None, Result(Recorded.DUPLICATE)
            if not admits(order, event):
                return None, Result(Recorded.STALE)
            shortfall = _cash_shortfall(self.booking.books(account.id), order, instrument, event, rates, self.fx_fee_bps)
            if shortfall is not None:
                new_events = [OrderCanceled(order_id=order.id, ts=event.ts, reason=shortfall)]
            else:
                fill_event = fill_event_of(order, event, instrument.quote_currency)
                new_events = [fill_event]
        elif isinstance(event, Triggered):
            if order.status is not OrderStatus.ACCEPTED:
                return None, Result(Recorded.DUPLICATE)
            new_events = [OrderTriggered(order_id=order.id, ts=event.ts)]
        else:
            new_events = [OrderExpired(order_id=order.id, ts=event.ts)]
        after = order
        for new in new_events:
            after = after.apply(new)
        self.orders[order.id] = after
        self.appended.setdefault(order.id, []).extend(new_events)
        books = None
        if fill_event is not None:
            booked = self.booking.book(
                account.id,
                order.request.symbol,
                order.request.side.value,
                fill_event,
                instrument.quote_currency,
                rates=rates,
                fx_fee_bps=self.fx_fee_bps,
                pair=instrument.currency_pair,
            )
            self.booked.add(fill_event.fill_id)
            filled = order.request.symbol if instrument.currency_pair is None else None  # a pair moves only cash
            books = balances_message(booked, filled, instrument.quote_currency)
        outcome = Recorded.CANCELED if isinstance(new_events[0], OrderCanceled) else Recorded.APPLIED
        return order.status, Result(outcome, OrderOut.of_order(after), fill_event, books)

    async def write(self) -> None:
        """Write what the events decided: the orders first (`ConcurrentUpdate` when one changed since it was read, its
        books then not written), then the books."""
        await self.repo.append_many(
            [(self.versions[order_id], self.orders[order_id], events) for order_id, events in self.appended.items()]
        )
        await self.booking.write()


def admits(order: Order, fill: Fill) -> bool:
    """Whether the order's stored terms admit the engine's `fill`: no more than what remains, at its limit or better.

    The paper engine never fills beyond an order's limit (`MatchingEngine` caps the price at it) nor above what is left,
    so a fill that breaks either was matched on terms a replace has changed since it reached the engine's book: a
    replace committed (and acknowledged) before the engine heard of it. An exchange answers such a fill "too late to
    replace" the other way round; here the replace was acknowledged first, so the acknowledged terms win: the fill is
    not booked, and the engine places the order again with its stored terms."""
    if fill.quantity > order.remaining_quantity:
        return False
    limit = order.request.limit_price
    if limit is None:
        return True
    return fill.price <= limit if order.request.side is Side.BUY else fill.price >= limit


def balances_message(books: AccountBooks, filled: str | None, currency: str) -> dict[str, dict[str, str]]:
    """Cash and positions as the portfolio channel sends them: by ledger account, decimals as strings; the
    `filled` symbol's position is always there (quantity 0 once the fill closed it)."""
    message: dict[str, dict[str, str]] = {
        f"cash:{currency}": {"currency": currency, "amount": str(amount)} for currency, amount in books.cash.items()
    }
    for symbol, holding in books.holdings.items():
        message[f"position:{symbol}"] = {
            "currency": holding.currency,
            "amount": str(holding.position.cost),
            "quantity": str(holding.quantity),
        }
    if filled is not None:
        message.setdefault(f"position:{filled}", {"currency": currency, "amount": "0", "quantity": "0"})
    return dict(sorted(message.items()))


def _cash_shortfall(
    books: AccountBooks, order: Order, instrument: Instrument, fill: Fill, rates: FxRates, fx_fee_bps: Decimal
) -> str | None:
    """Why a buy fill cannot be paid for (the cash the account's FX policy lets it spend, `buying_power`), or None.

    The pre-trade check reserved enough at the order's price; this catches what it could not
    foresee, such as a market order whose price moved beyond the collar before it filled.
    """
    if order.request.side.value != "buy":
        return None
    quote, base = instrument.quote_currency, books.base_currency
    needed = fill.quantity * fill.price + fill.fee
    try:
        power = buying_power(books, rates, quote, {}, fx_fee_bps=fx_fee_bps)
        needed_base = rates.convert(needed, quote, base) if quote != base else needed
    except MissingFxRate:
        return None  # cannot value the other currencies now; the pre-trade reservation stands
    if needed_base <= power.available:
        return None
    return (
        f"not enough cash for fill {fill.fill_id}: {plain(fill.quantity)} at {plain(fill.price)} plus fee "
        f"{plain(fill.fee)} needs {plain(needed)} {quote} ({plain(needed_base.quantize(Decimal('0.01')))} {base}), "
        f"the account has {plain(power.available.quantize(Decimal('0.01')))} {base} to spend ({power.counted})"
    )
