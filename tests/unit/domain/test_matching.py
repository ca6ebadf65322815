import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradestack.domain.instruments import Instrument, InstrumentKind, instrument
from tradestack.domain.marketdata import Quote, Side, Trade
from tradestack.domain.matching import (
    Expired,
    FeeModel,
    Fill,
    LatencyModel,
    MatchEvent,
    MatchingEngine,
    SlippageModel,
    Triggered,
    WorkingOrder,
)
from tradestack.domain.orders import Liquidity, OrderType, TimeInForce

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
AAPL = instrument("AAPL")
# Coarse tick and lot so that rounding to both is exercised.
TICK = Decimal("0.05")
LOT = Decimal(10)
COARSE = Instrument("TEST", InstrumentKind.EQUITY, "NASDAQ", "Test Corp", "USD", None, TICK, LOT)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def quote(bid: str, ask: str, bid_size: str = "100", ask_size: str = "100", seconds: float = 0, symbol: str = "AAPL") -> Quote:
    return Quote(symbol, Decimal(bid), Decimal(ask), Decimal(bid_size), Decimal(ask_size), Decimal(bid), Decimal(1), at(seconds))


def trade(price: str, size: str = "100", seconds: float = 0, symbol: str = "AAPL") -> Trade:
    return Trade(symbol, Decimal(price), Decimal(size), Side.SELL, at(seconds))


def order(
    order_id: str,
    side: str,
    quantity: str,
    order_type: str = "market",
    limit: str | None = None,
    stop: str | None = None,
    tif: str = "gtc",
    symbol: str = "AAPL",
) -> WorkingOrder:
    return WorkingOrder(
        order_id=order_id,
        symbol=symbol,
        side=Side(side),
        type=OrderType(order_type),
        quantity=Decimal(quantity),
        remaining=Decimal(quantity),
        limit_price=None if limit is None else Decimal(limit),
        stop_price=None if stop is None else Decimal(stop),
        time_in_force=TimeInForce(tif),
        triggered=False,
        submitted_at=T0,
    )


def engine(
    participation: str = "1",
    slippage_bps: str = "0",
    fee: FeeModel | None = None,
    latency: float = 0.0,
    seed: int = 7,
    queue_fill_probability: str = "0.5",
    on: Instrument = AAPL,
) -> MatchingEngine:
    return MatchingEngine(
        on,
        fee or FeeModel(Decimal(0)),
        SlippageModel(Decimal(slippage_bps)),
        LatencyModel(latency),
        Decimal(participation),
        seed,
        queue_fill_probability=Decimal(queue_fill_probability),
    )


def fills(events: list[MatchEvent]) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]


def quantities(events: list[MatchEvent]) -> list[Decimal]:
    return [f.quantity for f in fills(events)]


# -- models --------------------------------------------------------------------------------------


def test_fee_is_bps_of_the_notional_with_a_minimum() -> None:
    model = FeeModel(Decimal(10), Decimal("1.00"))
    assert model.fee(Decimal(20_000)) == Decimal(20)
    assert model.fee(Decimal(500)) == Decimal("1.00")
    assert model.fee(Decimal(0)) == 0


