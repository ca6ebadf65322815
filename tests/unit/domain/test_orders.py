import dataclasses
import functools
import json
import re
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta, timezone
from decimal import Context, Decimal, localcontext

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tradestack.core.errors import ConflictError
from tradestack.core.money import plain
from tradestack.domain.instruments import instrument
from tradestack.domain.marketdata import Side
from tradestack.domain.matching import Fill
from tradestack.domain.orders import (
    AVERAGE_PRICE_PRECISION,
    EVENT_TYPES,
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
    event_from_dict,
    fill_event,
)

T0 = datetime(2024, 1, 8, 14, 30, tzinfo=UTC)
OID = "O-1"


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def request(
    order_type: OrderType = OrderType.LIMIT,
    quantity: str = "100",
    limit: str | None = "100.05",
    stop: str | None = None,
    tif: TimeInForce = TimeInForce.DAY,
    symbol: str = "AAPL",
) -> OrderRequest:
    return OrderRequest(
        client_order_id="c-1",
        account_id="acc-1",
        symbol=symbol,
        side=Side.BUY,
        type=order_type,
        quantity=Decimal(quantity),
        limit_price=None if limit is None else Decimal(limit),
        stop_price=None if stop is None else Decimal(stop),
        time_in_force=tif,
    )


def submitted(terms: OrderRequest | None = None, seconds: int = 0) -> OrderSubmitted:
    return OrderSubmitted(order_id=OID, ts=at(seconds), request=terms or request())


def partial(fill_id: str, quantity: str, price: str, fee: str = "0.01", seconds: int = 10) -> OrderPartiallyFilled:
    return OrderPartiallyFilled(
        order_id=OID,
        ts=at(seconds),
        fill_id=fill_id,
        quantity=Decimal(quantity),
        price=Decimal(price),
        fee=Decimal(fee),
        fee_currency="USD",
        liquidity=Liquidity.MAKER,
    )


def filled(fill_id: str, quantity: str, price: str, fee: str = "0.01", seconds: int = 20) -> OrderFilled:
    return OrderFilled(
        order_id=OID,
        ts=at(seconds),
        fill_id=fill_id,
        quantity=Decimal(quantity),
        price=Decimal(price),
        fee=Decimal(fee),
        fee_currency="USD",
        liquidity=Liquidity.TAKER,
    )


def accepted_order(terms: OrderRequest | None = None) -> Order:
    return Order.from_events([submitted(terms), OrderAccepted(order_id=OID, ts=at(1))])


# -- examples: lifecycles ------------------------------------------------------------------------


def test_limit_order_partials_then_fill_has_an_exact_average_price() -> None:
    order = Order.from_events(
        [
            submitted(),
            OrderAccepted(order_id=OID, ts=at(1)),
            partial("F-1", "30", "100.01", seconds=2),
            partial("F-2", "30", "100.02", fee="0.02", seconds=3),
            filled("F-3", "40", "100.05", fee="0.03", seconds=4),
        ]
    )
    assert order.status is OrderStatus.FILLED
    assert order.filled_quantity == Decimal(100)
    assert order.remaining_quantity == 0
    assert order.filled_notional == Decimal("10002.90")  # 3000.30 + 3000.60 + 4002.00
    assert order.average_fill_price == Decimal("100.029")
    assert dict(order.fees) == {"USD": Decimal("0.06")}
    assert order.fill_ids == {"F-1", "F-2", "F-3"}
    assert order.version == 5
    assert (order.created_at, order.updated_at) == (at(0), at(4))
    assert order.status.is_terminal
    assert not order.can_cancel
    assert not order.can_replace


def test_average_price_that_does_not_terminate_is_rounded_to_the_documented_precision() -> None:
    order = accepted_order(request(quantity="3")).apply(partial("F-1", "1", "10.00")).apply(filled("F-2", "2", "10.01"))
    assert order.filled_notional == Decimal("30.02")
    assert order.average_fill_price == Decimal("10.00666666666666666666666666666667")
    assert order.average_fill_price == Context(prec=AVERAGE_PRICE_PRECISION).divide(Decimal("30.02"), Decimal(3))


def test_sums_are_exact_whatever_the_callers_decimal_context() -> None:
    terms = request(quantity="3", limit="123456789.123456789")
    fills = [partial("F-1", "1", "123456789.123456789"), filled("F-2", "2", "123456789.123456787")]
    with localcontext(Context(prec=5)):
        order = Order.from_events([submitted(terms), OrderAccepted(order_id=OID, ts=at(1)), *fills])
    assert order.filled_notional == Decimal("370370367.370370363")
    assert order.filled_quantity == Decimal(3)
    assert order.average_fill_price == Decimal("123456789.1234567876666666666666667")  # 34 significant digits


def test_fees_are_summed_per_currency_and_rebates_subtract() -> None:
    crypto = OrderRequest(
        client_order_id="c-1",
        account_id="acc-1",
        symbol="BTC-USD",
        side=Side.SELL,
        type=OrderType.MARKET,
        quantity=Decimal("0.003"),
        time_in_force=TimeInForce.IOC,
    )
    order = accepted_order(crypto)
    order = order.apply(partial("F-1", "0.001", "65000.01", fee="0.05"))
    order = order.apply(
        OrderPartiallyFilled(
            order_id=OID,
            ts=at(11),
            fill_id="F-2",
            quantity=Decimal("0.001"),
            price=Decimal("65000.02"),
            fee=Decimal("0.00000001"),
            fee_currency="BTC",
            liquidity=Liquidity.UNKNOWN,
        )
    )
    order = order.apply(filled("F-3", "0.001", "65000.00", fee="-0.01"))
    assert dict(order.fees) == {"USD": Decimal("0.04"), "BTC": Decimal("0.00000001")}
    assert order.average_fill_price == Decimal("65000.01")


def test_stop_order_triggers_then_fills() -> None:
    terms = request(OrderType.STOP, quantity="10", limit=None, stop="99.50")
    order = accepted_order(terms).apply(OrderTriggered(order_id=OID, ts=at(5)))
    assert order.status is OrderStatus.TRIGGERED
    assert order.can_cancel
    order = order.apply(filled("F-1", "10", "99.48"))
    assert order.status is OrderStatus.FILLED
    assert order.average_fill_price == Decimal("99.48")
    assert order.version == 4


