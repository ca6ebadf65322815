"""Recording what the matching engine did: fills, triggers and expiries, each in one transaction.

A fill is written as a whole or not at all: the `fills` row, the order's fill event and its
projection, the journal entry with its postings and the balances they move. The fill id is the
primary key of `fills` and the order refuses a fill id it has already applied, so replaying an
execution (after a crash, or by a second engine) can never book it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum

from tradestack.domain.instruments import Instrument
from tradestack.domain.ledger import fill_entry, fx_conversion
from tradestack.domain.matching import Expired, Fill, Triggered
from tradestack.domain.orders import (
    FillEvent,
    Order,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderStatus,
    OrderTriggered,
)
from tradestack.domain.portfolio import FxRates, MissingFxRate
from tradestack.kit.currencies import minor_units
from tradestack.kit.metrics import ORDERS
from tradestack.kit.runtime import Runtime
from tradestack.portfolio.repository import JournalRepository
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
        account = await repo.lock_account(account_id)
        row = await repo.get(event.order_id)
        order = await repo.load(event.order_id)
        if row is None or order is None or order.status.is_terminal:
            return Result(Recorded.GONE)
        journal = JournalRepository(session)
        new_events: list[OrderEvent]
        fill_event: FillEvent | None = None
        if isinstance(event, Fill):
            if event.fill_id in order.fill_ids or await repo.fill_exists(event.fill_id):
                return Result(Recorded.DUPLICATE)
            shortfall = await _cash_shortfall(journal, account_id, order, instrument, event, rates)
            if shortfall is not None:
                new_events = [OrderCanceled(order_id=order.id, ts=event.ts, reason=shortfall)]
            else:
                fill_type = OrderFilled if event.quantity == order.remaining_quantity else OrderPartiallyFilled
                fill_event = fill_type(
                    order_id=order.id,
                    ts=event.ts,
                    fill_id=event.fill_id,
                    quantity=event.quantity,
                    price=event.price,
                    fee=event.fee,
                    fee_currency=instrument.quote_currency,
                    liquidity=event.liquidity,
                )
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
            request = order.request
            await repo.add_fill(account_id, request.symbol, request.side.value, fill_event)
            position = await journal.position(account_id, request.symbol)
            entry = fill_entry(
                f"fill-{fill_event.fill_id}",
                fill_event.ts,
                request.symbol,
                request.side.value,
                fill_event.quantity,
                fill_event.price,
                instrument.quote_currency,
                fill_event.fee,
                fill_event.fee_currency,
                position,
                reference=fill_event.fill_id,
            )
            await journal.add(account_id, entry)
            if account is not None and account.fx_policy == AUTO_CONVERT:
                await _convert_shortfall(runtime, journal, account_id, account.base_currency, instrument, fill_event, rates)
            books = {
                name: {
                    "currency": b.currency,
                    "amount": str(b.amount),
                    **({"quantity": str(b.quantity)} if b.quantity is not None else {}),
                }
                for name, b in (await journal.balances(account_id)).items()
                if name.startswith(("cash:", "position:"))
            }
    if after.status is not order.status and (after.status.is_terminal or after.status is OrderStatus.PARTIALLY_FILLED):
        ORDERS.labels(type=after.request.type.value, status=after.status.value).inc()
    outcome = Recorded.CANCELED if isinstance(new_events[0], OrderCanceled) else Recorded.APPLIED
    return Result(outcome, OrderOut.of_order(after), fill_event, books)


AUTO_CONVERT = "auto_convert"


async def _convert_shortfall(
    runtime: Runtime,
    journal: JournalRepository,
    account_id: str,
    base: str,
    instrument: Instrument,
    fill: FillEvent,
    rates: FxRates,
) -> None:
    """Auto-convert policy: when a buy leaves the quote currency's cash negative, buy what is missing with the
    base currency at the live rate plus the paper FX fee (rounded up to the base's minor unit), as its own
    balanced FX entry next to the fill's. Without a rate the balance stays negative until one arrives."""
    quote = instrument.quote_currency
    if quote == base:
        return
    held = await journal.balances(account_id)
    balance = held[f"cash:{quote}"].amount if f"cash:{quote}" in held else Decimal(0)
    if balance >= 0:
        return
    needed = -balance
    try:
        rate = rates.rate(quote, base)
    except MissingFxRate:
        return
    bps, _ = runtime.settings.paper_fees.get("FX", (Decimal(0), Decimal(0)))
    places = minor_units(base)
    sold = needed * rate * (1 + bps / 10_000)
    if places is not None:
        sold = sold.quantize(Decimal(1).scaleb(-places), rounding=ROUND_CEILING)
    entry = fx_conversion(f"fx-{fill.fill_id}", fill.ts, base, sold, quote, needed, reference=fill.fill_id)
    await journal.add(account_id, entry)


async def _cash_shortfall(
    journal: JournalRepository, account_id: str, order: Order, instrument: Instrument, fill: Fill, rates: FxRates
) -> str | None:
    """Why a buy fill cannot be paid for (cash in all currencies, valued in the quote currency), or None.

    The pre-trade check reserved enough at the order's price; this catches what it could not
    foresee, such as a market order whose price moved beyond the collar before it filled.
    """
    if order.request.side.value != "buy":
        return None
    quote = instrument.quote_currency
    balances = await journal.balances(account_id)
    cash = Decimal(0)
    try:
        for name, row in balances.items():
            if name.startswith("cash:"):
                cash += rates.convert(row.amount, row.currency, quote)
    except MissingFxRate:
        return None  # cannot value the other currencies now; the pre-trade reservation stands
    needed = fill.quantity * fill.price + fill.fee
    if needed <= cash:
        return None
    return (
        f"not enough cash for fill {fill.fill_id}: {fill.quantity} at {fill.price} plus fee {fill.fee} needs "
        f"{needed} {quote}, the account has {cash} {quote}"
    )
