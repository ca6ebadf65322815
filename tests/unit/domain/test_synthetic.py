import itertools
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tradestack.domain.marketdata import Side, Timeframe
from tradestack.domain.synthetic import OrderBookSimulator, PricePathGenerator, synthetic_bars

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
CENT = Decimal("0.01")


def _walk(seed: int, steps: int = 500, **params: float) -> list[Decimal]:
    generator = PricePathGenerator(start_price=Decimal(100), tick=CENT, seed=seed, **params)  # type: ignore[arg-type]
    return [generator.next() for _ in range(steps)]


# -- price path --------------------------------------------------------------------------------


def test_price_path_is_deterministic_per_seed() -> None:
    assert _walk(1) == _walk(1)


def test_price_path_differs_between_seeds() -> None:
    assert _walk(1) != _walk(2)


def test_prices_are_positive_and_on_tick() -> None:
    prices = _walk(3, steps=2000, volatility=2.0, jump_intensity=2000.0, jump_mean=-0.05, jump_stdev=0.1)
    assert all(p >= CENT and p % CENT == 0 for p in prices)
    assert len(set(prices)) > 100


def test_price_never_drops_below_one_tick() -> None:
    prices = _walk(4, steps=200, drift=-5e6, step_seconds=86400.0)
    assert prices[-1] == CENT
    assert min(prices) == CENT


def test_volume_calls_do_not_change_the_price_path() -> None:
    plain = PricePathGenerator(start_price=Decimal(100), tick=CENT, seed=5)
    with_volume = PricePathGenerator(start_price=Decimal(100), tick=CENT, seed=5)
    for _ in range(100):
        with_volume.volume()
        assert plain.next() == with_volume.next()


def test_volume_is_positive_whole_lots() -> None:
    generator = PricePathGenerator(start_price=Decimal(100), tick=CENT, seed=6, volume_mean=Decimal(50), lot=Decimal(10))
    volumes = [generator.volume() for _ in range(2000)]
    assert all(v >= 10 and v % 10 == 0 for v in volumes)
    mean = sum(volumes, Decimal(0)) / len(volumes)
    assert Decimal(40) < mean < Decimal(60)


def test_jumps_occur_at_the_configured_intensity() -> None:
    intensity = 400.0  # jumps per year
    generator = PricePathGenerator(
        start_price=Decimal(100), tick=CENT, seed=7, step_seconds=3600.0, jump_intensity=intensity, jump_stdev=0.01
    )
    steps = 4 * 8766  # four years of hourly steps
    for _ in range(steps):
        generator.next()
    expected = intensity * 4
    assert abs(generator.jumps - expected) < 5 * math.sqrt(expected)


def test_several_jumps_can_fall_in_one_step() -> None:
    # Two jumps expected per daily step: the count is Poisson, not at most one per step.
    generator = PricePathGenerator(
        start_price=Decimal(100), tick=CENT, seed=10, step_seconds=86400.0, jump_intensity=2 * 365.25, jump_stdev=0.001
    )
    for _ in range(2000):
        generator.next()
    assert abs(generator.jumps - 4000) < 5 * math.sqrt(4000)


def test_no_jumps_without_intensity() -> None:
    generator = PricePathGenerator(start_price=Decimal(100), tick=CENT, seed=8)
    for _ in range(1000):
        generator.next()
    assert generator.jumps == 0


def test_volatility_scales_the_moves() -> None:
    def spread(volatility: float) -> float:
        prices = [float(p) for p in _walk(9, steps=2000, volatility=volatility)]
        returns = [math.log(b / a) for a, b in itertools.pairwise(prices)]
        return math.sqrt(sum(r * r for r in returns) / len(returns))

    step_fraction = math.sqrt(60 / (365.25 * 86400))
    assert spread(0.8) == pytest.approx(0.8 * step_fraction, rel=0.15)
    assert spread(0.2) < spread(0.8) / 2


def test_generator_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError, match="start_price"):
        PricePathGenerator(start_price=Decimal(0), tick=CENT, seed=1)
    with pytest.raises(ValueError, match="volatility"):
        PricePathGenerator(start_price=Decimal(1), tick=CENT, seed=1, volatility=-0.1)


