import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradestack.domain.marketdata import Bar, Quote, Side
from tradestack.domain.replay import SpreadModel, bar_ticks, book_around, intrabar_path, split_volume

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
CENT = Decimal("0.01")

prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(100_000), places=4)
ticks = st.sampled_from([Decimal("0.01"), Decimal("0.05"), Decimal("0.00001"), Decimal("0.005"), Decimal(1)])
volumes = st.one_of(
    st.decimals(min_value=0, max_value=10**9, places=0),
    st.decimals(min_value=0, max_value=1000, places=8),
)


@st.composite
def bars(draw: st.DrawFn) -> Bar:
    """Consistent bars: low <= open, close <= high, all positive."""
    four = sorted(draw(st.lists(prices, min_size=4, max_size=4)))
    low, high = four[0], four[3]
    open_, close = draw(st.permutations([four[1], four[2]]))
    if draw(st.booleans()):
        open_, close = draw(st.sampled_from([(low, high), (high, low), (low, low), (high, high)]))
    return Bar("TEST", T0, open_, high, low, close, draw(volumes))


def _bar(open_: str, high: str, low: str, close: str, volume: str = "1000") -> Bar:
    return Bar("TEST", T0, Decimal(open_), Decimal(high), Decimal(low), Decimal(close), Decimal(volume))


def _visits_in_order(path: list[Decimal], first: Decimal, then: Decimal) -> bool:
    return path.index(first) < len(path) - 1 - path[::-1].index(then)


# -- intrabar path -----------------------------------------------------------------------------


@given(bar=bars(), steps=st.integers(min_value=4, max_value=60), seed=st.integers(0, 2**32), tick=ticks)
def test_path_hits_the_bar_exactly(bar: Bar, steps: int, seed: int, tick: Decimal) -> None:
    path = intrabar_path(bar, steps, random.Random(seed), tick)
    assert len(path) == steps
    assert path[0] == bar.open
    assert path[-1] == bar.close
    assert max(path) == bar.high
    assert min(path) == bar.low
    if bar.close >= bar.open:
        assert _visits_in_order(path, bar.low, bar.high)
    else:
        assert _visits_in_order(path, bar.high, bar.low)


@given(bar=bars(), steps=st.integers(min_value=4, max_value=60), seed=st.integers(0, 2**32), tick=ticks)
def test_path_interior_is_on_tick_or_an_extreme(bar: Bar, steps: int, seed: int, tick: Decimal) -> None:
    path = intrabar_path(bar, steps, random.Random(seed), tick)
    for price in path[1:-1]:
        assert price % tick == 0 or price in (bar.low, bar.high)


def test_path_keeps_off_tick_anchors_exact() -> None:
    bar = _bar("100.003", "101.5071", "99.1234", "101.2")
    path = intrabar_path(bar, 30, random.Random(1), CENT)
    assert path[0] == Decimal("100.003")
    assert Decimal("99.1234") in path
    assert Decimal("101.5071") in path
    assert all(p % CENT == 0 for p in path[1:-1] if p not in (bar.low, bar.high))


def test_path_is_deterministic_per_seed() -> None:
    bar = _bar("100", "105", "95", "101")
    assert intrabar_path(bar, 50, random.Random(7), CENT) == intrabar_path(bar, 50, random.Random(7), CENT)
    assert intrabar_path(bar, 50, random.Random(7), CENT) != intrabar_path(bar, 50, random.Random(8), CENT)


def test_path_of_a_flat_bar_is_flat() -> None:
    assert intrabar_path(_bar("5", "5", "5", "5"), 6, random.Random(0), CENT) == [Decimal(5)] * 6


def test_path_down_bar_visits_high_first() -> None:
    bar = _bar("100", "103", "96", "97")
    path = intrabar_path(bar, 4, random.Random(3), CENT)
    assert path == [Decimal(100), Decimal(103), Decimal(96), Decimal(97)]


def test_path_refuses_too_few_steps_and_bad_bars() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        intrabar_path(_bar("1", "2", "1", "2"), 3, random.Random(0), CENT)
    with pytest.raises(ValueError, match="inconsistent"):
        intrabar_path(_bar("3", "2", "1", "2"), 10, random.Random(0), CENT)


# -- quotes ------------------------------------------------------------------------------------

spreads = st.builds(
    SpreadModel,
    bps=st.decimals(min_value=0, max_value=100, places=2),
    min_ticks=st.integers(1, 5),
    max_touch_lots=st.integers(1, 20),
)


def _check_quote(quote: Quote, tick: Decimal, spread: SpreadModel) -> None:
    assert quote.bid < quote.ask
    assert quote.bid <= quote.last <= quote.ask
    assert quote.bid % tick == 0
    assert quote.ask % tick == 0
    assert quote.ask - quote.bid >= spread.min_ticks * tick
    assert quote.bid_size > 0
    assert quote.ask_size > 0