def test_slippage_rounds_to_the_tick_against_the_taker() -> None:
    model = SlippageModel(Decimal("2.5"))
    assert model.price(Side.BUY, Decimal("100.00"), Decimal("0.01")) == Decimal("100.03")  # 100.025 up
    assert model.price(Side.SELL, Decimal("99.99"), Decimal("0.01")) == Decimal("99.96")  # 99.9650025 down


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FeeModel(Decimal(-1)), "fee bps"),
        (lambda: SlippageModel(Decimal(10_000)), "slippage bps"),
        (lambda: LatencyModel(-1.0), "latency"),
        (lambda: engine(participation="0"), "participation_rate"),
        (lambda: engine(participation="1.5"), "participation_rate"),
    ],
)
def test_invalid_model_parameters_are_refused(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


# -- market orders ---------------------------------------------------------------------------------


def test_market_buy_fills_at_the_ask_plus_slippage_rounded_up() -> None:
    paper = engine(slippage_bps="2.5")
    paper.on_quote(quote("99.99", "100.00"))
    events = paper.submit(order("o1", "buy", "10"), at(0))
    assert events == [Fill("o1", "o1-1", Decimal(10), Decimal("100.03"), Decimal(0), Liquidity.TAKER, at(0))]
    assert paper.working_orders() == ()


def test_market_sell_fills_at_the_bid_minus_slippage_rounded_down() -> None:
    paper = engine(slippage_bps="2.5")
    paper.on_quote(quote("99.99", "100.00"))
    (fill,) = fills(paper.submit(order("o1", "sell", "10"), at(0)))
    assert fill.price == Decimal("99.96")


def test_market_order_without_a_quote_waits_for_the_first_one() -> None:
    paper = engine()
    assert paper.submit(order("o1", "buy", "10"), at(0)) == []
    assert [f.price for f in fills(paper.on_quote(quote("50.00", "50.02", seconds=1)))] == [Decimal("50.02")]


def test_participation_cap_spreads_a_market_order_over_several_quotes() -> None:
    paper = engine(participation="0.25")
    paper.on_quote(quote("99.99", "100.00", ask_size="100"))
    first = paper.submit(order("o1", "buy", "60"), at(0))
    second = paper.on_quote(quote("99.99", "100.01", ask_size="100", seconds=1))
    working = paper.working_order("o1")
    third = paper.on_quote(quote("99.99", "100.02", ask_size="40", seconds=2))
    fourth = paper.on_quote(quote("99.99", "100.03", ask_size="100", seconds=3))
    assert quantities(first) == [Decimal(25)]
    assert quantities(second) == [Decimal(25)]
    assert working is not None
    assert working.remaining == Decimal(10)
    assert quantities(third) == [Decimal(10)]  # 25 % of 40, and only 10 left anyway
    assert fourth == []
    assert [f.fill_id for f in fills(first + second + third)] == ["o1-1", "o1-2", "o1-3"]
    assert [f.price for f in fills(first + second + third)] == [Decimal("100.00"), Decimal("100.01"), Decimal("100.02")]
    assert paper.working_order("o1") is None


def test_participation_cap_takes_at_least_one_lot_when_the_touch_has_one() -> None:
    paper = engine(participation="0.1")
    paper.on_quote(quote("99.99", "100.00", ask_size="5"))
    assert quantities(paper.submit(order("o1", "buy", "3"), at(0))) == [Decimal(1)]


def test_fills_are_whole_lots_and_a_touch_smaller_than_a_lot_fills_nothing() -> None:
    paper = engine(participation="0.5", on=COARSE)
    paper.on_quote(quote("10.00", "10.05", ask_size="9", symbol="TEST"))
    assert paper.submit(order("o1", "buy", "50", symbol="TEST"), at(0)) == []
    assert quantities(paper.on_quote(quote("10.00", "10.05", ask_size="45", seconds=1, symbol="TEST"))) == [Decimal(20)]
    assert quantities(paper.on_quote(quote("10.00", "10.05", ask_size="12", seconds=2, symbol="TEST"))) == [Decimal(10)]


def test_orders_share_the_touch_in_submission_order() -> None:
    paper = engine(latency=1.0)
    paper.submit(order("o1", "buy", "80"), at(0))
    paper.submit(order("o2", "buy", "80"), at(0))
    events = paper.on_quote(quote("99.99", "100.00", ask_size="100", seconds=1))
    assert [(f.order_id, f.quantity) for f in fills(events)] == [("o1", Decimal(80)), ("o2", Decimal(20))]


def test_what_is_left_of_a_shared_touch_is_taken_in_whole_lots() -> None:
    paper = engine(latency=1.0, on=COARSE)
    paper.submit(order("o1", "buy", "30", symbol="TEST"), at(0))
    paper.submit(order("o2", "buy", "30", symbol="TEST"), at(0))
    events = paper.on_quote(quote("10.00", "10.05", ask_size="45", seconds=1, symbol="TEST"))
    assert [(f.order_id, f.quantity) for f in fills(events)] == [("o1", Decimal(30)), ("o2", Decimal(10))]


@pytest.mark.parametrize(
    ("on", "quantity", "ask_size", "participation", "written"),
    [
        (AAPL, "5.0", "100", "1", "5"),  # the remainder bounds it, written with more places than the lot
        (AAPL, "5", "100", "1", "5"),
        (AAPL, "1E+2", "500", "1", "1E+2"),
        (AAPL, "300", "250.0", "1", "250"),  # the touch size bounds it
        (AAPL, "300", "1000", "0.5", "300"),
        (COARSE, "1E+2", "500", "1", "1.0E+2"),  # a lot of 10 writes a hundred so
        (COARSE, "40", "35", "1", "30"),
        (COARSE, "30", "100", "1", "30"),
    ],
)
def test_fill_quantity_is_written_in_whole_lots_whatever_bounds_it(
    on: Instrument, quantity: str, ask_size: str, participation: str, written: str
) -> None:
    matching = engine(participation=participation, on=on)
    matching.on_quote(quote("99", "101", ask_size=ask_size, symbol=on.symbol))
    events = matching.submit(order("o1", "buy", quantity, tif="ioc", symbol=on.symbol), T0)
    assert [str(q) for q in quantities(events)] == [written]


def test_each_order_submitted_meets_the_quote_in_force_afresh() -> None:
    """The quote's size is offered whole to every order submitted against it, each at its own time."""
    matching = engine(slippage_bps="10")
    matching.on_quote(quote("99.00", "101.00", ask_size="100", bid_size="100"))
    first = matching.submit(order("o1", "buy", "80", tif="ioc"), at(1))
    second = matching.submit(order("o2", "buy", "80", tif="ioc"), at(2))
    third = matching.submit(order("o3", "sell", "90", tif="ioc"), at(3))
    assert [(f.quantity, f.price, f.ts) for f in fills(first + second + third)] == [
        (Decimal(80), Decimal("101.11"), at(1)),
        (Decimal(80), Decimal("101.11"), at(2)),
        (Decimal(90), Decimal("98.90"), at(3)),
    ]
    assert matching.working_orders() == ()


# -- limit orders ----------------------------------------------------------------------------------


def test_marketable_limit_buy_pays_slippage_only_up_to_its_limit() -> None:
    paper = engine(slippage_bps="50")
    paper.on_quote(quote("99.98", "99.99"))
    (fill,) = fills(paper.submit(order("o1", "buy", "10", "limit", limit="100.00"), at(0)))
    assert fill.price == Decimal("100.00")  # 99.99 + 50 bps = 100.49, capped at the limit
    assert fill.liquidity is Liquidity.TAKER


def test_marketable_limit_sell_gets_slippage_only_down_to_its_limit() -> None:
    paper = engine(slippage_bps="50")
    paper.on_quote(quote("100.01", "100.02"))
    (fill,) = fills(paper.submit(order("o1", "sell", "10", "limit", limit="100.00"), at(0)))
    assert fill.price == Decimal("100.00")


def test_resting_limit_buy_fills_as_maker_at_the_ask_once_it_reaches_the_limit() -> None:
    paper = engine(slippage_bps="50")
    paper.on_quote(quote("100.00", "100.05"))
    assert paper.submit(order("o1", "buy", "10", "limit", limit="100.02"), at(0)) == []
    assert paper.on_quote(quote("100.00", "100.03", seconds=1)) == []
    events = paper.on_quote(quote("99.98", "99.99", seconds=2))
    assert events == [Fill("o1", "o1-1", Decimal(10), Decimal("99.99"), Decimal(0), Liquidity.MAKER, at(2))]


def test_resting_limit_sell_fills_when_the_bid_reaches_the_limit() -> None:
    paper = engine()
    paper.on_quote(quote("100.00", "100.05"))
    paper.submit(order("o1", "sell", "10", "limit", limit="100.10"), at(0))
    assert paper.on_quote(quote("100.09", "100.12", seconds=1)) == []
    (fill,) = fills(paper.on_quote(quote("100.10", "100.12", seconds=2)))
    assert (fill.price, fill.liquidity) == (Decimal("100.10"), Liquidity.MAKER)


def test_print_through_a_resting_limit_fills_it_at_the_print() -> None:
    paper = engine()
    paper.on_quote(quote("99.00", "101.00"))
    paper.submit(order("o1", "buy", "10", "limit", limit="100.00"), at(0))
    (fill,) = fills(paper.on_trade(trade("99.95", seconds=1)))
    assert (fill.price, fill.liquidity) == (Decimal("99.95"), Liquidity.MAKER)


@pytest.mark.parametrize(("probability", "filled"), [("0", False), ("1", True)])
def test_print_at_a_resting_limit_fills_it_only_with_its_queue_probability(probability: str, filled: bool) -> None:
    paper = engine(queue_fill_probability=probability)
    paper.on_quote(quote("99.00", "101.00"))
    paper.submit(order("o1", "buy", "10", "limit", limit="100.00"), at(0))
    events = paper.on_trade(trade("100.00", seconds=1))
    assert bool(fills(events)) is filled


def test_queue_draws_are_the_same_for_the_same_seed_and_differ_between_seeds() -> None:
    def outcomes(seed: int) -> list[bool]:
        paper = engine(seed=seed)
        paper.on_quote(quote("99.00", "101.00"))
        result = []
        for n in range(40):
            paper.submit(order(f"o{n}", "buy", "1", "limit", limit="100.00"), at(n))
            paper.on_quote(quote("99.00", "101.00", seconds=n))
            result.append(bool(fills(paper.on_trade(trade("100.00", size="1000", seconds=n)))))
            paper.cancel(f"o{n}")
        return result

    assert outcomes(1) == outcomes(1)
    assert outcomes(1) != outcomes(2)
    assert 0 < sum(outcomes(1)) < 40


# -- stops -----------------------------------------------------------------------------------------


def test_buy_stop_triggers_when_the_ask_reaches_the_stop_and_fills_as_market() -> None:
    paper = engine(slippage_bps="1")
    paper.on_quote(quote("99.99", "100.00"))
    assert paper.submit(order("o1", "buy", "10", "stop", stop="101.00"), at(0)) == []
    assert paper.on_quote(quote("100.98", "100.99", seconds=1)) == []
    events = paper.on_quote(quote("101.00", "101.02", seconds=2))
    assert events[0] == Triggered("o1", at(2))
    (fill,) = fills(events)
    assert fill.price == Decimal("101.04")  # 101.02 + 1 bp = 101.0301 rounded up


def test_sell_stop_triggers_on_a_print_at_or_below_the_stop() -> None:
    paper = engine()
    paper.on_quote(quote("99.99", "100.00"))
    paper.submit(order("o1", "sell", "10", "stop", stop="99.00"), at(0))
    assert paper.on_trade(trade("99.01", seconds=1)) == []
    events = paper.on_trade(trade("98.90", seconds=2))
    assert [type(e) for e in events] == [Triggered, Fill]
    assert fills(events)[0].price == Decimal("98.90")


def test_a_stop_triggers_when_the_market_is_exactly_at_it() -> None:
    buyer = engine()
    buyer.on_quote(quote("99.99", "100.00"))
    buyer.submit(order("o1", "buy", "10", "stop", stop="101.00"), at(0))
    assert [type(e) for e in buyer.on_quote(quote("100.99", "101.00", seconds=1))] == [Triggered, Fill]
    seller = engine()
    seller.on_quote(quote("99.99", "100.00"))
    seller.submit(order("o1", "sell", "10", "stop", stop="99.00"), at(0))
    assert [type(e) for e in seller.on_trade(trade("99.00", seconds=1))] == [Triggered, Fill]


def test_stop_limit_rests_as_a_limit_after_triggering() -> None:
    paper = engine()
    paper.on_quote(quote("99.99", "100.00"))
    paper.submit(order("o1", "buy", "10", "stop_limit", limit="101.05", stop="101.00"), at(0))
    assert paper.on_quote(quote("101.00", "101.10", seconds=1)) == [Triggered("o1", at(1))]
    working = paper.working_order("o1")
    assert working is not None
    assert working.triggered
    (fill,) = fills(paper.on_quote(quote("101.00", "101.04", seconds=2)))
    assert (fill.price, fill.liquidity) == (Decimal("101.04"), Liquidity.MAKER)


def test_stop_already_reached_at_submission_triggers_at_once() -> None:
    paper = engine()
    paper.on_quote(quote("99.99", "100.00"))
    events = paper.submit(order("o1", "sell", "10", "stop", stop="100.50"), at(0))
    assert [type(e) for e in events] == [Triggered, Fill]


# -- time in force ---------------------------------------------------------------------------------


def test_ioc_fills_what_it_can_and_expires_the_rest() -> None:
    paper = engine(participation="0.5")
    paper.on_quote(quote("99.99", "100.00", ask_size="40"))
    events = paper.submit(order("o1", "buy", "50", tif="ioc"), at(0))
    assert quantities(events) == [Decimal(20)]
    assert events[-1] == Expired("o1", "immediate-or-cancel: 30 of 50 not filled", at(0))
    assert paper.on_quote(quote("99.99", "100.00", seconds=1)) == []


def test_ioc_limit_that_is_not_marketable_expires_unfilled() -> None:
    paper = engine()
    paper.on_quote(quote("99.99", "100.00"))
    events = paper.submit(order("o1", "buy", "10", "limit", limit="99.50", tif="ioc"), at(0))
    assert events == [Expired("o1", "immediate-or-cancel: 10 of 10 not filled", at(0))]


def test_fok_that_cannot_fill_completely_expires_without_a_fill() -> None:
    paper = engine(participation="0.5")
    paper.on_quote(quote("99.99", "100.00", ask_size="100"))
    events = paper.submit(order("o1", "buy", "60", tif="fok"), at(0))
    assert events == [Expired("o1", "fill-or-kill: only 50 of 60 fillable at 100.00", at(0))]
    assert paper.working_orders() == ()


def test_fok_that_can_fill_completely_fills_in_one_go() -> None:
    paper = engine(participation="0.5")
    paper.on_quote(quote("99.99", "100.00", ask_size="100"))
    assert quantities(paper.submit(order("o1", "buy", "50", tif="fok"), at(0))) == [Decimal(50)]


def test_fok_limit_without_a_price_expires() -> None:
    paper = engine()
    paper.on_quote(quote("99.99", "100.00"))
    (expired,) = paper.submit(order("o1", "buy", "10", "limit", limit="99.00", tif="fok"), at(0))
    assert isinstance(expired, Expired)
    assert expired.reason == "fill-or-kill: no buy price within the order's terms"


def test_day_orders_expire_at_the_session_close_and_gtc_orders_stay() -> None:
    paper = engine()
    paper.on_quote(quote("99.99", "100.00"))
    paper.submit(order("day", "buy", "10", "limit", limit="90.00", tif="day"), at(0))
    paper.submit(order("gtc", "buy", "10", "limit", limit="90.00", tif="gtc"), at(0))
    paper.submit(order("stop", "buy", "10", "stop", stop="120.00", tif="day"), at(0))
    events = paper.on_session_close(at(60))
    assert events == [
        Expired("day", "day order expired at the session close", at(60)),
        Expired("stop", "day order expired at the session close", at(60)),
    ]
    assert [o.order_id for o in paper.working_orders()] == ["gtc"]


# -- latency, cancel, fees, validation --------------------------------------------------------------


def test_orders_become_eligible_only_after_the_latency() -> None:
    paper = engine(latency=2.0)
    paper.on_quote(quote("99.99", "100.00"))
    assert paper.submit(order("o1", "buy", "10"), at(0)) == []
    assert paper.on_quote(quote("99.99", "100.01", seconds=1.999)) == []
    (fill,) = fills(paper.on_quote(quote("99.99", "100.02", seconds=2)))
    assert (fill.price, fill.ts) == (Decimal("100.02"), at(2))


def test_canceled_order_no_longer_fills() -> None:
    paper = engine()
    paper.submit(order("o1", "buy", "10"), at(0))
    assert paper.cancel("o1") is True
    assert paper.cancel("o1") is False
    assert paper.on_quote(quote("99.99", "100.00", seconds=1)) == []


def test_fee_minimum_is_paid_once_per_order_across_partial_fills() -> None:
    paper = engine(participation="0.1", fee=FeeModel(Decimal(10), Decimal("1.00")))
    paper.on_quote(quote("9.99", "10.00", ask_size="600"))
    events = paper.submit(order("o1", "buy", "180"), at(0))
    events += paper.on_quote(quote("9.99", "10.00", ask_size="600", seconds=1))
    events += paper.on_quote(quote("9.99", "10.00", ask_size="600", seconds=2))
    # 60 x 10.00 per fill: the first 600 costs the 1.00 minimum (0.60 at 10 bps), then 10 bps
    # of the running total (1.20, 1.80) less what was already charged.
    assert [f.fee for f in fills(events)] == [Decimal("1.00"), Decimal("0.20"), Decimal("0.60")]
    assert sum(f.fee for f in fills(events)) == FeeModel(Decimal(10), Decimal("1.00")).fee(Decimal(1800))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (order("o1", "buy", "10", symbol="MSFT"), "matches AAPL, not MSFT"),
        (order("o1", "buy", "1.5"), "not a multiple of the lot"),
        (order("o1", "buy", "10", "limit", limit="100.001"), "not a multiple of the tick"),
    ],
)
def test_orders_off_the_instrument_rules_are_refused(bad: WorkingOrder, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        engine().submit(bad, at(0))


def test_an_order_id_can_work_only_once() -> None:
    paper = engine()
    paper.submit(order("o1", "buy", "10", "limit", limit="1.00"), at(0))
    with pytest.raises(ValueError, match="already working"):
        paper.submit(order("o1", "buy", "10", "limit", limit="1.00"), at(0))


def test_working_order_needs_exactly_the_prices_of_its_type() -> None:
    with pytest.raises(ValueError, match="needs a limit_price"):
        order("o1", "buy", "10", "limit")
    with pytest.raises(ValueError, match="must not carry a stop_price"):
        order("o1", "buy", "10", "limit", limit="1.00", stop="1.00")


# -- properties ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    steps: list[tuple[str, tuple[int, ...]]]
    slippage_bps: int
    participation: Decimal
    latency: float
    seed: int


_PRICE_TICKS = st.integers(195, 205)  # 9.75 to 10.25 in ticks of 0.05
_quote_step = st.tuples(st.just("quote"), st.tuples(_PRICE_TICKS, st.integers(0, 3), st.integers(0, 150), st.integers(0, 150)))
_trade_step = st.tuples(st.just("trade"), st.tuples(_PRICE_TICKS, st.integers(0, 120)))
_order_step = st.tuples(
    st.just("order"),
    st.tuples(
        st.integers(0, 1),  # side
        st.integers(0, 3),  # type
        st.integers(1, 12),  # lots
        _PRICE_TICKS,  # limit
        _PRICE_TICKS,  # stop
        st.integers(0, 3),  # time in force
    ),
)
_cancel_step = st.tuples(st.just("cancel"), st.tuples(st.integers(0, 30)))
scenarios = st.builds(
    Scenario,
    steps=st.lists(
        st.one_of(_quote_step, _quote_step, _trade_step, _order_step, _order_step, _cancel_step), min_size=5, max_size=60
    ),
    slippage_bps=st.integers(0, 200),
    participation=st.sampled_from([Decimal("0.05"), Decimal("0.3"), Decimal("0.5"), Decimal(1)]),
    latency=st.sampled_from([0.0, 1.0, 2.5]),
    seed=st.integers(0, 2**32),
)
_TYPES = list(OrderType)
_TIFS = list(TimeInForce)
FEES = FeeModel(Decimal(5), Decimal("0.35"))


def play(scenario: Scenario) -> tuple[list[MatchEvent], dict[str, WorkingOrder]]:
    paper = MatchingEngine(
        COARSE,
        FEES,
        SlippageModel(Decimal(scenario.slippage_bps)),
        LatencyModel(scenario.latency),
        scenario.participation,
        scenario.seed,
    )
    events: list[MatchEvent] = []
    submitted: dict[str, WorkingOrder] = {}
    for n, (kind, args) in enumerate(scenario.steps):
        ts = at(n)
        if kind == "quote":
            bid, spread, bid_size, ask_size = args
            events += paper.on_quote(
                Quote("TEST", bid * TICK, (bid + spread) * TICK, Decimal(bid_size), Decimal(ask_size), bid * TICK, Decimal(1), ts)
            )
        elif kind == "trade":
            price, size = args
            events += paper.on_trade(Trade("TEST", price * TICK, Decimal(size), Side.BUY, ts))
        elif kind == "cancel":
            paper.cancel(f"o{args[0]}")
        else:
            side, type_index, lots, limit, stop, tif = args
            order_type = _TYPES[type_index]
            new = WorkingOrder(
                order_id=f"o{n}",
                symbol="TEST",
                side=Side.BUY if side else Side.SELL,
                type=order_type,
                quantity=lots * LOT,
                remaining=lots * LOT,
                limit_price=limit * TICK if order_type.needs_limit_price else None,
                stop_price=stop * TICK if order_type.needs_stop_price else None,
                time_in_force=_TIFS[tif],
                triggered=False,
                submitted_at=ts,
            )
            submitted[new.order_id] = new
            events += paper.submit(new, ts)
    events += paper.on_session_close(at(len(scenario.steps)))
    return events, submitted


@settings(max_examples=300, deadline=None)
@given(scenarios)
def test_fills_respect_limits_quantities_tick_and_lot(scenario: Scenario) -> None:
    events, submitted = play(scenario)
    filled: dict[str, Decimal] = defaultdict(Decimal)
    notional: dict[str, Decimal] = defaultdict(Decimal)
    fees: dict[str, Decimal] = defaultdict(Decimal)
    done: set[str] = set()
    for event in events:
        assert event.order_id in submitted
        assert event.order_id not in done, f"event after the order finished: {event}"
        if isinstance(event, Expired):
            done.add(event.order_id)
            continue
        if not isinstance(event, Fill):
            continue
        placed = submitted[event.order_id]
        assert event.quantity > 0
        assert event.quantity % LOT == 0, event
        assert event.price > 0
        assert event.price % TICK == 0, event
        if placed.limit_price is not None and placed.side is Side.BUY:
            assert event.price <= placed.limit_price, (event, placed)
        if placed.limit_price is not None and placed.side is Side.SELL:
            assert event.price >= placed.limit_price, (event, placed)
        filled[event.order_id] += event.quantity
        notional[event.order_id] += event.notional
        fees[event.order_id] += event.fee
        assert filled[event.order_id] <= placed.quantity
        if filled[event.order_id] == placed.quantity:
            done.add(event.order_id)
    for order_id, total in notional.items():
        assert fees[order_id] == FEES.fee(total)


@settings(max_examples=100, deadline=None)
@given(scenarios)
def test_same_seed_and_inputs_give_identical_events(scenario: Scenario) -> None:
    first, _ = play(scenario)
    second, _ = play(scenario)
    assert first == second


def test_an_order_rebuilt_after_a_restart_continues_its_fill_ids_and_fees() -> None:
    fees = FeeModel(bps=Decimal(10), minimum=Decimal(5))
    first = engine(participation="0.5", fee=fees)
    first.on_quote(quote("100", "101", ask_size="20"))
    [fill] = first.submit(order("o1", "buy", "30"), at(0))
    assert isinstance(fill, Fill)
    assert (fill.fill_id, fill.quantity, fill.fee) == ("o1-1", Decimal(10), Decimal(5))
    saved = first.working_order("o1")
    assert saved is not None
    assert (saved.fills, saved.filled_notional, saved.fees_paid) == (1, Decimal(1010), Decimal(5))

    rebuilt = engine(participation="1", fee=fees)
    rebuilt.on_quote(quote("100", "101", ask_size="100", seconds=1))
    [second] = rebuilt.submit(saved, at(1))
    assert isinstance(second, Fill)
    assert second.fill_id == "o1-2", "a rebuilt order must not reuse a fill id"
    # The minimum was paid once; the fees of both fills add up to fee(total notional).
    assert second.fee == 0
    assert fill.fee + second.fee == fees.fee(Decimal(30) * Decimal(101))


def test_a_working_order_refuses_a_negative_fill_count() -> None:
    with pytest.raises(ValueError, match="fills must not be negative"):
        WorkingOrder(
            order_id="o1",
            symbol="AAPL",
            side=Side.BUY,
            type=OrderType.MARKET,
            quantity=Decimal(1),
            remaining=Decimal(1),
            limit_price=None,
            stop_price=None,
            time_in_force=TimeInForce.DAY,
            triggered=False,
            submitted_at=T0,
            fills=-1,
        )


# -- boundaries and the sell side, rule by rule ----------------------------------------------------

BTC = instrument("BTC-USD")  # lot 0.00001: remainders below one unit


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FeeModel(Decimal(-1)), "fee bps must be a non-negative finite Decimal, got Decimal('-1')"),
        (
            lambda: FeeModel(Decimal(1), Decimal("-0.01")),
            "fee minimum must be a non-negative finite Decimal, got Decimal('-0.01')",
        ),
        (lambda: FeeModel(Decimal(1), places=19), "fee places must be between 0 and 18, got 19"),
        (lambda: FeeModel(Decimal(1), places=-1), "fee places must be between 0 and 18, got -1"),
        (lambda: SlippageModel(Decimal("NaN")), "slippage bps must be a non-negative finite Decimal, got Decimal('NaN')"),
        (lambda: SlippageModel(Decimal(10_000)), "slippage bps must be below 10000, got 10000"),
        (lambda: LatencyModel(-1.0), "latency must be a non-negative finite number of seconds, got -1.0"),
        (lambda: LatencyModel(math.nan), "latency must be a non-negative finite number of seconds, got nan"),
        (lambda: LatencyModel(math.inf), "latency must be a non-negative finite number of seconds, got inf"),
        (lambda: LatencyModel(True), "latency must be a non-negative finite number of seconds, got True"),
        (
            lambda: engine().submit(order("o1", "buy", "10"), datetime(2026, 1, 5, 21, tzinfo=timezone(timedelta(hours=1)))),
            "ts must be a timezone-aware UTC datetime, got datetime.datetime(2026, 1, 5, 21, 0, "
            "tzinfo=datetime.timezone(datetime.timedelta(seconds=3600)))",
        ),
        (lambda: engine(participation="0"), "participation_rate must be a positive finite Decimal, got Decimal('0')"),
        (lambda: engine(participation="1.5"), "participation_rate must be at most 1, got 1.5"),
        (
            lambda: engine(queue_fill_probability="-0.1"),
            "queue_fill_probability must be a non-negative finite Decimal, got Decimal('-0.1')",
        ),
        (lambda: engine(queue_fill_probability="1.1"), "queue_fill_probability must be at most 1, got 1.1"),
        (
            lambda: engine().on_session_close(datetime(2026, 1, 5, 21)),  # noqa: DTZ001
            "ts must be a timezone-aware UTC datetime, got datetime.datetime(2026, 1, 5, 21, 0)",
        ),
        (
            lambda: engine().submit(order("o1", "buy", "10"), datetime(2026, 1, 5, 21)),  # noqa: DTZ001
            "ts must be a timezone-aware UTC datetime, got datetime.datetime(2026, 1, 5, 21, 0)",
        ),
    ],
)
def test_a_refused_parameter_is_named_with_its_value_and_its_bounds(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build()


def test_fee_places_run_from_0_to_18() -> None:
    assert FeeModel(Decimal(10), places=18).fee(Decimal(1)) == Decimal("0.001000000000000000")
    assert FeeModel(Decimal(10), places=0).fee(Decimal(1500)) == Decimal(2)  # 1.5 half-even


def test_sells_take_the_bid_size_and_share_what_is_left_of_it() -> None:
    paper = engine(participation="0.5", latency=1.0)
    paper.submit(order("s1", "sell", "100"), at(0))
    paper.submit(order("s2", "sell", "100"), at(0))
    paper.submit(order("s3", "sell", "100"), at(0))
    # Each may take half the bid's 60 (not of the ask's 1000); the third finds the bid used up.
    events = paper.on_quote(quote("99.99", "100.00", bid_size="60", ask_size="1000", seconds=1))
    assert [(f.order_id, f.quantity) for f in fills(events)] == [("s1", Decimal(30)), ("s2", Decimal(30))]


def test_a_touch_of_exactly_one_lot_gives_that_lot_whatever_the_participation() -> None:
    paper = engine(participation="0.5", on=COARSE)
    paper.on_quote(quote("10.00", "10.05", ask_size="10", symbol="TEST"))
    assert quantities(paper.submit(order("o1", "buy", "30", symbol="TEST"), at(0))) == [Decimal(10)]


def test_an_ioc_filled_completely_does_not_also_expire() -> None:
    paper = engine()
    paper.on_quote(quote("99.99", "100.00"))
    events = paper.submit(order("o1", "buy", "10", tif="ioc"), at(0))
    assert [type(e) for e in events] == [Fill]


def test_an_ioc_expires_a_remainder_below_one_unit() -> None:
    paper = engine(on=BTC)
    paper.on_quote(quote("30000.00", "30000.01", ask_size="1", symbol="BTC-USD"))
    events = paper.submit(order("o1", "buy", "1.5", tif="ioc", symbol="BTC-USD"), at(0))
    assert quantities(events) == [Decimal(1)]
    assert events[-1] == Expired("o1", "immediate-or-cancel: 0.5 of 1.5 not filled", at(0))


def test_a_taker_never_trades_at_a_zero_price_and_does_at_any_positive_one() -> None:
    paper = engine(slippage_bps="100")  # 1 %: a 0.01 bid less 1 % rounds down to 0.00
    paper.on_quote(quote("0.01", "0.02"))
    assert paper.submit(order("o1", "sell", "10"), at(0)) == []
    (fill,) = fills(paper.on_quote(quote("0.50", "0.51", seconds=1)))
    assert (fill.order_id, fill.price) == ("o1", Decimal("0.49"))  # 0.495 down: below 1, still a price


def test_a_limit_that_found_its_price_but_no_size_is_not_resting() -> None:
    # The first ask is within the limit but smaller than a lot: the order found its price, so it
    # does not rest, and its later fill is a taker's, with slippage.
    paper = engine(slippage_bps="100", on=COARSE)
    paper.on_quote(quote("10.00", "10.05", ask_size="5", symbol="TEST"))
    assert paper.submit(order("o1", "buy", "10", "limit", limit="11.00", symbol="TEST"), at(0)) == []
    (fill,) = fills(paper.on_quote(quote("10.00", "10.05", ask_size="100", symbol="TEST", seconds=1)))
    assert (fill.price, fill.liquidity) == (Decimal("10.20"), Liquidity.TAKER)  # 10.05 + 1 % = 10.1505, up


@pytest.mark.parametrize(
    ("side", "limit", "bid", "ask", "price"),
    [
        ("buy", "10.10", "9.00", "10.03", "10.05"),  # a maker buy pays the ask rounded up to the tick
        ("sell", "10.00", "10.07", "11.00", "10.05"),  # a maker sell gets the bid rounded down
    ],
)
def test_a_resting_limit_fills_at_an_off_tick_touch_rounded_against_it(
    side: str, limit: str, bid: str, ask: str, price: str
) -> None:
    paper = engine(on=COARSE)
    paper.on_quote(quote("9.00", "11.00", symbol="TEST"))
    assert paper.submit(order("o1", side, "10", "limit", limit=limit, symbol="TEST"), at(0)) == []
    (fill,) = fills(paper.on_quote(quote(bid, ask, symbol="TEST", seconds=1)))
    assert (fill.price, fill.liquidity) == (Decimal(price), Liquidity.MAKER)


def test_a_stop_does_not_trigger_on_a_quote_without_a_price_on_its_side() -> None:
    paper = engine()
    paper.on_quote(quote("99.99", "100.00"))
    paper.submit(order("o1", "sell", "10", "stop", stop="99.00"), at(0))
    assert paper.on_quote(quote("0", "100.00", bid_size="0", seconds=1)) == []  # no bid at all
    assert [type(e) for e in paper.on_quote(quote("98.99", "99.50", seconds=2))] == [Triggered, Fill]


def test_a_limit_order_fills_below_one_unit_of_price() -> None:
    paper = engine()
    paper.on_quote(quote("0.40", "0.50"))
    (fill,) = fills(paper.submit(order("o1", "buy", "10", "limit", limit="0.60"), at(0)))
    assert fill.price == Decimal("0.50")


def test_a_quote_at_a_resting_limit_fills_it_whatever_the_queue() -> None:
    # Only a print at the limit depends on the queue; a quote whose ask is the limit is a seller there.
    paper = engine(queue_fill_probability="0")
    paper.on_quote(quote("99.00", "101.00"))
    assert paper.submit(order("o1", "buy", "10", "limit", limit="100.00"), at(0)) == []
    (fill,) = fills(paper.on_quote(quote("99.00", "100.00", seconds=1)))
    assert (fill.price, fill.liquidity) == (Decimal("100.00"), Liquidity.MAKER)


def test_a_working_order_rebuilt_from_stored_text_works_with_enum_members() -> None:
    stored = WorkingOrder(
        order_id="o1",
        symbol="AAPL",
        side="sell",  # type: ignore[arg-type]
        type="limit",  # type: ignore[arg-type]
        quantity=Decimal(10),
        remaining=Decimal(10),
        limit_price=Decimal("100.00"),
        stop_price=None,
        time_in_force="ioc",  # type: ignore[arg-type]
        triggered=False,
        submitted_at=T0,
    )
    assert (stored.side, stored.type, stored.time_in_force) == (Side.SELL, OrderType.LIMIT, TimeInForce.IOC)
    assert (type(stored.side), type(stored.type), type(stored.time_in_force)) == (Side, OrderType, TimeInForce)
    paper = engine()
    paper.on_quote(quote("99.00", "99.50"))
    assert paper.submit(stored, at(0)) == [Expired("o1", "immediate-or-cancel: 10 of 10 not filled", at(0))]


def _working(**changes: object) -> WorkingOrder:
    terms: dict[str, object] = {
        "order_id": "o1",
        "symbol": "AAPL",
        "side": Side.BUY,
        "type": OrderType.LIMIT,
        "quantity": Decimal(10),
        "remaining": Decimal(10),
        "limit_price": Decimal("100.00"),
        "stop_price": None,
        "time_in_force": TimeInForce.GTC,
        "triggered": False,
        "submitted_at": T0,
    }
    return WorkingOrder(**(terms | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"order_id": ""}, "order_id must not be empty"),
        ({"quantity": Decimal(0)}, "order o1: quantity must be a positive finite Decimal, got Decimal('0')"),
        ({"remaining": Decimal("-1")}, "order o1: remaining must be a positive finite Decimal, got Decimal('-1')"),
        ({"remaining": Decimal(11)}, "order o1: remaining 11 exceeds quantity 10"),
        ({"limit_price": None}, "order o1: a limit order needs a limit_price"),
        ({"stop_price": Decimal(1)}, "order o1: a limit order must not carry a stop_price"),
        ({"limit_price": Decimal(0)}, "order o1: limit_price must be a positive finite Decimal, got Decimal('0')"),
        (
            {"type": OrderType.STOP, "limit_price": None, "stop_price": Decimal("-5")},
            "order o1: stop_price must be a positive finite Decimal, got Decimal('-5')",
        ),
        (
            {"submitted_at": datetime(2026, 1, 5)},  # noqa: DTZ001
            "order o1: submitted_at must be a timezone-aware UTC datetime, got datetime.datetime(2026, 1, 5, 0, 0)",
        ),
        ({"fills": -1}, "order o1: fills must not be negative, got -1"),
        (
            {"filled_notional": Decimal("-0.01")},
            "order o1: filled_notional must be a non-negative finite Decimal, got Decimal('-0.01')",
        ),
    ],
)
def test_a_working_order_off_its_rules_is_refused_naming_the_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        _working(**changes)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (_working(symbol="MSFT"), "this engine matches AAPL, not MSFT"),
        (_working(quantity=Decimal("10.5"), remaining=Decimal("10.5")), "order o1: quantity 10.5 is not a multiple of the lot 1"),
        (_working(remaining=Decimal("9.5")), "order o1: remaining 9.5 is not a multiple of the lot 1"),
        (_working(limit_price=Decimal("100.001")), "order o1: limit price 100.001 is not a multiple of the tick 0.01"),
        (
            _working(type=OrderType.STOP, limit_price=None, stop_price=Decimal("100.001")),
            "order o1: stop price 100.001 is not a multiple of the tick 0.01",
        ),
    ],
)
def test_the_engine_refuses_an_order_off_its_instrument_naming_why(bad: WorkingOrder, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        engine().submit(bad, at(0))


def test_the_engine_refuses_market_data_of_another_symbol() -> None:
    with pytest.raises(ValueError, match=r"^this engine matches AAPL, not MSFT$"):
        engine().on_trade(trade("1.00", symbol="MSFT"))
    with pytest.raises(ValueError, match=r"^this engine matches AAPL, not MSFT$"):
        engine().on_quote(quote("1.00", "1.01", symbol="MSFT"))


def test_a_stop_rebuilt_after_its_trigger_works_as_its_limit_without_triggering_again() -> None:
    rebuilt = _working(type=OrderType.STOP_LIMIT, limit_price=Decimal("101.05"), stop_price=Decimal("101.00"), triggered=True)
    paper = engine()
    paper.on_quote(quote("100.40", "100.50"))  # below the stop: a stop not yet triggered would wait
    assert paper.submit(rebuilt, at(0)) == [
        Fill("o1", "o1-1", Decimal(10), Decimal("100.50"), Decimal(0), Liquidity.TAKER, at(0))
    ]


def test_fees_round_half_even_whatever_the_callers_decimal_context() -> None:
    model = FeeModel(Decimal(10), places=2)
    with localcontext() as context:
        context.rounding = ROUND_HALF_UP
        assert model.fee(Decimal(125)) == Decimal("0.12")  # 0.125: half-even keeps the even cent
        assert model.fee(Decimal(135)) == Decimal("0.14")