def test_stop_limit_order_fills_from_accepted_when_the_venue_reports_no_trigger() -> None:
    terms = request(OrderType.STOP_LIMIT, quantity="10", limit="99.40", stop="99.50")
    order = accepted_order(terms).apply(filled("F-1", "10", "99.45"))
    assert order.status is OrderStatus.FILLED


def test_trigger_of_a_limit_order_raises() -> None:
    with pytest.raises(InvalidTransition, match=r"is accepted: OrderTriggered is not allowed \(only stop and stop-limit"):
        accepted_order().apply(OrderTriggered(order_id=OID, ts=at(5)))


def test_deny_from_submitted_is_final_and_keeps_the_reason() -> None:
    order = Order.from_events([submitted(), OrderDenied(order_id=OID, ts=at(1), reason="order notional above the limit")])
    assert order.status is OrderStatus.DENIED
    assert order.reason == "order notional above the limit"
    assert order.filled_quantity == 0
    assert order.average_fill_price is None
    assert not order.can_cancel
    with pytest.raises(
        InvalidTransition, match="order O-1 is denied: OrderAccepted is not allowed \\(a denied order is final\\)"
    ):
        order.apply(OrderAccepted(order_id=OID, ts=at(2)))


def test_reject_by_the_venue_after_acceptance_keeps_the_reason() -> None:
    order = accepted_order().apply(OrderRejected(order_id=OID, ts=at(2), reason="venue: price outside band"))
    assert order.status is OrderStatus.REJECTED
    assert order.reason == "venue: price outside band"


def test_cancel_after_a_partial_fill_keeps_the_filled_part() -> None:
    order = accepted_order().apply(partial("F-1", "40", "100.00", fee="0.40"))
    assert order.can_cancel
    order = order.apply(OrderCanceled(order_id=OID, ts=at(30), reason="canceled by user"))
    assert order.status is OrderStatus.CANCELED
    assert order.filled_quantity == Decimal(40)
    assert order.remaining_quantity == Decimal(60)
    assert order.average_fill_price == Decimal("100.00")
    assert dict(order.fees) == {"USD": Decimal("0.40")}
    assert order.reason == "canceled by user"


def test_expire_after_a_partial_fill_keeps_the_filled_part() -> None:
    order = accepted_order().apply(partial("F-1", "40", "100.00")).apply(OrderExpired(order_id=OID, ts=at(60)))
    assert order.status is OrderStatus.EXPIRED
    assert order.filled_quantity == Decimal(40)
    assert order.reason is None


def test_replace_changes_terms_and_version_but_not_the_submitted_terms() -> None:
    original = accepted_order()
    order = original.apply(OrderReplaced(order_id=OID, ts=at(5), new_quantity=Decimal(150), new_limit_price=Decimal("100.10")))
    assert order.status is OrderStatus.ACCEPTED
    assert order.version == original.version + 1
    assert order.request.quantity == Decimal(150)
    assert order.request.limit_price == Decimal("100.10")
    assert order.request.client_order_id == original.request.client_order_id
    assert order.submitted_request == original.request
    assert order.submitted_request.fingerprint() == request().fingerprint()
    assert order.updated_at == at(5)
    assert original.request.quantity == Decimal(100)  # the old Order is untouched


def test_replace_of_a_partially_filled_order_keeps_it_partially_filled() -> None:
    order = accepted_order().apply(partial("F-1", "40", "100.00"))
    order = order.apply(OrderReplaced(order_id=OID, ts=at(12), new_quantity=Decimal(41)))
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert order.remaining_quantity == Decimal(1)
    assert order.apply(filled("F-2", "1", "100.00")).status is OrderStatus.FILLED


@pytest.mark.parametrize("new_quantity", ["40", "39"])
def test_replace_quantity_at_or_below_the_filled_quantity_raises(new_quantity: str) -> None:
    order = accepted_order().apply(partial("F-1", "40", "100.00"))
    with pytest.raises(InvalidTransition, match=f"new quantity {new_quantity} must be above the filled quantity 40"):
        order.apply(OrderReplaced(order_id=OID, ts=at(12), new_quantity=Decimal(new_quantity)))


def test_replace_of_the_stop_price_after_the_trigger_raises() -> None:
    terms = request(OrderType.STOP_LIMIT, quantity="10", limit="99.40", stop="99.50")
    order = accepted_order(terms)
    moved = order.apply(OrderReplaced(order_id=OID, ts=at(3), new_stop_price=Decimal("99.30")))
    assert moved.request.stop_price == Decimal("99.30")
    triggered = moved.apply(OrderTriggered(order_id=OID, ts=at(4)))
    assert triggered.apply(
        OrderReplaced(order_id=OID, ts=at(5), new_limit_price=Decimal("99.20"))
    ).request.limit_price == Decimal("99.20")
    with pytest.raises(InvalidTransition, match="the stop price cannot change once the order has triggered"):
        triggered.apply(OrderReplaced(order_id=OID, ts=at(5), new_stop_price=Decimal("99.10")))


@pytest.mark.parametrize(
    ("terms", "replacement", "message"),
    [
        (
            request(OrderType.MARKET, limit=None),
            OrderReplaced(order_id=OID, ts=T0, new_limit_price=Decimal(1)),
            "a market order has no limit price",
        ),
        (request(), OrderReplaced(order_id=OID, ts=T0, new_stop_price=Decimal(1)), "a limit order has no stop price"),
    ],
)
def test_replace_of_a_price_the_type_lacks_raises(terms: OrderRequest, replacement: OrderReplaced, message: str) -> None:
    with pytest.raises(InvalidTransition, match=message):
        accepted_order(terms).apply(replacement)


# -- examples: refused events --------------------------------------------------------------------


def test_fill_before_acceptance_raises_naming_status_and_event() -> None:
    order = Order.from_events([submitted()])
    with pytest.raises(InvalidTransition) as caught:
        order.apply(filled("F-1", "100", "100.00"))
    assert str(caught.value) == (
        "order O-1 is submitted: OrderFilled is not allowed (allowed: OrderAccepted, OrderDenied, OrderRejected, OrderCanceled)"
    )
    assert caught.value.status is OrderStatus.SUBMITTED
    assert isinstance(caught.value.event, OrderFilled)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ConflictError)
    assert caught.value.status_code == 409