# -- bars --------------------------------------------------------------------------------------


def test_bars_are_ohlc_consistent_and_contiguous() -> None:
    bars = synthetic_bars("SYN", T0, Timeframe.M5, 300, 11, Decimal(250), CENT, volatility=1.0, jump_intensity=500.0)
    assert len(bars) == 300
    for i, bar in enumerate(bars):
        assert bar.ts == T0 + i * timedelta(minutes=5)
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert bar.low >= CENT
        assert all(p % CENT == 0 for p in (bar.open, bar.high, bar.low, bar.close))
        assert bar.volume > 0
        if i:
            assert bar.open == bars[i - 1].close
    assert bars[0].open == Decimal(250)
    assert any(bar.high > max(bar.open, bar.close) for bar in bars)
    assert any(bar.low < min(bar.open, bar.close) for bar in bars)


def test_bars_are_deterministic_per_seed() -> None:
    first = synthetic_bars("SYN", T0, Timeframe.M1, 50, 12, Decimal(100), CENT)
    assert first == synthetic_bars("SYN", T0, Timeframe.M1, 50, 12, Decimal(100), CENT)
    assert first != synthetic_bars("SYN", T0, Timeframe.M1, 50, 13, Decimal(100), CENT)


def test_bars_start_at_the_timeframe_bucket() -> None:
    bars = synthetic_bars("SYN", T0 + timedelta(minutes=7, seconds=3), Timeframe.M5, 2, 1, Decimal(100), CENT)
    assert [b.ts for b in bars] == [T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)]


# -- order book --------------------------------------------------------------------------------


def test_book_is_never_crossed_or_empty_over_10000_steps() -> None:
    simulator = OrderBookSimulator("SYN", Decimal(100), CENT, seed=21, depth=5)
    for i in range(10_000):
        book = simulator.step(T0 + timedelta(milliseconds=100 * i))  # OrderBook refuses unsorted levels
        assert len(book.bids) == len(book.asks) == 5
        assert book.bids[0].price < book.asks[0].price
        assert all(level.size > 0 and level.price % CENT == 0 for level in book.bids + book.asks)
        assert book.bids[-1].price >= CENT
    assert simulator.events["market"] > 0
    assert simulator.events["add"] > simulator.events["market"]


def test_book_refills_a_side_that_a_market_order_empties() -> None:
    simulator = OrderBookSimulator("SYN", Decimal(100), CENT, seed=22, depth=2, max_order_lots=1, max_market_lots=40)
    for i in range(2000):
        simulator.step(T0 + timedelta(seconds=i))
    assert simulator.events["replenish"] > 0


def test_book_survives_near_zero_prices() -> None:
    simulator = OrderBookSimulator("PENNY", Decimal("0.03"), CENT, seed=23, depth=5)
    for i in range(3000):
        book = simulator.step(T0 + timedelta(seconds=i))
        assert book.bids
        assert book.asks
        assert book.bids[-1].price >= CENT


def test_market_orders_move_the_mid_and_print_trades() -> None:
    simulator = OrderBookSimulator("SYN", Decimal(100), CENT, seed=24, depth=5, events_per_step=1)
    moved_by_market = 0
    for i in range(3000):
        before_mid, before_markets = simulator.mid, simulator.events["market"]
        ts = T0 + timedelta(seconds=i)
        simulator.step(ts)
        if simulator.events["market"] == before_markets:
            assert simulator.trades == ()
            continue
        assert simulator.trades
        assert simulator.last_trade == simulator.trades[-1]
        for trade in simulator.trades:
            assert trade.size > 0
            assert trade.ts == ts
            # A buy lifts offers at or above the old mid; a sell hits bids at or below it.
            assert (trade.price > before_mid) if trade.side is Side.BUY else (trade.price < before_mid)
        moved_by_market += simulator.mid != before_mid
    assert moved_by_market > 10


def test_book_simulator_is_deterministic_per_seed() -> None:
    def run(seed: int) -> list[object]:
        simulator = OrderBookSimulator("SYN", Decimal(100), CENT, seed=seed)
        return [simulator.step(T0 + timedelta(seconds=i)) for i in range(300)]

    assert run(31) == run(31)
    assert run(31) != run(32)
