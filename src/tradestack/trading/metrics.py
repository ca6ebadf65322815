"""Gauges about all books, refreshed by the engine: equity per base currency and execution success."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from tradestack.books.service import BooksService
from tradestack.domain.instruments import Instrument
from tradestack.domain.portfolio import MissingFxRate
from tradestack.kit.metrics import PORTFOLIO_VALUE, PORTFOLIO_VALUE_AUD, TRADE_EXECUTION_SUCCESS_RATIO
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import MarketDataService
from tradestack.models.trading import OrderRow

_FINISHED = ("filled", "canceled", "expired", "rejected")


async def update_trading_gauges(runtime: Runtime, instruments: Mapping[str, Instrument]) -> None:
    """Set `portfolio_value{currency}`, `portfolio_value_aud` and `trade_execution_success_ratio`."""
    since = runtime.clock.now() - timedelta(days=1)
    async with runtime.database.read_session() as session:
        every = await BooksService(session, runtime.clock).all_books()
        finished = (
            await session.execute(
                select(OrderRow.filled_quantity).where(OrderRow.status.in_(_FINISHED), OrderRow.updated_at >= since)
            )
        ).all()
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
        executed = sum(1 for (filled,) in finished if filled > 0)
        TRADE_EXECUTION_SUCCESS_RATIO.set(executed / len(finished))