def test_first_event_other_than_submitted_raises() -> None:
    with pytest.raises(
        InvalidTransition, match=r"order O-1 has no events yet: OrderAccepted is not allowed \(allowed: OrderSubmitted\)"
    ):
        Order.from_events([OrderAccepted(order_id=OID, ts=T0)])


def test_no_events_raises() -> None:
    with pytest.raises(ValueError, match="needs at least its OrderSubmitted event"):
        Order.from_events([])


def test_second_submit_raises() -> None:
    with pytest.raises(InvalidTransition, match="is accepted: OrderSubmitted is not allowed"):
        accepted_order().apply(submitted(seconds=5))


def test_event_for_another_order_raises() -> None:
    with pytest.raises(InvalidTransition, match="the event is for order O-2"):
        accepted_order().apply(OrderCanceled(order_id="O-2", ts=at(5), reason="user"))


def test_overfill_raises_and_leaves_the_order_unchanged() -> None:
    order = accepted_order().apply(partial("F-1", "60", "100.00"))
    before = order
    with pytest.raises(InvalidTransition, match="fill F-2 of 50 would fill 110 of 100: overfill"):
        order.apply(filled("F-2", "50", "100.00"))
    assert order == before
    assert order.filled_quantity == Decimal(60)


def test_partial_fill_that_completes_the_order_raises() -> None:
    with pytest.raises(InvalidTransition, match="fill F-1 completes the order; report it as OrderFilled"):
        accepted_order().apply(partial("F-1", "100", "100.00"))


def test_filled_that_leaves_quantity_unfilled_raises() -> None:
    with pytest.raises(InvalidTransition, match="fill F-1 leaves 1 unfilled; report it as OrderPartiallyFilled"):
        accepted_order().apply(filled("F-1", "99", "100.00"))


def test_the_same_fill_id_twice_raises() -> None:
    order = accepted_order().apply(partial("F-1", "10", "100.00"))
    with pytest.raises(InvalidTransition, match="fill F-1 was already applied"):
        order.apply(partial("F-1", "10", "100.00", seconds=11))


@pytest.mark.parametrize(
    "late",
    [
        OrderCanceled(order_id=OID, ts=at(30), reason="user"),
        OrderExpired(order_id=OID, ts=at(30)),
        OrderReplaced(order_id=OID, ts=at(30), new_quantity=Decimal(200)),
        OrderRejected(order_id=OID, ts=at(30), reason="venue"),
    ],
)
def test_any_event_after_filled_raises_as_final(late: OrderEvent) -> None:
    order = accepted_order().apply(filled("F-1", "100", "100.00"))
    with pytest.raises(
        InvalidTransition, match=f"order O-1 is filled: {type(late).__name__} is not allowed \\(a filled order is final\\)"
    ):
        order.apply(late)


def abstract_fill() -> FillEvent:
    return FillEvent(
        order_id=OID, ts=T0, fill_id="F", quantity=Decimal(1), price=Decimal(1), fee=Decimal(0), fee_currency="USD",
        liquidity=Liquidity.MAKER,
    )  # fmt: skip


def float_quantity() -> OrderRequest:
    return OrderRequest(
        client_order_id="c", account_id="a", symbol="AAPL", side=Side.BUY, type=OrderType.MARKET,
        quantity=1.5,  # type: ignore[arg-type]
    )  # fmt: skip


def string_side() -> OrderRequest:
    return OrderRequest(
        client_order_id="c", account_id="a", symbol="AAPL", type=OrderType.MARKET, quantity=Decimal(1),
        side="buy",  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: partial("F-1", "0", "100"), ValueError, "fill quantity must be positive, got 0"),
        (lambda: partial("F-1", "-1", "100"), ValueError, "fill quantity must be positive, got -1"),
        (lambda: partial("F-1", "1", "0"), ValueError, "fill price must be positive, got 0"),
        (lambda: partial("F-1", "1", "NaN"), ValueError, "fill quantity|fill price must be a finite Decimal"),
        (lambda: partial("", "1", "100"), ValueError, "fill_id must not be empty"),
        (lambda: partial("F-1", "1E+41", "100"), ValueError, "out of range"),
        (lambda: OrderAccepted(order_id=OID, ts=datetime(2024, 1, 8)), ValueError, "timezone-aware UTC"),  # noqa: DTZ001
        (lambda: OrderAccepted(order_id=OID, ts=datetime(2024, 1, 8, tzinfo=timezone(timedelta(hours=1)))), ValueError, "UTC"),
        (lambda: OrderAccepted(order_id="", ts=T0), ValueError, "order_id must not be empty"),
        (lambda: OrderDenied(order_id=OID, ts=T0, reason=" "), ValueError, "reason must not be empty"),
        (lambda: OrderReplaced(order_id=OID, ts=T0), ValueError, "a replace must change the quantity"),
        (lambda: OrderReplaced(order_id=OID, ts=T0, new_limit_price=Decimal(-1)), ValueError, "new_limit_price must be positive"),
        (lambda: submitted(request(limit=None)), ValueError, "cannot submit these terms: a limit order needs a limit price"),
        (lambda: submitted(request(quantity="0")), ValueError, "quantity must be positive, got 0"),
        (lambda: OrderEvent(order_id=OID, ts=T0), TypeError, "OrderEvent is abstract"),
        (abstract_fill, TypeError, "FillEvent is abstract"),
        (float_quantity, TypeError, "quantity must be a Decimal, got float 1.5"),
        (string_side, TypeError, r"side must be a member of Side \(buy, sell\), got str 'buy'"),
    ],
)
def test_impossible_events_and_requests_cannot_be_built(build: object, error: type[Exception], message: str) -> None:
    assert callable(build)
    with pytest.raises(error, match=message):
        build()


def test_events_and_orders_are_immutable() -> None:
    order = accepted_order()
    with pytest.raises(FrozenInstanceError):
        order.status = OrderStatus.FILLED  # type: ignore[misc]
    with pytest.raises(TypeError):
        order.fees["USD"] = Decimal(1)  # type: ignore[index]


# -- fill_event: the engine's fills --------------------------------------------------------------


def engine_fill(quantity: object = Decimal(40), price: object = Decimal("100.05"), **changes: object) -> Fill:
    """A fill as `MatchingEngine` makes it for `accepted_order()`, with `changes` made to it."""
    fields = {"fee": Decimal("0.35"), "liquidity": Liquidity.TAKER, "ts": at(5), "fill_id": f"{OID}-1"} | changes
    return Fill(OID, fields["fill_id"], quantity, price, fields["fee"], fields["liquidity"], fields["ts"])  # type: ignore[arg-type]


