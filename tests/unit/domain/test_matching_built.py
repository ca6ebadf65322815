"""What the engine builds without checks equals what the checked constructors and formulas give."""

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradestack.domain.marketdata import Side
from tradestack.domain.matching import FeeModel, WorkingOrder, submitted_working_order
from tradestack.domain.orders import Order, OrderAccepted, OrderRequest, OrderSubmitted, OrderType, TimeInForce

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
PRICES = {
    OrderType.MARKET: (None, None),
    OrderType.LIMIT: (Decimal("101.25"), None),
    OrderType.STOP: (None, Decimal("99.50")),
    OrderType.STOP_LIMIT: (Decimal("99.40"), Decimal("99.50")),
}


@pytest.mark.parametrize("order_type", list(OrderType))
@pytest.mark.parametrize("side", list(Side))
def test_a_submitted_orders_working_order_is_the_checked_one(order_type: OrderType, side: Side) -> None:
    limit, stop = PRICES[order_type]
    request = OrderRequest(
        client_order_id="c-1", account_id="a-1", symbol="AAPL", side=side, type=order_type,
        quantity=Decimal(30), limit_price=limit, stop_price=stop, time_in_force=TimeInForce.DAY,
    )  # fmt: skip
    order = Order.from_events((OrderSubmitted(order_id="o-1", ts=T0, request=request),))
    order = order.apply(OrderAccepted(order_id="o-1", ts=T0))
    built = submitted_working_order(order)
    checked = WorkingOrder("o-1", "AAPL", side, order_type, Decimal(30), Decimal(30), limit, stop, TimeInForce.DAY, False, T0)
    assert built == checked
    assert type(built) is WorkingOrder
    assert (built.fills, built.filled_notional, built.fees_paid) == (0, 0, 0)


amounts = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10) ** 12, places=6, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    notional=amounts,
    bps=st.decimals(min_value=0, max_value=1000, places=3),
    minimum=st.decimals(min_value=0, max_value=50, places=2),
    places=st.integers(min_value=0, max_value=8),
)
def test_a_fee_in_places_is_the_quantized_bps_of_the_notional(
    notional: Decimal, bps: Decimal, minimum: Decimal, places: int
) -> None:
    # the formula as stated (a division by 10,000), which `fee` computes as a product with the rate
    stated = max(notional * bps / Decimal(10_000), minimum).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    fee = FeeModel(bps, minimum, places).fee(notional)
    assert fee == stated
    assert str(fee) == str(stated)  # the same digits too
