"""Turn historical bars into live-looking ticks: an intrabar price path, quotes, trades and books.

Everything is deterministic for a given `random.Random` state: the same seed replays the same ticks.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from tradestack.core.money import decimal_places
from tradestack.domain.instruments import ceil_to_tick, floor_to_tick, round_to_tick
from tradestack.domain.marketdata import Bar, BookLevel, OrderBook, Quote, Side, Trade

_BPS = Decimal(10_000)
# Typical size of the wander between two anchors, as a fraction of the bar's range.
_NOISE_SCALE = 0.25


def _check_tick(tick: Decimal) -> None:
    if not isinstance(tick, Decimal) or not tick.is_finite() or tick <= 0:
        raise ValueError(f"tick must be a positive finite Decimal, got {tick!r}")


def _fraction(value: float) -> Decimal:
    """A float in [0, 1] as an exact short Decimal (12 places), so results do not depend on float repr."""
    return Decimal(round(min(max(value, 0.0), 1.0) * 1_000_000_000_000)) / Decimal(1_000_000_000_000)


def _bridge(count: int, rng: random.Random) -> list[float]:
    """`count` interior points of a random walk pinned to 0 at both ends (a Brownian bridge)."""
    walk = [0.0]
    for _ in range(count + 1):
        walk.append(walk[-1] + rng.gauss(0.0, 1.0))
    end = walk[-1]
    steps = count + 1
    return [walk[i] - end * i / steps for i in range(1, count + 1)]


def intrabar_path(bar: Bar, steps: int, rng: random.Random, tick: Decimal) -> list[Decimal]:
    """`steps` prices that a bar's market could plausibly have traded through, in order.

    The path starts at `bar.open`, ends at `bar.close` and touches `bar.low` and `bar.high`: low
    first then high when the bar closed up (close >= open), high first then low otherwise. Between
    these four anchors it wanders as a random walk pinned to them, never leaving [low, high].

    The anchors are returned exactly as the bar has them, even when they are not on `tick`
    (split-adjusted history often is not). Every other price is rounded to `tick`; when no multiple
    of `tick` lies between low and high, the nearer of low and high is used instead. Needs
    `steps >= 4`; raises ValueError for an inconsistent bar.
    """
    if steps < 4:
        raise ValueError(f"a bar path needs at least 4 steps (open, low, high, close), got {steps}")
    _check_tick(tick)
    low, high = bar.low, bar.high
    if not low <= min(bar.open, bar.close) or not max(bar.open, bar.close) <= high:
        raise ValueError(f"{bar.symbol}: inconsistent bar at {bar.ts.isoformat()} (low {low}, high {high})")
    first, second = sorted(rng.sample(range(1, steps - 1), 2))
    extremes = (low, high) if bar.close >= bar.open else (high, low)
    anchors = [(0, bar.open), (first, extremes[0]), (second, extremes[1]), (steps - 1, bar.close)]
    span = high - low
    path: list[Decimal] = []
    for (start_index, start_price), (end_index, end_price) in itertools.pairwise(anchors):
        path.append(start_price)
        interior = end_index - start_index - 1
        if interior <= 0:
            continue
        noise = _bridge(interior, rng)
        step_scale = _NOISE_SCALE / math.sqrt(interior + 1)
        for k in range(1, interior + 1):
            straight = start_price + (end_price - start_price) * Decimal(k) / Decimal(interior + 1)
            offset = noise[k - 1] * step_scale
            jitter = (_fraction(abs(offset)) * span).copy_sign(Decimal(1) if offset >= 0 else Decimal(-1))
            path.append(_on_tick_within(straight + jitter, low, high, tick))
    path.append(bar.close)
    return path


def _on_tick_within(price: Decimal, low: Decimal, high: Decimal, tick: Decimal) -> Decimal:
    """`price` clamped to [low, high] and rounded to `tick`, staying inside the range."""
    clamped = min(max(price, low), high)
    rounded = round_to_tick(clamped, tick)
    if rounded < low:
        rounded = ceil_to_tick(low, tick)
    elif rounded > high:
        rounded = floor_to_tick(high, tick)
    if low <= rounded <= high:
        return rounded
    return low if clamped - low <= high - clamped else high


@dataclass(frozen=True, slots=True)
class SpreadModel:
    """Where the bid and ask sit around a traded price.

    The half-spread is `bps` basis points of the price; the full spread is at least `min_ticks`
    ticks. Touch sizes are drawn uniformly from 1 to `max_touch_lots` lots.
    """

    bps: Decimal
    min_ticks: int = 1
    max_touch_lots: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.bps, Decimal) or not self.bps.is_finite() or self.bps < 0:
            raise ValueError(f"bps must be a non-negative finite Decimal, got {self.bps!r}")
        if self.min_ticks < 1:
            raise ValueError(f"min_ticks must be at least 1 so that bid < ask, got {self.min_ticks}")
        if self.max_touch_lots < 1:
            raise ValueError(f"max_touch_lots must be at least 1, got {self.max_touch_lots}")

    def bid_ask(self, price: Decimal, tick: Decimal) -> tuple[Decimal, Decimal]:
        """Bid and ask on `tick` around `price`: bid <= price <= ask and bid < ask.

        The bid is rounded down and the ask up; a spread narrower than `min_ticks` is widened on
        both sides. The bid never goes below zero.
        """
        _check_tick(tick)
        half = price * self.bps / _BPS
        bid = floor_to_tick(price - half, tick)
        ask = ceil_to_tick(price + half, tick)
        missing = self.min_ticks - int((ask - bid) / tick)
        if missing > 0:
            ask += tick * ((missing + 1) // 2)
            bid -= tick * (missing // 2)
        if bid < 0 <= price:
            shortfall = -bid
            bid += shortfall
            ask += shortfall
        return bid, ask

    def quote_around(
        self,
        symbol: str,
        price: Decimal,
        tick: Decimal,
        ts: datetime,
        size_rng: random.Random,
        source_ts: datetime | None = None,
        last_size: Decimal = Decimal(0),
        *,
        lot: Decimal = Decimal(1),
    ) -> Quote:
        """A quote with `last = price` and the bid and ask from `bid_ask`.

        Bid and ask sizes are random whole numbers of `lot` (at least one lot), drawn from `size_rng`.
        `ts` must be UTC.
        """
        _check_tick(tick)
        if lot <= 0:
            raise ValueError(f"lot must be positive, got {lot}")
        bid, ask = self.bid_ask(price, tick)
        bid_size = lot * size_rng.randint(1, self.max_touch_lots)
        ask_size = lot * size_rng.randint(1, self.max_touch_lots)
        return Quote(symbol, bid, ask, bid_size, ask_size, price, last_size, ts, source_ts)


def split_volume(volume: Decimal, parts: int, rng: random.Random, step: Decimal | None = None) -> list[Decimal]:
    """`volume` cut into `parts` random non-negative pieces that sum to it exactly.

    Each piece but the last is rounded down to a multiple of `step` (default: the smallest unit
    `volume` is written in, so 1500 splits into whole numbers and 0.25 into hundredths); the last
    takes the remainder. Pieces can be zero when the volume is small, and all are zero for zero
    volume.
    """
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    if volume < 0:
        raise ValueError(f"volume must not be negative, got {volume}")
    unit = Decimal(1).scaleb(-decimal_places(volume)) if step is None else step
    if unit <= 0:
        raise ValueError(f"step must be positive, got {step}")
    weights = [rng.uniform(0.5, 1.5) for _ in range(parts)]
    total = sum(weights)
    pieces: list[Decimal] = []
    remaining = volume
    for weight in weights[:-1]:
        share = volume * _fraction(weight / total)
        piece = min((share / unit).to_integral_value(rounding=ROUND_FLOOR) * unit, remaining)
        pieces.append(piece)
        remaining -= piece
    pieces.append(remaining)
    return pieces


def bar_ticks(
    bar: Bar,
    steps: int,
    rng: random.Random,
    instrument_tick: Decimal,
    spread: SpreadModel,
    start: datetime,
    step_seconds: float,
    *,
    lot: Decimal = Decimal(1),
    size_step: Decimal | None = None,
) -> list[tuple[Quote, Trade]]:
    """Replay one bar as `steps` (quote, trade) pairs.

    Prices follow `intrabar_path`; pair `i` is stamped `start + i * step_seconds` (UTC) with
    `source_ts = bar.ts`. Each trade prints at the path price with a share of the bar's volume
    (`split_volume`: sizes >= 0, possibly zero, summing exactly to `bar.volume`); the quote has
    `last` and `last_size` equal to the trade's. The trade side is BUY when the price ticked up from
    the previous print and SELL when it ticked down; an unchanged price keeps the previous side, and
    the first print takes the bar's direction (BUY when close >= open).
    """
    if step_seconds < 0 or not math.isfinite(step_seconds):
        raise ValueError(f"step_seconds must be a non-negative number, got {step_seconds}")
    prices = intrabar_path(bar, steps, rng, instrument_tick)
    sizes = split_volume(bar.volume, steps, rng, size_step)
    side = Side.BUY if bar.close >= bar.open else Side.SELL
    previous: Decimal | None = None
    ticks: list[tuple[Quote, Trade]] = []
    for i, (price, size) in enumerate(zip(prices, sizes, strict=True)):
        if previous is not None and price != previous:
            side = Side.BUY if price > previous else Side.SELL
        previous = price
        ts = start + timedelta(seconds=i * step_seconds)
        quote = spread.quote_around(bar.symbol, price, instrument_tick, ts, rng, source_ts=bar.ts, last_size=size, lot=lot)
        ticks.append((quote, Trade(bar.symbol, price, size, side, ts, bar.ts)))
    return ticks


def book_around(quote: Quote, depth: int, tick: Decimal, rng: random.Random, *, lot: Decimal = Decimal(1)) -> OrderBook:
    """An L2 book of up to `depth` levels a side whose touch is the quote's bid and ask.

    Deeper levels are one or two ticks apart with sizes growing away from the touch (random whole
    lots). Touch sizes are the quote's when positive. Bid levels stop before reaching zero, so the
    bid side can be shorter than `depth` for prices within a few ticks of zero.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    _check_tick(tick)
    if lot <= 0:
        raise ValueError(f"lot must be positive, got {lot}")

    def size(level: int) -> Decimal:
        return lot * rng.randint(1 + level, 10 * (1 + level))

    bids = [BookLevel(quote.bid, quote.bid_size if quote.bid_size > 0 else size(0))]
    asks = [BookLevel(quote.ask, quote.ask_size if quote.ask_size > 0 else size(0))]
    for level in range(1, depth):
        ask_price = asks[-1].price + tick * rng.randint(1, 2)
        asks.append(BookLevel(ask_price, size(level)))
        bid_price = bids[-1].price - tick * rng.randint(1, 2)
        if bid_price > 0:
            bids.append(BookLevel(bid_price, size(level)))
    return OrderBook(quote.symbol, tuple(bids), tuple(asks), quote.ts)