def count_checks(monkeypatch: pytest.MonkeyPatch) -> list[FillEvent]:
    """The fill events whose check runs from now on, in order."""
    checked: list[FillEvent] = []
    original = FillEvent._check
    monkeypatch.setattr(FillEvent, "_check", lambda self: (checked.append(self), original(self))[1])
    return checked


@pytest.mark.parametrize(("quantity", "kind"), [(Decimal(40), OrderPartiallyFilled), (Decimal(100), OrderFilled)])
def test_fill_event_of_an_engine_fill_is_the_checked_event_without_its_check(
    monkeypatch: pytest.MonkeyPatch, quantity: Decimal, kind: type[FillEvent]
) -> None:
    order = accepted_order()
    checked = count_checks(monkeypatch)
    event = fill_event(order, engine_fill(quantity), "USD")
    assert checked == []  # the engine built its numbers from checked values: the event skips the check
    assert type(event) is kind
    assert event == kind(
        order_id=OID, ts=at(5), fill_id=f"{OID}-1", quantity=quantity, price=Decimal("100.05"),
        fee=Decimal("0.35"), fee_currency="USD", liquidity=Liquidity.TAKER,
    )  # fmt: skip
    assert order.apply(event).filled_quantity == quantity


@pytest.mark.parametrize(
    ("fill", "currency", "error"),
    [
        (engine_fill(Decimal(0)), "USD", "fill quantity must be positive"),
        (engine_fill(Decimal(-5)), "USD", "fill quantity must be positive"),
        (engine_fill(40), "USD", "fill quantity must be a Decimal"),
        (engine_fill(Decimal("Infinity")), "USD", "fill quantity must be a finite"),
        (engine_fill(price=Decimal(0)), "USD", "fill price must be positive"),
        (engine_fill(price=Decimal("NaN")), "USD", "fill price must be a finite"),
        (engine_fill(fee=0.35), "USD", "fee must be a Decimal"),
        (engine_fill(fill_id=" "), "USD", "fill_id"),
        (engine_fill(ts=datetime(2024, 1, 8, 14, 30)), "USD", "ts must be"),  # noqa: DTZ001 - the naive time refused
        (engine_fill(), "usd", "fee_currency must be"),
        (engine_fill(liquidity="maker"), "USD", "liquidity"),
    ],
)
def test_fill_event_checks_a_fill_the_engine_cannot_have_made(fill: Fill, currency: str, error: str) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        fill_event(accepted_order(), fill, currency)


# -- the table and the status helpers ------------------------------------------------------------


def test_only_submitted_starts_an_order_and_terminal_statuses_have_no_transitions() -> None:
    assert [event_type for (status, event_type) in TRANSITIONS if status is None] == [OrderSubmitted]
    sources = {status for (status, _) in TRANSITIONS if status is not None}
    assert sources == {status for status in OrderStatus if status.is_open}
    assert {status for status in OrderStatus if status.is_terminal} == {
        OrderStatus.DENIED,
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.REJECTED,
    }
    assert OrderSubmitted not in {event_type for (status, event_type) in TRANSITIONS if status is not None}


def test_can_cancel_and_can_replace_follow_the_table() -> None:
    order = Order.from_events([submitted()])
    assert order.can_cancel
    assert not order.can_replace
    assert accepted_order().can_replace


# -- validate and fingerprint --------------------------------------------------------------------


def test_valid_requests_have_no_problems() -> None:
    assert request().validate(instrument("AAPL")) == []
    assert request(OrderType.MARKET, limit=None, tif=TimeInForce.IOC).validate(instrument("AAPL")) == []
    eurusd = request(OrderType.STOP_LIMIT, quantity="25000", limit="1.08505", stop="1.08500", symbol="EURUSD")
    assert eurusd.validate(instrument("EURUSD")) == []


@pytest.mark.parametrize(
    ("terms", "symbol", "expected"),
    [
        (request(limit="100.005"), "AAPL", ["limit price 100.005 is not a multiple of the tick size 0.01; use 100 or 100.01"]),
        (request(quantity="1.5"), "AAPL", ["quantity 1.5 is not a multiple of the lot size 1; use 1 or 2"]),
        (request(quantity="0.5"), "AAPL", ["quantity 0.5 is not a multiple of the lot size 1; use 1"]),
        (request(quantity="0"), "AAPL", ["quantity must be positive, got 0"]),
        (request(quantity="-2"), "AAPL", ["quantity must be positive, got -2"]),
        (
            request(OrderType.MARKET, limit=None, tif=TimeInForce.GTC),
            "AAPL",
            ["a market order cannot be good-till-canceled (gtc); use day, ioc or fok"],
        ),
        (request(limit=None), "AAPL", ["a limit order needs a limit price"]),
        (request(OrderType.STOP, limit=None), "AAPL", ["a stop order needs a stop price"]),
        (request(OrderType.MARKET), "AAPL", ["a market order takes no limit price; remove it or change the order type"]),
        (request(stop="99"), "AAPL", ["a limit order takes no stop price; remove it or change the order type"]),
        (
            request(OrderType.STOP_LIMIT, limit="-1", stop="99.001"),
            "AAPL",
            [
                "limit price must be positive, got -1",
                "stop price 99.001 is not a multiple of the tick size 0.01; use 99 or 99.01",
            ],
        ),
        (request(symbol="SPX"), "SPX", ["SPX is not tradable"]),
        (request(), "MSFT", ["the order is for 'AAPL' but the instrument is MSFT"]),
        (
            request(quantity="1E+40", limit="1E+40"),
            "AAPL",
            [
                f"quantity {10**40} has more than 20 integer digits (allowed: up to 20 integer digits and 18 decimal places)",
                f"limit_price {10**40} has more than 14 integer digits (allowed: up to 14 integer digits and 10 decimal places)",
            ],
        ),
    ],
)
def test_validate_explains_each_problem(terms: OrderRequest, symbol: str, expected: list[str]) -> None:
    assert terms.validate(instrument(symbol)) == expected


def test_validate_reports_empty_ids() -> None:
    terms = OrderRequest(
        client_order_id="", account_id=" ", symbol="AAPL", side=Side.SELL, type=OrderType.MARKET, quantity=Decimal(1)
    )
    assert terms.validate(instrument("AAPL")) == ["client_order_id must not be empty", "account_id must not be empty"]


