"""Recording what the matching engine did: fills, triggers and expiries, each in one transaction.

A fill is written as a whole or not at all: the `fills` row, the order's fill event and its
projection, the journal entry with its postings and the balances they move. The fill id is the
primary key of `fills` and the order refuses a fill id it has already applied, so replaying an
execution (after a crash, or by a second engine) can never book it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from tradestack.books.service import BooksService
from tradestack.core.money import plain
from tradestack.domain.books import AccountBooks
from tradestack.domain.instruments import Instrument
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
    DUPLICATE = "duplicate"  # this fill is already booked
    CANCELED = "canceled"  # the fill was refused (not enough cash) and the order canceled


@dataclass
class Result:
    outcome: Recorded
    order: OrderOut | None = None
    fill: FillEvent | None = None
    books: dict[str, dict[str, str]] | None = None


async def record(
    runtime: Runtime, account_id: str, instrument: Instrument, event: Fill | Triggered | Expired, rates: FxRates
) -> Result:
    """Write one engine event for an order of `account_id` (see the module docstring)."""
    async with books_session(runtime.database) as session:
        repo = TradingRepository(session)
        ledger = BooksService(session, runtime.clock)
        account = await ledger.lock(account_id)
        row = await repo.get(event.order_id)
        order = await repo.load(event.order_id)
        if row is None or order is None or order.status.is_terminal or account is None:
            return Result(Recorded.GONE)
        new_events: list[OrderEvent]
        fill_event: FillEvent | None = None
        if isinstance(event, Fill):
            if event.fill_id in order.fill_ids or await ledger.fill_booked(event.fill_id):
                return Result(Recorded.DUPLICATE)
            shortfall = _cash_shortfall(
                await ledger.snapshot(account), order, instrument, event, rates, runtime.settings.paper_fx_fee_bps
            )
            if shortfall is not None:
                new_events = [OrderCanceled(order_id=order.id, ts=event.ts, reason=shortfall)]
            else:
                fill_event = fill_event_of(order, event, instrument.quote_currency)
                new_events = [fill_event]
        elif isinstance(event, Triggered):
            if order.status is not OrderStatus.ACCEPTED:
                return Result(Recorded.DUPLICATE)
            new_events = [OrderTriggered(order_id=order.id, ts=event.ts)]
        else:
            new_events = [OrderExpired(order_id=order.id, ts=event.ts)]
        after = order
        for new in new_events:
            after = after.apply(new)
        try:
            await repo.append(row, after, new_events)
        except ConcurrentUpdate:
            return Result(Recorded.GONE)
        books = None
        if fill_event is not None:
            booked = await ledger.book_fill(
                account,
                order.request.symbol,
                order.request.side.value,
                fill_event,
                instrument.quote_currency,
                rates=rates,
                fx_fee_bps=runtime.settings.paper_fx_fee_bps,
                pair=instrument.currency_pair,
            )
            filled = order.request.symbol if instrument.currency_pair is None else None  # a pair moves only cash
            books = balances_message(booked, filled, instrument.quote_currency)
    if after.status is not order.status and (after.status.is_terminal or after.status is OrderStatus.PARTIALLY_FILLED):
        ORDERS.labels(type=after.request.type.value, status=after.status.value).inc()
    outcome = Recorded.CANCELED if isinstance(new_events[0], OrderCanceled) else Recorded.APPLIED
    return Result(outcome, OrderOut.of_order(after), fill_event, books)


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