@given(price=prices, tick=ticks, spread=spreads, seed=st.integers(0, 2**32))
def test_quote_brackets_the_price_on_tick(price: Decimal, tick: Decimal, spread: SpreadModel, seed: int) -> None:
    quote = spread.quote_around("TEST", price, tick, T0, random.Random(seed), last_size=Decimal(3))
    _check_quote(quote, tick, spread)
    assert quote.last == price
    assert quote.last_size == Decimal(3)


def test_quote_spread_follows_bps() -> None:
    bid, ask = SpreadModel(bps=Decimal(5)).bid_ask(Decimal(100), CENT)  # half-spread 0.05
    assert (bid, ask) == (Decimal("99.95"), Decimal("100.05"))


def test_quote_minimum_spread_in_ticks() -> None:
    bid, ask = SpreadModel(bps=Decimal(0), min_ticks=3).bid_ask(Decimal(100), CENT)
    assert ask - bid == 3 * CENT
    assert bid <= Decimal(100) <= ask


def test_spread_model_refuses_zero_min_ticks() -> None:
    with pytest.raises(ValueError, match="min_ticks"):
        SpreadModel(bps=Decimal(1), min_ticks=0)


# -- bar ticks ---------------------------------------------------------------------------------


@settings(max_examples=60)
@given(bar=bars(), steps=st.integers(min_value=4, max_value=40), seed=st.integers(0, 2**32), tick=ticks, spread=spreads)
def test_bar_ticks_quotes_and_trades(bar: Bar, steps: int, seed: int, tick: Decimal, spread: SpreadModel) -> None:
    pairs = bar_ticks(bar, steps, random.Random(seed), tick, spread, T0, 0.25)
    assert len(pairs) == steps
    assert sum((trade.size for _, trade in pairs), Decimal(0)) == bar.volume
    previous = None
    for i, (quote, trade) in enumerate(pairs):
        _check_quote(quote, tick, spread)
        assert quote.last == trade.price
        assert quote.last_size == trade.size >= 0
        assert quote.ts == trade.ts == T0 + timedelta(seconds=0.25 * i)
        assert quote.source_ts == trade.source_ts == bar.ts
        if previous is not None and trade.price != previous:
            assert trade.side is (Side.BUY if trade.price > previous else Side.SELL)
        previous = trade.price
    assert [t.price for _, t in pairs] == intrabar_path(bar, steps, random.Random(seed), tick)


def test_bar_ticks_sides_follow_the_tick_rule() -> None:
    pairs = bar_ticks(_bar("100", "103", "96", "97"), 4, random.Random(0), CENT, SpreadModel(Decimal(1)), T0, 1.0)
    assert [t.side for _, t in pairs] == [Side.SELL, Side.BUY, Side.SELL, Side.BUY]


@given(volume=volumes, parts=st.integers(1, 50), seed=st.integers(0, 2**32))
def test_split_volume_sums_exactly(volume: Decimal, parts: int, seed: int) -> None:
    pieces = split_volume(volume, parts, random.Random(seed))
    assert len(pieces) == parts
    assert sum(pieces, Decimal(0)) == volume
    assert all(p >= 0 for p in pieces)


def test_split_volume_uses_the_volume_units() -> None:
    pieces = split_volume(Decimal(1500), 7, random.Random(1))
    assert all(p == p.to_integral_value() for p in pieces)
    assert len(set(pieces)) > 1  # not all the same share


def test_split_volume_of_zero_is_all_zero() -> None:
    assert split_volume(Decimal(0), 4, random.Random(1)) == [Decimal(0)] * 4


# -- books -------------------------------------------------------------------------------------


@given(price=prices, tick=ticks, spread=spreads, depth=st.integers(1, 20), seed=st.integers(0, 2**32))
def test_book_around_quote(price: Decimal, tick: Decimal, spread: SpreadModel, depth: int, seed: int) -> None:
    rng = random.Random(seed)
    quote = spread.quote_around("TEST", price, tick, T0, rng)
    book = book_around(quote, depth, tick, rng)  # OrderBook itself refuses unsorted or crossed levels
    assert book.bids[0].price == quote.bid
    assert book.asks[0].price == quote.ask
    assert book.bids[0].size == quote.bid_size
    assert len(book.asks) == depth
    assert 1 <= len(book.bids) <= depth
    assert book.bids[0].price < book.asks[0].price
    for side in (book.bids, book.asks):
        assert all(level.size > 0 for level in side)
        gaps = [abs(a.price - b.price) for a, b in itertools.pairwise(side)]
        assert all(gap >= tick and gap % tick == 0 for gap in gaps)
    assert all(level.price > 0 for level in book.bids[1:])