def test_fingerprint_text_is_pinned_byte_for_byte() -> None:
    """Fingerprints are stored with each order and compared when a client order id comes again, across deploys: a
    change of encoder (key order, separators, escaping, how a Decimal is written) would turn a retried order stored
    before it into a 409. This pins the text; change it only with a migration of the stored fingerprints."""
    assert request(quantity="100.000", limit="100.50").fingerprint() == (
        '{"account_id":"acc-1","client_order_id":"c-1","limit_price":"100.5","quantity":"100","side":"buy",'
        '"stop_price":null,"symbol":"AAPL","time_in_force":"day","type":"limit"}'
    )
    stop_limit = OrderRequest(
        client_order_id="c-\u00e9",
        account_id="acc-1",
        symbol="BTC-USD",
        side=Side.SELL,
        type=OrderType.STOP_LIMIT,
        quantity=Decimal("0.0010"),
        limit_price=Decimal("59000"),
        stop_price=Decimal("5.9E+4"),
        time_in_force=TimeInForce.GTC,
    )
    assert stop_limit.fingerprint() == (
        '{"account_id":"acc-1","client_order_id":"c-\\u00e9","limit_price":"59000","quantity":"0.001","side":"sell",'
        '"stop_price":"59000","symbol":"BTC-USD","time_in_force":"gtc","type":"stop_limit"}'
    )


