"""Why an order request's terms cannot be taken now: the venue's session, the stop price's side of the market.

Split from `tradestack.domain.orders`, whose `OrderRequest.session_problem` and `stop_problem` call these;
also the wording helpers of its messages.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from tradestack.core.money import plain
from tradestack.domain.instruments import Venue, ceil_to_tick, floor_to_tick
from tradestack.domain.marketdata import Side
from tradestack.domain.order_kinds import OrderType, TimeInForce

if TYPE_CHECKING:
    from tradestack.domain.orders import OrderRequest

_ORDER_TYPE_MARKET = OrderType.MARKET  # module constants: an enum member read off its class costs a hook call
_ORDER_TYPE_STOP = OrderType.STOP
_SIDE_BUY = Side.BUY
_TIME_IN_FORCE_FOK = TimeInForce.FOK
_TIME_IN_FORCE_IOC = TimeInForce.IOC


def nearest_on_step(value: Decimal, step: Decimal) -> str:
    """The valid multiples of `step` on either side of `value`, as text for a message."""
    below, above = floor_to_tick(value, step), ceil_to_tick(value, step)
    return f"{plain(below)} or {plain(above)}" if below > 0 else plain(above)


def order_of_type(order_type: OrderType) -> str:
    """``a stop-limit order``, for messages."""
    return f"a {order_type.value.replace('_', '-')} order"


def session_problem(request: OrderRequest, hours: Venue, now: datetime) -> str | None:
    """Why `request` cannot be taken while `hours` is closed at `now`; None when it can.

    While the venue is closed nothing matches. Limit and stop orders with day or gtc are taken
    and rest until the open (day: until the end of the next session). An ioc or fok order
    needs an open market, and a market order is not queued for the open (its price would be
    whatever the open brings): both are refused, with the next open and an order that is taken.
    """
    if hours.is_open(now):
        return None
    opens = f"{hours.next_open(now):%Y-%m-%d %H:%M} UTC"
    closed = f"{hours.code} is closed until {opens}"
    if request.time_in_force in (_TIME_IN_FORCE_IOC, _TIME_IN_FORCE_FOK):
        return (
            f"{closed}: an {request.time_in_force.value} order needs an open market; send a limit order with "
            f"time_in_force day or gtc to rest until the open, or send this one again after {opens}"
        )
    if request.type is _ORDER_TYPE_MARKET:
        return (
            f"{closed}: market orders are not queued for the open; send a limit order with time_in_force day "
            f"or gtc to rest until the open, or send the market order again after {opens}"
        )
    return None


def stop_problem(request: OrderRequest, market_price: Decimal) -> str | None:
    """Why the stop price of `request` is on the wrong side of `market_price` (it would trigger at once); None when fine.

    A buy stop must be above the market and a sell stop below it: a stop is for when the price
    moves there. We refuse rather than trigger silently, and say what to send instead.
    """
    if request.stop_price is None:
        return None
    buying = request.side is _SIDE_BUY
    if (request.stop_price > market_price) if buying else (request.stop_price < market_price):
        return None
    where, direction = ("at or below", "above") if buying else ("at or above", "below")
    now = "a market or limit order" if request.type is _ORDER_TYPE_STOP else "a limit order"
    return (
        f"stop_price {plain(request.stop_price)} is {where} the market price {plain(market_price)} of {request.symbol}, "
        f"so the {request.side.value} stop would trigger at once: put the stop {direction} {plain(market_price)}, "
        f"or send {now} to {request.side.value} now"
    )
