"""`Order.apply`'s transitions, one function per event type, against a plain fold of the same rules; and the
one-request memo of `OrderRequest.structural_problems` (what `validate` found sound, `OrderSubmitted` does not
check again) never lets other terms through."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradestack.domain.instruments import instrument
from tradestack.domain.marketdata import Side
from tradestack.domain.orders import (
    TRANSITIONS,
    FillEvent,
    InvalidTransition,
    Liquidity,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderReplaced,
    OrderRequest,
    OrderStatus,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    TimeInForce,
)

T0 = datetime(2024, 1, 8, 14, 30, tzinfo=UTC)


def _request(order_type: OrderType, quantity: int = 10) -> OrderRequest:
    limit = Decimal("100.05") if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
    stop = Decimal("99.00") if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) else None
    return OrderRequest(
        client_order_id="c-1", account_id="a-1", symbol="AAPL", side=Side.BUY, type=order_type,
        quantity=Decimal(quantity), limit_price=limit, stop_price=stop, time_in_force=TimeInForce.DAY,
    )  # fmt: skip


def _reference(order: Order, event: OrderEvent) -> Order:
    """The same rules as a plain fold: the table, then `dataclasses.replace` of what the event changes."""
    status = TRANSITIONS.get((order.status, type(event)))
    if event.order_id != order.id or status is None:
        raise InvalidTransition(order.id, order.status, event, "reference")
    changes: dict[str, object] = {"status": status, "version": order.version + 1, "updated_at": event.ts}
    if isinstance(event, FillEvent):
        filled = order.filled_quantity + event.quantity
        if (
            event.fill_id in order.fill_ids
            or filled > order.request.quantity
            or (isinstance(event, OrderFilled) != (filled == order.request.quantity))
        ):
            raise InvalidTransition(order.id, order.status, event, "reference")
        fees = dict(order.fees)
        fees[event.fee_currency] = fees.get(event.fee_currency, Decimal(0)) + event.fee
        changes |= {
            "filled_quantity": filled,
            "filled_notional": order.filled_notional + event.quantity * event.price,
            "fees": MappingProxyType(fees),
            "fill_ids": order.fill_ids | {event.fill_id},
        }
    elif isinstance(event, OrderTriggered):
        if not order.request.type.needs_stop_price:
            raise InvalidTransition(order.id, order.status, event, "reference")
    elif isinstance(event, OrderReplaced):
        changes["request"] = order._replaced_terms(event)  # its own checks: not what this test is about
    elif isinstance(event, (OrderDenied, OrderCanceled, OrderRejected)):
        changes["reason"] = event.reason
    return dataclasses.replace(order, **changes)  # type: ignore[arg-type]


def _event(draw: st.DrawFn, number: int) -> OrderEvent:
    ts = T0 + timedelta(seconds=number)
    order_id = draw(st.sampled_from(["o-1", "o-1", "o-1", "o-2"]))
    kind = draw(
        st.sampled_from([
            OrderAccepted, OrderDenied, OrderTriggered, OrderPartiallyFilled, OrderFilled, OrderCanceled, OrderExpired,
            OrderReplaced, OrderRejected, OrderSubmitted,
        ])
    )  # fmt: skip
    if kind in (OrderPartiallyFilled, OrderFilled):
        return kind(
            order_id=order_id, ts=ts, fill_id=f"f-{draw(st.integers(0, 4))}", quantity=Decimal(draw(st.integers(1, 6))),
            price=Decimal("100.05"), fee=Decimal(draw(st.sampled_from(["0.35", "-0.10", "1"]))),
            fee_currency=draw(st.sampled_from(["USD", "EUR"])), liquidity=Liquidity.TAKER,
        )  # fmt: skip
    if kind in (OrderDenied, OrderCanceled, OrderRejected):
        return kind(order_id=order_id, ts=ts, reason="because")
    if kind is OrderReplaced:
        return OrderReplaced(order_id=order_id, ts=ts, new_quantity=Decimal(draw(st.integers(1, 20))))
    if kind is OrderSubmitted:
        return OrderSubmitted(order_id=order_id, ts=ts, request=_request(OrderType.LIMIT))
    return kind(order_id=order_id, ts=ts)


@st.composite
def _histories(draw: st.DrawFn) -> tuple[OrderRequest, list[OrderEvent]]:
    order_type = draw(st.sampled_from(list(OrderType)))
    return _request(order_type), [_event(draw, number) for number in range(draw(st.integers(1, 12)))]


@settings(max_examples=400, deadline=None)
@given(_histories())
def test_apply_equals_the_plain_fold_of_the_same_rules(history: tuple[OrderRequest, list[OrderEvent]]) -> None:
    request, events = history
    order = expected = Order.from_events([OrderSubmitted(order_id="o-1", ts=T0, request=request)])
    for event in events:
        try:
            expected = _reference(order, event)
        except InvalidTransition:
            with pytest.raises(InvalidTransition):
                order.apply(event)
            continue
        order = order.apply(event)
        assert order == expected
        assert type(order) is Order
        assert type(order.fees) is MappingProxyType
        assert type(order.fill_ids) is frozenset
    assert Order.from_events([OrderSubmitted(order_id="o-1", ts=T0, request=request), *_applied(request, events)]) == order


def _applied(request: OrderRequest, events: list[OrderEvent]) -> list[OrderEvent]:
    """The events of `events` that applied, in order (the log an order keeps)."""
    order, kept = Order.from_events([OrderSubmitted(order_id="o-1", ts=T0, request=request)]), []
    for event in events:
        try:
            order = order.apply(event)
        except InvalidTransition:
            continue
        kept.append(event)
    return kept


def test_every_kind_of_refusal_still_raises() -> None:
    submitted = Order.from_events([OrderSubmitted(order_id="o-1", ts=T0, request=_request(OrderType.LIMIT))])
    accepted = submitted.apply(OrderAccepted(order_id="o-1", ts=T0))

    def fill(kind: type[FillEvent], fill_id: str, quantity: int) -> FillEvent:
        return kind(
            order_id="o-1", ts=T0, fill_id=fill_id, quantity=Decimal(quantity), price=Decimal(100), fee=Decimal(0),
            fee_currency="USD", liquidity=Liquidity.MAKER,
        )  # fmt: skip

    partly = accepted.apply(fill(OrderPartiallyFilled, "f-1", 4))
    refused = [
        (accepted, OrderAccepted(order_id="o-2", ts=T0), "the event is for order o-2"),
        (accepted, OrderAccepted(order_id="o-1", ts=T0), "allowed:"),
        (submitted, OrderTriggered(order_id="o-1", ts=T0), "allowed:"),
        (accepted, OrderTriggered(order_id="o-1", ts=T0), "only stop and stop-limit orders trigger"),
        (accepted, fill(OrderFilled, "f-1", 4), "leaves 6 unfilled; report it as OrderPartiallyFilled"),
        (accepted, fill(OrderPartiallyFilled, "f-1", 10), "completes the order; report it as OrderFilled"),
        (accepted, fill(OrderFilled, "f-1", 11), "would fill 11 of 10: overfill"),
        (partly, fill(OrderPartiallyFilled, "f-1", 1), "fill f-1 was already applied"),
        (partly, OrderReplaced(order_id="o-1", ts=T0, new_quantity=Decimal(4)), "must be above the filled quantity"),
        (submitted.apply(OrderDenied(order_id="o-1", ts=T0, reason="no")), OrderExpired(order_id="o-1", ts=T0), "final"),
    ]
    for order, event, message in refused:
        with pytest.raises(InvalidTransition, match=message):
            order.apply(event)


def test_a_subclass_folds_into_itself_first() -> None:
    class Mine(Order):
        pass

    first = Mine.from_events([OrderSubmitted(order_id="o-1", ts=T0, request=_request(OrderType.MARKET))])
    assert type(first) is Mine
    assert first == dataclasses.replace(first)
    assert first.status is OrderStatus.SUBMITTED


def test_a_request_found_sound_does_not_vouch_for_other_terms() -> None:
    sound = _request(OrderType.LIMIT)
    assert sound.validate(instrument("AAPL")) == []  # remembered as sound
    assert OrderSubmitted(order_id="o-1", ts=T0, request=sound).request is sound
    unsound = dataclasses.replace(sound, limit_price=None)  # a limit order without its limit price: other terms
    assert unsound == dataclasses.replace(sound, limit_price=None)
    assert unsound.structural_problems() == ["a limit order needs a limit price"]
    with pytest.raises(ValueError, match="cannot submit these terms: a limit order needs a limit price"):
        OrderSubmitted(order_id="o-1", ts=T0, request=unsound)
    assert sound.structural_problems() == []  # asked again after another request: checked in full, same answer
    empty_id = OrderRequest(
        client_order_id=" ", account_id="a-1", symbol="AAPL", side=Side.BUY, type=OrderType.MARKET,
        quantity=Decimal(1), time_in_force=TimeInForce.DAY,
    )  # fmt: skip
    with pytest.raises(ValueError, match="client_order_id must not be empty"):
        OrderSubmitted(order_id="o-1", ts=T0, request=empty_id)