def test_fingerprint_ignores_how_decimals_are_written_and_sees_every_term() -> None:
    assert request(quantity="100", limit="100.50").fingerprint() == request(quantity="100.000", limit="100.5").fingerprint()
    base = request().fingerprint()
    assert request(limit="100.06").fingerprint() != base
    assert request(tif=TimeInForce.GTC).fingerprint() != base
    assert request(quantity="101").fingerprint() != base
    assert OrderRequest.from_dict(json.loads(base)) == request()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "exploded", "order_id": OID, "ts": T0.isoformat()}, "unknown order event kind 'exploded'"),
        ({"order_id": OID, "ts": T0.isoformat()}, "unknown order event kind None"),
        ({"kind": "accepted", "order_id": OID}, "OrderAccepted: missing ts"),
        ({"kind": "accepted", "order_id": OID, "ts": T0.isoformat(), "extra": 1}, "OrderAccepted: unknown extra"),
        ({"kind": "accepted", "order_id": OID, "ts": "yesterday"}, "ts must be an ISO 8601 timestamp"),
        ({"kind": "accepted", "order_id": OID, "ts": "2024-01-08T14:30:00"}, "timezone-aware UTC"),
        ({**partial("F-1", "1", "100").to_dict(), "quantity": 1.5}, "quantity must be a decimal number written as a string"),
        ({**partial("F-1", "1", "100").to_dict(), "liquidity": "both"}, "liquidity must be one of maker, taker, unknown"),
        ({**submitted().to_dict(), "request": "AAPL"}, "request must be an object"),
    ],
)
def test_event_from_dict_refuses_malformed_data(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        event_from_dict(data)


def test_to_dict_writes_decimals_as_strings_and_timestamps_in_iso_8601() -> None:
    assert partial("F-1", "30", "100.010", fee="0.5").to_dict() == {
        "kind": "partially_filled",
        "order_id": OID,
        "ts": "2024-01-08T14:30:10+00:00",
        "fill_id": "F-1",
        "quantity": "30",
        "price": "100.01",
        "fee": "0.5",
        "fee_currency": "USD",
        "liquidity": "maker",
    }


def test_event_types_cover_every_concrete_event() -> None:
    assert set(EVENT_TYPES) == {
        "submitted", "accepted", "denied", "triggered", "partially_filled",
        "filled", "canceled", "expired", "replaced", "rejected",
    }  # fmt: skip
    assert {event_type for (_, event_type) in TRANSITIONS} == set(EVENT_TYPES.values())


# -- properties ----------------------------------------------------------------------------------

order_ids = st.sampled_from([OID, OID, OID, OID, "O-2"])
timestamps = st.integers(0, 86_400).map(at)
quantities = st.sampled_from(["1", "2", "3", "0.5", "2.50", "4"]).map(Decimal)
prices = st.sampled_from(["100", "100.01", "99.5", "100.250", "0.01", "123456.789"]).map(Decimal)
fees = st.sampled_from(["0", "0.01", "-0.002", "1.5"]).map(Decimal)
reasons = st.sampled_from(["risk limit", "canceled by user", "venue: price band"])


@st.composite
def requests(draw: st.DrawFn) -> OrderRequest:
    order_type = draw(st.sampled_from(OrderType))
    return OrderRequest(
        client_order_id=draw(st.sampled_from(["c-1", "c-2"])),
        account_id="acc-1",
        symbol="AAPL",
        side=draw(st.sampled_from(Side)),
        type=order_type,
        quantity=draw(quantities),
        limit_price=draw(prices) if order_type.needs_limit_price else None,
        stop_price=draw(prices) if order_type.needs_stop_price else None,
        time_in_force=draw(st.sampled_from(TimeInForce)),
    )


def fills(
    kind: type[FillEvent], ids: st.SearchStrategy[str] = order_ids, quantity: st.SearchStrategy[Decimal] = quantities
) -> st.SearchStrategy[OrderEvent]:
    return st.builds(
        kind,
        order_id=ids,
        ts=timestamps,
        fill_id=st.integers(1, 40).map(lambda n: f"F-{n}"),
        quantity=quantity,
        price=prices,
        fee=fees,
        fee_currency=st.sampled_from(["USD", "EUR", "USDT"]),
        liquidity=st.sampled_from(Liquidity),
    )


def replaces(ids: st.SearchStrategy[str]) -> st.SearchStrategy[OrderEvent]:
    """Replaces changing at least one term (the one named first is always set)."""
    maybe_price = st.none() | prices
    return st.one_of(
        st.builds(OrderReplaced, order_id=ids, ts=timestamps, new_quantity=quantities, new_limit_price=maybe_price,
                  new_stop_price=maybe_price),
        st.builds(OrderReplaced, order_id=ids, ts=timestamps, new_limit_price=prices, new_stop_price=maybe_price),
        st.builds(OrderReplaced, order_id=ids, ts=timestamps, new_stop_price=prices),
    )  # fmt: skip


def events_by_type(ids: st.SearchStrategy[str]) -> dict[type[OrderEvent], st.SearchStrategy[OrderEvent]]:
    return {
        OrderSubmitted: st.builds(OrderSubmitted, order_id=ids, ts=timestamps, request=requests()),
        OrderAccepted: st.builds(OrderAccepted, order_id=ids, ts=timestamps),
        OrderDenied: st.builds(OrderDenied, order_id=ids, ts=timestamps, reason=reasons),
        OrderTriggered: st.builds(OrderTriggered, order_id=ids, ts=timestamps),
        OrderPartiallyFilled: fills(OrderPartiallyFilled, ids),
        OrderFilled: fills(OrderFilled, ids),
        OrderCanceled: st.builds(OrderCanceled, order_id=ids, ts=timestamps, reason=reasons),
        OrderExpired: st.builds(OrderExpired, order_id=ids, ts=timestamps),
        OrderReplaced: replaces(ids),
        OrderRejected: st.builds(OrderRejected, order_id=ids, ts=timestamps, reason=reasons),
    }


ARBITRARY = events_by_type(order_ids)
FOR_THIS_ORDER = events_by_type(st.just(OID))
any_event: st.SearchStrategy[OrderEvent] = st.one_of(*ARBITRARY.values())


@functools.cache
def next_events(status: OrderStatus | None, remaining: Decimal) -> st.SearchStrategy[st.SearchStrategy[OrderEvent]]:
    """Any event at all, or (more often) one of the types the table allows now, with fills sized to fit."""
    likely: list[st.SearchStrategy[OrderEvent]] = []
    for (source, event_type), target in TRANSITIONS.items():
        if source == status:  # events that keep the order open are proposed more often, to reach deeper
            likely.extend([FOR_THIS_ORDER[event_type]] * (5 if target.is_open else 1))
    if status is not None and remaining > 0:
        likely.extend([fills(OrderFilled, st.just(OID), st.just(remaining))] * 2)
        likely.extend([fills(OrderPartiallyFilled, st.just(OID), st.sampled_from([remaining / 2, remaining / 4]))] * 3)
    return st.sampled_from([*likely, any_event])


def fold(events: list[OrderEvent]) -> tuple[Order | None, list[OrderEvent]]:
    order: Order | None = None
    applied: list[OrderEvent] = []
    for item in events:
        try:
            order = Order.from_events([item]) if order is None else order.apply(item)
        except InvalidTransition:
            continue
        applied.append(item)
    return order, applied


@settings(max_examples=300)
@given(st.data())
def test_any_event_sequence_moves_only_along_the_table(data: st.DataObject) -> None:
    order: Order | None = None
    fill_total, fill_count = Decimal(0), 0
    for _ in range(data.draw(st.integers(5, 30), label="length")):
        options = next_events(None, Decimal(0)) if order is None else next_events(order.status, order.remaining_quantity)
        item = data.draw(data.draw(options, label="kind of event"), label="event")
        if order is not None and isinstance(item, FillEvent) and item.quantity > order.remaining_quantity:
            event("overfill attempt")
        before = order
        previous = None if before is None else before.status
        try:
            order = Order.from_events([item]) if before is None else before.apply(item)
        except InvalidTransition as exc:
            refused: InvalidTransition | None = exc
        else:
            refused = None
        if refused is not None:
            assert (refused.status, refused.event) == (previous, item)
            continue
        assert order is not None
        assert before is None or before.status.is_open, "a terminal order changed"
        assert TRANSITIONS[(previous, type(item))] is order.status
        assert order.version == (0 if before is None else before.version) + 1
        assert order.updated_at == item.ts
        assert item.order_id == order.id
        if isinstance(item, FillEvent):
            fill_total, fill_count = fill_total + item.quantity, fill_count + 1
        assert order.filled_quantity == fill_total
        assert len(order.fill_ids) == fill_count  # no fill counted twice
        assert 0 <= order.filled_quantity <= order.request.quantity
        assert (order.status is OrderStatus.FILLED) == (order.filled_quantity == order.request.quantity)
        if order.status is OrderStatus.PARTIALLY_FILLED:
            assert 0 < order.filled_quantity < order.request.quantity
        if order.status is OrderStatus.TRIGGERED:
            assert order.request.type.needs_stop_price
        event(order.status.value)
        if order.status.is_terminal:
            for event_type, strategy in FOR_THIS_ORDER.items():
                with pytest.raises(InvalidTransition, match="order is final"):
                    order.apply(data.draw(strategy, label=f"late {event_type.__name__}"))
            return


@given(st.lists(any_event, max_size=30))
def test_folding_is_deterministic_and_every_event_round_trips(events: list[OrderEvent]) -> None:
    for item in events:
        data = item.to_dict()
        restored = event_from_dict(json.loads(json.dumps(data)))
        assert restored == item
        assert type(restored) is type(item)
        assert restored.to_dict() == data
    first, applied = fold(events)
    second, applied_again = fold(events)
    assert first == second
    assert applied == applied_again
    if first is not None:
        assert Order.from_events(applied) == first
        assert first.version == len(applied)
        restored_events = [event_from_dict(json.loads(json.dumps(item.to_dict()))) for item in applied]
        assert Order.from_events(restored_events) == first


# -- stop prices against the market --------------------------------------------------------------


def stop_request(side: Side, order_type: OrderType = OrderType.STOP, stop: str = "100.00") -> OrderRequest:
    limit = "100.50" if order_type is OrderType.STOP_LIMIT else None
    return dataclasses.replace(request(order_type, quantity="10", limit=limit, stop=stop), side=side)


@pytest.mark.parametrize(
    ("side", "market", "fine"),
    [
        (Side.BUY, "99.99", True),  # a buy stop waits above the market
        (Side.BUY, "100.00", False),  # exactly at the market it would trigger at once
        (Side.BUY, "100.01", False),
        (Side.SELL, "100.01", True),  # a sell stop waits below it
        (Side.SELL, "100.00", False),
        (Side.SELL, "99.99", False),
    ],
)
def test_a_stop_must_wait_on_the_far_side_of_the_market(side: Side, market: str, fine: bool) -> None:
    assert (stop_request(side).stop_problem(Decimal(market)) is None) is fine


def test_a_stop_that_would_trigger_at_once_says_where_to_put_it_and_what_to_send_instead() -> None:
    assert stop_request(Side.BUY).stop_problem(Decimal("100.20")) == (
        "stop_price 100 is at or below the market price 100.2 of AAPL, so the buy stop would trigger at once: "
        "put the stop above 100.2, or send a market or limit order to buy now"
    )
    assert stop_request(Side.SELL, OrderType.STOP_LIMIT).stop_problem(Decimal("99.80")) == (
        "stop_price 100 is at or above the market price 99.8 of AAPL, so the sell stop would trigger at once: "
        "put the stop below 99.8, or send a limit order to sell now"
    )
    assert request().stop_problem(Decimal("1")) is None  # no stop price: nothing to check


# -- terms: replaced, written, read back ---------------------------------------------------------


def test_a_replace_changes_only_the_terms_it_names() -> None:
    order = accepted_order(request(OrderType.STOP_LIMIT, quantity="10", limit="99.40", stop="99.50"))
    for replacement, expected in (
        (OrderReplaced(order_id=OID, ts=at(2), new_quantity=Decimal(12)), ("12", "99.40", "99.50")),
        (OrderReplaced(order_id=OID, ts=at(2), new_limit_price=Decimal("99.30")), ("10", "99.30", "99.50")),
        (OrderReplaced(order_id=OID, ts=at(2), new_stop_price=Decimal("99.45")), ("10", "99.40", "99.45")),
    ):
        terms = order.apply(replacement).request
        assert (terms.quantity, terms.limit_price, terms.stop_price) == tuple(Decimal(value) for value in expected)


def test_the_fingerprint_is_sorted_compact_json_of_every_term() -> None:
    assert request().fingerprint() == (
        '{"account_id":"acc-1","client_order_id":"c-1","limit_price":"100.05","quantity":"100","side":"buy",'
        '"stop_price":null,"symbol":"AAPL","time_in_force":"day","type":"limit"}'
    )


def _encoded_field_by_field(terms: OrderRequest) -> dict[str, object]:
    """What `OrderRequest.to_dict` must equal: every field, in declaration order, encoded by its value's type."""
    encoded: dict[str, object] = {}
    for field in dataclasses.fields(terms):
        value = getattr(terms, field.name)
        encoded[field.name] = (
            value.value if isinstance(value, Side | OrderType | TimeInForce)
            else plain(value) if isinstance(value, Decimal)
            else value
        )  # fmt: skip
    return encoded


_texts = st.text(min_size=1, max_size=8).filter(lambda text: not text.isspace())


@settings(max_examples=200)
@given(terms=st.builds(
    dataclasses.replace, st.deferred(lambda: requests()), client_order_id=_texts, account_id=_texts, symbol=_texts
))  # fmt: skip
def test_to_dict_and_the_fingerprint_cover_every_field_as_encoded_one_by_one(terms: OrderRequest) -> None:
    # to_dict spells the fields out: a field added to OrderRequest must be added there too, in the same place;
    # the fingerprint is json.dumps of it (sorted keys, compact, non-ASCII escaped) as stored fingerprints were made.
    expected = _encoded_field_by_field(terms)
    assert list(terms.to_dict().items()) == list(expected.items())
    assert terms.fingerprint() == json.dumps(expected, sort_keys=True, separators=(",", ":"))
    submitted_request = OrderSubmitted(order_id=OID, ts=T0, request=terms).to_dict()["request"]
    assert submitted_request == expected


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        (request(OrderType.STOP_LIMIT, limit=None, stop="99"), ["a stop-limit order needs a limit price"]),
        (request(limit="0.505"), ["limit price 0.505 is not a multiple of the tick size 0.01; use 0.5 or 0.51"]),
        (
            request(OrderType.STOP, limit=None, stop="1E+15"),
            [f"stop_price {10**15} has more than 14 integer digits (allowed: up to 14 integer digits and 10 decimal places)"],
        ),
    ],
)
def test_validate_names_the_order_type_and_the_field(terms: OrderRequest, expected: list[str]) -> None:
    assert terms.validate(instrument("AAPL")) == expected


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: OrderReplaced(order_id=OID, ts=T0), "a replace must change the quantity, the limit price or the stop price"),
        (lambda: OrderReplaced(order_id=OID, ts=T0, new_quantity=Decimal(-1)), "new_quantity must be positive, got -1"),
        (lambda: OrderReplaced(order_id=OID, ts=T0, new_stop_price=Decimal(0)), "new_stop_price must be positive, got 0"),
        (
            lambda: event_from_dict({**submitted().to_dict(), "request": {"symbol": "AAPL"}}),
            "OrderRequest: missing account_id, client_order_id, limit_price, quantity, side, stop_price, time_in_force, type",
        ),
    ],
)
def test_a_refused_event_names_the_field_and_the_rule(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "accepted", "order_id": 5, "ts": T0.isoformat()}, "order_id must be a string, got 5"),
        (
            {**OrderReplaced(order_id=OID, ts=T0, new_limit_price=Decimal(1)).to_dict(), "new_limit_price": 1.5},
            "new_limit_price must be a decimal number written as a string, got 1.5",
        ),
    ],
)
def test_malformed_stored_fields_are_named_exactly(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        event_from_dict(data)


def test_a_refused_event_names_the_order_its_status_and_the_rule() -> None:
    stop = accepted_order(request(OrderType.STOP_LIMIT, quantity="10", limit="99.40", stop="99.50"))
    triggered = stop.apply(OrderTriggered(order_id=OID, ts=at(4)))
    with pytest.raises(InvalidTransition) as caught:
        triggered.apply(OrderReplaced(order_id=OID, ts=at(5), new_stop_price=Decimal("99.10")))
    assert str(caught.value) == (
        "order O-1 is triggered: OrderReplaced is not allowed (the stop price cannot change once the order has triggered)"
    )
    assert (caught.value.order_id, caught.value.extra) == (OID, {"order_id": OID})
    with pytest.raises(InvalidTransition) as caught:
        accepted_order().apply(partial("F-1", "60", "100.00")).apply(filled("F-2", "50", "100.00"))
    assert (
        str(caught.value)
        == "order O-1 is partially_filled: OrderFilled is not allowed (fill F-2 of 50 would fill 110 of 100: overfill)"
    )


def test_missing_and_unknown_fields_are_all_listed() -> None:
    with pytest.raises(ValueError, match=r"^OrderAccepted: missing order_id, ts; unknown colour, size$"):
        event_from_dict({"kind": "accepted", "size": 1, "colour": "red"})
    with pytest.raises(ValueError, match=r"^OrderAccepted: unknown colour$"):
        event_from_dict({"kind": "accepted", "order_id": OID, "ts": T0.isoformat(), "colour": "red"})


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: accepted_order().apply(partial("F-1", "10", "100.00")).apply(partial("F-1", "10", "100.00")),
            "order O-1 is partially_filled: OrderPartiallyFilled is not allowed (fill F-1 was already applied)",
        ),
        (
            lambda: accepted_order().apply(OrderReplaced(order_id=OID, ts=at(2), new_stop_price=Decimal(1))),
            "order O-1 is accepted: OrderReplaced is not allowed (a limit order has no stop price)",
        ),
        (
            lambda: (
                accepted_order()
                .apply(partial("F-1", "40", "100.00"))
                .apply(OrderReplaced(order_id=OID, ts=at(12), new_quantity=Decimal(40)))
            ),
            "order O-1 is partially_filled: OrderReplaced is not allowed (new quantity 40 must be above the filled quantity 40)",
        ),
    ],
)
def test_each_refused_change_names_the_event_it_refuses(build: Callable[[], object], message: str) -> None:
    with pytest.raises(InvalidTransition, match=f"^{re.escape(message)}$"):
        build()


