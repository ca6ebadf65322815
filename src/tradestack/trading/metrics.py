"""Gauges about all books, refreshed by the engine: equity per base currency and execution success."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from tradestack.domain.instruments import Instrument
from tradestack.domain.portfolio import MissingFxRate
from tradestack.kit.metrics import PORTFOLIO_VALUE, PORTFOLIO_VALUE_AUD, TRADE_EXECUTION_SUCCESS_RATIO
from tradestack.kit.runtime import Runtime
from tradestack.models.identity import TradingAccount
from tradestack.models.trading import BalanceRow, OrderRow
from tradestack.trading.prices import current_prices

_FINISHED = ("filled", "canceled", "expired", "rejected")


async def update_trading_gauges(runtime: Runtime, instruments: Mapping[str, Instrument]) -> None:
    """Set `portfolio_value{currency}`, `portfolio_value_aud` and `trade_execution_success_ratio`."""
    since = runtime.clock.now() - timedelta(days=1)
    async with runtime.database.read_session() as session:
        bases = dict((await session.execute(select(TradingAccount.id, TradingAccount.base_currency))).all())
        balances = (
            await session.execute(
                select(
                    BalanceRow.account_id, BalanceRow.ledger_account, BalanceRow.currency, BalanceRow.amount, BalanceRow.quantity
                )
            )
        ).all()
        finished = (
            await session.execute(
                select(OrderRow.filled_quantity).where(OrderRow.status.in_(_FINISHED), OrderRow.updated_at >= since)
            )
        ).all()
    symbols = {name.removeprefix("position:") for _, name, _, _, _ in balances if name.startswith("position:")}
    prices = await current_prices(runtime, instruments, sorted(symbols))
    equity: dict[str, Decimal] = defaultdict(Decimal)
    for account_id, name, currency, amount, quantity in balances:
        base = bases.get(account_id)
        if base is None:
            continue
        if name.startswith("cash:"):
            value = amount
        elif name.startswith("position:") and quantity:
            mark = prices.mark(name.removeprefix("position:"))
            value = quantity * mark if mark is not None else amount
        else:
            continue
        try:
            equity[base] += prices.rates.convert(value, currency, base)
        except MissingFxRate:
            continue  # valued once the FX quote is there
    for currency in set(bases.values()):
        PORTFOLIO_VALUE.labels(currency=currency).set(float(equity.get(currency, Decimal(0))))
    PORTFOLIO_VALUE_AUD.set(float(equity.get("AUD", Decimal(0))))
    if finished:
        executed = sum(1 for (filled,) in finished if filled > 0)
        TRADE_EXECUTION_SUCCESS_RATIO.set(executed / len(finished))
