"""The order state a Redis stream message carries to the engine (`commands.encode_state`) reads back exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from tradestack.domain.marketdata import Side
from tradestack.domain.orders import (
    Liquidity,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderPartiallyFilled,
    OrderRequest,
    OrderStatus,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    TimeInForce,
)
from tradestack.trading.commands import decode_state, encode_state, working_order_of

_TS = datetime(2026, 3, 2, 14, 30, 0, 123456, tzinfo=UTC)


def _order(kind: OrderType, *more: str) -> Order:
    request = OrderRequest(
        client_order_id="c-1", account_id="acc-1", symbol="BTC-USD", side=Side.SELL, type=kind,
        quantity=Decimal("0.0030"), limit_price=Decimal("15000.10") if kind.needs_limit_price else None,
        stop_price=Decimal("14000") if kind.needs_stop_price else None, time_in_force=TimeInForce.GTC,
    )  # fmt: skip
    order = Order.from_events([OrderSubmitted(order_id="o-1", ts=_TS, request=request), OrderAccepted(order_id="o-1", ts=_TS)])
    for step in more:
        if step == "trigger":
            order = order.apply(OrderTriggered(order_id="o-1", ts=_TS))
        elif step == "fill":
            fill = OrderPartiallyFilled(
                order_id="o-1", ts=_TS, fill_id="o-1-1", quantity=Decimal("0.001"), price=Decimal("15000.10"),
                fee=Decimal("0.0150"), fee_currency="USD", liquidity=Liquidity.MAKER,
            )  # fmt: skip
            order = order.apply(fill)
        else:
            order = order.apply(OrderCanceled(order_id="o-1", ts=_TS, reason="by the client"))
    return order


@pytest.mark.parametrize(
    ("kind", "steps"),
    [(OrderType.LIMIT, ()), (OrderType.STOP_LIMIT, ("trigger",)), (OrderType.LIMIT, ("fill",)), (OrderType.MARKET, ())],
)
def test_a_working_orders_state_reads_back_as_the_engines_view_of_it(kind: OrderType, steps: tuple[str, ...]) -> None:
    order = _order(kind, *steps)
    handed = decode_state(encode_state(order))
    assert (handed.version, handed.status) == (order.version, order.status)
    assert handed.working == working_order_of(order)


def test_an_ended_orders_state_carries_its_version_and_status_only() -> None:
    order = _order(OrderType.LIMIT, "cancel")
    handed = decode_state(encode_state(order))
    assert (handed.version, handed.status, handed.working) == (3, OrderStatus.CANCELED, None)


@pytest.mark.parametrize(
    "data",
    [b'{"version": 2}', b'[2, "accepted"]', b'["2", "canceled"]', b'[3, "canceled", "o-1"]', b"[2, 1]"],
    ids=["not a list", "working without terms", "version not a number", "short", "bad status"],
)
def test_a_malformed_state_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"order state|without its terms|not a valid OrderStatus"):
        decode_state(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (4, "up"), (5, "iceberg"), (10, ["gtc"]), (6, 0.003), (7, "NaN"), (8, "15,000.10"), (15, "Infinity"), (14, None),
        (12, "2026-03-02T14:30:00"), (12, 0), (11, 1),
    ],
    ids=[
        "side", "type", "time in force", "a float quantity", "a NaN remaining", "a limit price not a number",
        "infinite fees", "no filled notional", "a naive submission time", "a submission time not text", "triggered not a bool",
    ],
)  # fmt: skip
def test_a_working_state_with_a_malformed_term_is_refused(field: int, value: object) -> None:
    fields = orjson.loads(encode_state(_order(OrderType.LIMIT)))
    fields[field] = value
    with pytest.raises((ValueError, TypeError)):
        decode_state(orjson.dumps(fields))