def fill_with(**changes: object) -> OrderPartiallyFilled:
    return dataclasses.replace(partial("F-1", "1", "100"), **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"fee": Decimal("NaN")}, ValueError, "fee must be a finite Decimal, got Decimal('NaN')"),
        ({"fee": 0.5}, TypeError, "fee must be a Decimal, got float 0.5"),
        ({"fee_currency": "usd"}, ValueError, "fee_currency must be 2-10 characters A-Z and 0-9 (such as USD), got 'usd'"),
        ({"fee_currency": None}, ValueError, "fee_currency must be 2-10 characters A-Z and 0-9 (such as USD), got None"),
        (
            {"liquidity": "maker"},
            TypeError,
            "liquidity must be a member of Liquidity (maker, taker, unknown), got str 'maker'",
        ),
    ],
)
def test_a_fill_refuses_a_fee_or_liquidity_it_cannot_book(
    changes: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        fill_with(**changes)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: dataclasses.replace(request(), client_order_id=5), TypeError, "client_order_id must be a str, got int 5"),
        (lambda: dataclasses.replace(request(), account_id=None), TypeError, "account_id must be a str, got NoneType None"),
        (lambda: OrderSubmitted(order_id=OID, ts=T0, request="AAPL"), TypeError, "request must be an OrderRequest, got 'AAPL'"),
        (lambda: dataclasses.replace(request(), symbol=5), TypeError, "symbol must be a str, got int 5"),
        (lambda: dataclasses.replace(request(), quantity=None), TypeError, "quantity must be a Decimal, got NoneType None"),
        (lambda: dataclasses.replace(request(), limit_price=1.5), TypeError, "limit_price must be a Decimal, got float 1.5"),
        (
            lambda: dataclasses.replace(request(), stop_price=Decimal("NaN")),
            ValueError,
            "stop_price must be a finite Decimal, got Decimal('NaN')",
        ),
        (
            lambda: dataclasses.replace(request(), quantity=Decimal("1" * 41)),
            ValueError,
            f"quantity {'1' * 41} is out of range: at most 40 digits and an exponent within +/-40",
        ),
        (
            lambda: dataclasses.replace(request(), quantity=Decimal("1E+41")),
            ValueError,
            "quantity 1E+41 is out of range: at most 40 digits and an exponent within +/-40",
        ),
        (
            lambda: OrderAccepted(order_id=OID, ts="2024-01-08T14:30:00+00:00"),
            ValueError,
            "ts must be a timezone-aware UTC datetime, got '2024-01-08T14:30:00+00:00'",
        ),
        (
            lambda: OrderEvent(order_id=OID, ts=T0),
            TypeError,
            "OrderEvent is abstract; build one of accepted, canceled, denied, expired, filled, partially_filled, rejected, "
            "replaced, submitted, triggered",
        ),
        (
            lambda: dataclasses.replace(request(), type="limit"),
            TypeError,
            "type must be a member of OrderType (market, limit, stop, stop_limit), got str 'limit'",
        ),
        (
            lambda: dataclasses.replace(request(), time_in_force="day"),
            TypeError,
            "time_in_force must be a member of TimeInForce (day, gtc, ioc, fok), got str 'day'",
        ),
        (
            lambda: event_from_dict({"kind": ["filled"]}),
            ValueError,
            "unknown order event kind ['filled']; known kinds: submitted, accepted, denied, triggered, partially_filled, "
            "filled, canceled, expired, replaced, rejected",
        ),
        (
            lambda: accepted_order().apply(filled("F-1", "99", "100.00")),
            InvalidTransition,
            "order O-1 is accepted: OrderFilled is not allowed (fill F-1 leaves 1 unfilled; report it as OrderPartiallyFilled)",
        ),
        (
            lambda: submitted(dataclasses.replace(request(quantity="0", limit="0"), symbol=" ")),
            ValueError,
            "order O-1: cannot submit these terms: symbol must not be empty; quantity must be positive, got 0; "
            "limit price must be positive, got 0",
        ),
    ],
)
def test_terms_that_cannot_be_an_order_are_refused_listing_every_problem(
    build: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        build()


def test_decimals_of_up_to_40_digits_and_exponents_within_40_are_held() -> None:
    for quantity in ("1" * 40, "1E+40", "1E-40"):
        assert dataclasses.replace(request(), quantity=Decimal(quantity)).quantity == Decimal(quantity)


@settings(max_examples=2000)
@given(
    st.integers(0, 1),
    st.lists(st.integers(0, 9), min_size=1, max_size=45),
    st.integers(-45, 45),
)
def test_in_range_is_the_digits_and_exponent_rule(sign: int, digits: list[int], exponent: int) -> None:
    from tradestack.domain.fieldchecks import MAX_DECIMAL_DIGITS, in_range

    value = Decimal((sign, tuple(digits), exponent))
    _, held, held_exponent = value.as_tuple()
    assert isinstance(held_exponent, int)
    expected = len(held) <= MAX_DECIMAL_DIGITS and abs(held_exponent) <= MAX_DECIMAL_DIGITS
    assert in_range(value) is expected
