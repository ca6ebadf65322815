"""Gauges about all books, refreshed by the engine: equity per base currency and execution success."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import Float, bindparam, case, cast, func, select

from tradestack.books.service import BooksService
from tradestack.domain.instruments import Instrument
from tradestack.domain.portfolio import MissingFxRate
from tradestack.kit.metrics import PORTFOLIO_VALUE, PORTFOLIO_VALUE_AUD, TRADE_EXECUTION_SUCCESS_RATIO
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import MarketDataService
from tradestack.models.trading import FINISHED_STATUS_VALUES, OrderRow

# The orders that ended since :since, and how many of them got a fill, counted by the database through
# `ix_orders_finished`. A fill's quantity is positive as a float exactly when it is as a decimal (18 places at most, far
# above the smallest positive float): one comparison for both dialects (SQLite keeps the decimal as text).
_ENDED_SINCE = select(
    func.count(), func.coalesce(func.sum(case((cast(OrderRow.filled_quantity, Float) > 0, 1), else_=0)), 0)
).where(
    # the statuses written into the statement, as the index names them: SQLite cannot match a parameter to it
    OrderRow.status.in_(bindparam("ended", list(FINISHED_STATUS_VALUES), expanding=True, literal_execute=True)),
    OrderRow.updated_at >= bindparam("since"),
)


async def update_trading_gauges(runtime: Runtime, instruments: Mapping[str, Instrument] | None) -> None:
    """Set `portfolio_value{currency}`, `portfolio_value_aud` and `trade_execution_success_ratio` (`instruments`: the
    catalogue the caller holds; None reads it)."""
    since = runtime.clock.now() - timedelta(days=1)
    async with runtime.database.read_session() as session:
        every = await BooksService(session, runtime.clock).all_books()
        finished, executed = (await session.execute(_ENDED_SINCE, {"since": since})).one()
    symbols = sorted({symbol for books in every for symbol in books.holdings})
    market = await MarketDataService(runtime).snapshot(symbols, instruments=instruments)
    equity: dict[str, Decimal] = defaultdict(Decimal)
    for books in every:
        base = books.base_currency
        values = [(amount, currency) for currency, amount in books.cash.items()]
        for symbol, holding in books.holdings.items():
            mark = market.mark(symbol)
            values.append((holding.quantity * mark if mark is not None else holding.position.cost, holding.currency))
        for value, currency in values:
            try:
                equity[base] += market.rates.convert(value, currency, base)
            except MissingFxRate:
                continue  # valued once the FX quote is there
    for currency in {books.base_currency for books in every}:
        PORTFOLIO_VALUE.labels(currency=currency).set(float(equity.get(currency, Decimal(0))))
    PORTFOLIO_VALUE_AUD.set(float(equity.get("AUD", Decimal(0))))
    if finished:
        TRADE_EXECUTION_SUCCESS_RATIO.set(executed / finished)
