"""One market-hours rule: order checks, matching and open_now ask the same calendar."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tradestack.domain.instruments import CRYPTO, FX, NASDAQ, instrument
from tradestack.domain.marketdata import Quote, Side
from tradestack.domain.matching import FeeModel, Fill, LatencyModel, MatchingEngine, SlippageModel, WorkingOrder
from tradestack.domain.orders import OrderRequest, OrderType, TimeInForce

SATURDAY = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)  # NASDAQ and FX closed, crypto open
MONDAY_OPEN = datetime(2026, 12, 7, 14, 30, tzinfo=UTC)  # 09:30 New York
MONDAY_NIGHT = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)


def request(order_type: OrderType, tif: TimeInForce, limit: str | None = None, symbol: str = "AAPL") -> OrderRequest:
    return OrderRequest(
        client_order_id="c",
        account_id="a",
        symbol=symbol,
        side=Side.BUY,
        type=order_type,
        quantity=Decimal(1),
        limit_price=None if limit is None else Decimal(limit),
        time_in_force=tif,
    )


@pytest.mark.parametrize(
    ("order_type", "tif", "limit", "refused"),
    [
        (OrderType.LIMIT, TimeInForce.DAY, "100", False),
        (OrderType.LIMIT, TimeInForce.GTC, "100", False),
        (OrderType.LIMIT, TimeInForce.IOC, "100", True),
        (OrderType.LIMIT, TimeInForce.FOK, "100", True),
        (OrderType.MARKET, TimeInForce.DAY, None, True),
        (OrderType.MARKET, TimeInForce.IOC, None, True),
    ],
)
def test_while_closed_resting_orders_are_taken_and_the_rest_refused_with_the_next_open(
    order_type: OrderType, tif: TimeInForce, limit: str | None, refused: bool
) -> None:
    problem = request(order_type, tif, limit).session_problem(NASDAQ, SATURDAY)
    assert (problem is not None) == refused
    if problem is not None:
        assert "NASDAQ is closed until 2026-12-07 14:30 UTC" in problem
        # The advice leads to an order that is taken.
        assert "send a limit order with time_in_force day or gtc" in problem
        assert request(OrderType.LIMIT, TimeInForce.DAY, "100").session_problem(NASDAQ, SATURDAY) is None


def test_nothing_is_refused_while_open_and_crypto_never_closes() -> None:
    assert request(OrderType.MARKET, TimeInForce.IOC).session_problem(NASDAQ, MONDAY_OPEN) is None
    assert request(OrderType.MARKET, TimeInForce.IOC, symbol="BTC-USD").session_problem(CRYPTO, SATURDAY) is None


def test_fx_follows_its_weekly_session() -> None:
    assert not FX.is_open(SATURDAY)
    assert FX.is_open(datetime(2026, 12, 7, 3, 0, tzinfo=UTC))  # Sunday 22:00 New York
    assert not FX.is_open(datetime(2026, 12, 11, 22, 30, tzinfo=UTC))  # Friday 17:30 New York


def engine_with_hours() -> MatchingEngine:
    return MatchingEngine(
        instrument("AAPL"),
        FeeModel(Decimal(0)),
        SlippageModel(Decimal(0)),
        LatencyModel(0),
        Decimal(1),
        7,
        hours=NASDAQ,
    )


def working(order_id: str, order_type: OrderType, tif: TimeInForce, limit: str | None, at: datetime) -> WorkingOrder:
    return WorkingOrder(
        order_id=order_id,
        symbol="AAPL",
        side=Side.BUY,
        type=order_type,
        quantity=Decimal(10),
        remaining=Decimal(10),
        limit_price=None if limit is None else Decimal(limit),
        stop_price=None,
        time_in_force=tif,
        triggered=False,
        submitted_at=at,
    )


def aapl_quote(at: datetime) -> Quote:
    return Quote("AAPL", Decimal("150.00"), Decimal("150.02"), Decimal(100), Decimal(100), Decimal("150.01"), Decimal(1), at)


@pytest.mark.parametrize(
    ("order_type", "tif", "limit"),
    [
        (OrderType.LIMIT, TimeInForce.GTC, "160.00"),
        (OrderType.LIMIT, TimeInForce.DAY, "160.00"),
        (OrderType.MARKET, TimeInForce.IOC, None),
    ],
)
def test_a_closed_venue_matches_nothing_whatever_the_type_and_fills_at_the_open(
    order_type: OrderType, tif: TimeInForce, limit: str | None
) -> None:
    engine = engine_with_hours()
    assert engine.on_quote(aapl_quote(SATURDAY)) == []
    assert engine.submit(working("o", order_type, tif, limit, SATURDAY), SATURDAY) == []
    assert engine.on_quote(aapl_quote(MONDAY_NIGHT.replace(hour=21, minute=30))) == []
    fills = [e for e in engine.on_quote(aapl_quote(MONDAY_OPEN)) if isinstance(e, Fill)]
    assert [f.quantity for f in fills] == [Decimal(10)]


def test_a_day_order_taken_while_closed_lives_until_the_end_of_the_next_session() -> None:
    assert NASDAQ.next_close(SATURDAY) == datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
    assert NASDAQ.next_close(MONDAY_OPEN) == datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
    engine = engine_with_hours()
    engine.submit(working("day", OrderType.LIMIT, TimeInForce.DAY, "100.00", SATURDAY), SATURDAY)
    engine.submit(working("gtc", OrderType.LIMIT, TimeInForce.GTC, "100.00", SATURDAY), SATURDAY)
    expired = engine.on_session_close(MONDAY_NIGHT, ["day"])
    assert [e.order_id for e in expired] == ["day"]
    assert [o.order_id for o in engine.working_orders()] == ["gtc"]


# -- fees in minor units (kept here with the other issue-10 domain rules) -------------------------


@pytest.mark.parametrize(
    ("places", "notional", "expected"),
    [
        (2, "20000.5", "20.00"),  # 20.0005 -> 20.00
        (2, "9661.159312", "9.66"),
        (2, "25", "0.02"),  # 0.025 -> 0.02, half-even
        (2, "35", "0.04"),  # 0.035 -> 0.04, half-even
        (0, "123456", "123"),  # JPY
        (8, "1.23456789123", "0.00123457"),
        (None, "20000.5", "20.0005"),  # unrounded when no minor unit is given (backtests)
    ],
)
def test_fees_are_rounded_half_even_to_the_minor_unit(places: int | None, notional: str, expected: str) -> None:
    assert FeeModel(Decimal(10), places=places).fee(Decimal(notional)) == Decimal(expected)


def test_an_orders_fills_pay_whole_cents_that_add_up_to_the_fee_of_the_total() -> None:
    engine = MatchingEngine(
        instrument("AAPL"), FeeModel(Decimal("0.5"), places=2), SlippageModel(Decimal(0)), LatencyModel(0), Decimal("0.3"), 7
    )
    engine.submit(working("o", OrderType.MARKET, TimeInForce.GTC, None, MONDAY_OPEN), MONDAY_OPEN)
    fills: list[Fill] = []
    for step in range(5):
        quote = Quote(
            "AAPL", Decimal("150.00"), Decimal("150.03"), Decimal(10), Decimal(10), Decimal("150.01"), Decimal(1), MONDAY_OPEN
        )
        fills += [e for e in engine.on_quote(quote) if isinstance(e, Fill)]
        assert step < 4 or sum(f.quantity for f in fills) == 10
    assert all(f.fee == f.fee.quantize(Decimal("0.01")) for f in fills)
    total = sum((f.quantity * f.price for f in fills), Decimal(0))
    assert sum(f.fee for f in fills) == FeeModel(Decimal("0.5"), places=2).fee(total)
