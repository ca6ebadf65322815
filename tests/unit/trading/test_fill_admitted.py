"""`executions.admits`: a fill the order's stored terms admit (no more than remains, at its limit or better); what the
paper engine matched on terms a replace has changed since is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tradestack.domain.marketdata import Side
from tradestack.domain.matching import Fill, Liquidity
from tradestack.domain.orders import (
    Order,
    OrderAccepted,
    OrderRequest,
    OrderSubmitted,
    OrderType,
    TimeInForce,
)
from tradestack.trading.executions import admits

_TS = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)


def _order(side: Side, kind: OrderType, limit: str | None = None, quantity: str = "10") -> Order:
    request = OrderRequest(
        client_order_id="c-1", account_id="acc-1", symbol="AAPL", side=side, type=kind, quantity=Decimal(quantity),
        limit_price=None if limit is None else Decimal(limit), time_in_force=TimeInForce.GTC if limit else TimeInForce.DAY,
    )  # fmt: skip
    return Order.from_events([OrderSubmitted(order_id="o-1", ts=_TS, request=request), OrderAccepted(order_id="o-1", ts=_TS)])


def _fill(quantity: str, price: str) -> Fill:
    return Fill("o-1", "o-1-1", Decimal(quantity), Decimal(price), Decimal(0), Liquidity.TAKER, _TS)


@pytest.mark.parametrize(
    ("side", "price", "admitted"),
    [
        (Side.BUY, "99.00", True),  # at the limit
        (Side.BUY, "98.99", True),  # better
        (Side.BUY, "99.01", False),  # beyond: matched on a higher limit a replace lowered
        (Side.SELL, "99.00", True),
        (Side.SELL, "99.01", True),
        (Side.SELL, "98.99", False),
    ],
)
def test_a_limit_order_admits_fills_at_its_limit_or_better(side: Side, price: str, admitted: bool) -> None:
    assert admits(_order(side, OrderType.LIMIT, "99.00"), _fill("1", price)) is admitted


def test_no_fill_of_more_than_remains_and_any_price_for_a_market_order() -> None:
    order = _order(Side.BUY, OrderType.LIMIT, "99.00", quantity="6")
    assert admits(order, _fill("6", "99.00"))
    assert not admits(order, _fill("7", "99.00"))  # matched on a larger quantity a replace lowered
    market = _order(Side.BUY, OrderType.MARKET)
    assert admits(market, _fill("10", "1000000"))
    assert not admits(market, _fill("11", "1"))
