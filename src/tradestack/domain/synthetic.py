"""Synthetic market data: a jump-diffusion price path, OHLCV bars built from it, and an L2 order book.

Everything is seeded: the same seed gives the same prices, bars and books on every run. The random
walk runs on floats; prices and sizes leave this module as Decimals on the tick and lot.
"""

from __future__ import annotations

import math
import random
from datetime import datetime
from decimal import Decimal

from tradestack.domain.instruments import ceil_to_tick, floor_to_tick, round_to_tick
from tradestack.domain.marketdata import Bar, BookLevel, OrderBook, Side, Timeframe, Trade

SECONDS_PER_YEAR = 365.25 * 86_400
# The walk's log price is kept within +-46 (prices between about 1e-20 and 1e20).
_LOG_PRICE_BOUND = 46.0


def _positive(name: str, value: Decimal) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise ValueError(f"{name} must be a positive finite Decimal, got {value!r}")


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw with a small `mean` (Knuth's method)."""
    if mean <= 0:
        return 0
    limit = math.exp(-mean)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


class PricePathGenerator:
    """A seeded geometric Brownian motion with Poisson-timed lognormal jumps (Merton's model).

    Per year: `drift` is the expected rate of return, `volatility` the diffusion's standard
    deviation, `jump_intensity` the expected number of jumps; each jump multiplies the price by
    exp(N(`jump_mean`, `jump_stdev`)). The drift is compensated for the jumps, so `drift` stays the
    expected return. A year is 365.25 days of `step_seconds` steps.

    `next()` advances one step and returns the price rounded to `tick` (never below one tick);
    `volume()` draws one step's volume, lognormal around `volume_mean`, in whole `lot`s (at least
    one). Prices and volumes come from separate random streams, so calling `volume()` does not change
    the price path.
    """

    def __init__(
        self,
        *,
        start_price: Decimal,
        tick: Decimal,
        seed: int,
        step_seconds: float = 60.0,
        drift: float = 0.0,
        volatility: float = 0.5,
        jump_intensity: float = 0.0,
        jump_mean: float = 0.0,
        jump_stdev: float = 0.0,
        volume_mean: Decimal = Decimal(1000),
        volume_sigma: float = 0.5,
        lot: Decimal = Decimal(1),
    ) -> None:
        _positive("start_price", start_price)
        _positive("tick", tick)
        _positive("volume_mean", volume_mean)
        _positive("lot", lot)
        if not step_seconds > 0 or not math.isfinite(step_seconds):
            raise ValueError(f"step_seconds must be positive, got {step_seconds}")
        for name, value in (("volatility", volatility), ("jump_intensity", jump_intensity), ("jump_stdev", jump_stdev)):
            if value < 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be non-negative and finite, got {value}")
        if volume_sigma < 0:
            raise ValueError(f"volume_sigma must be non-negative, got {volume_sigma}")
        self.tick = tick
        self.lot = lot
        # Seeded simulation, not security: the standard generator is what we want (S311).
        seeds = random.Random(seed)  # noqa: S311
        self._price_rng = random.Random(seeds.getrandbits(64))  # noqa: S311
        self._volume_rng = random.Random(seeds.getrandbits(64))  # noqa: S311
        self._dt = step_seconds / SECONDS_PER_YEAR
        self._volatility = volatility
        self._jump_intensity = jump_intensity
        self._jump_mean = jump_mean
        self._jump_stdev = jump_stdev
        compensation = jump_intensity * (math.exp(jump_mean + jump_stdev**2 / 2) - 1)
        self._step_drift = (drift - compensation - volatility**2 / 2) * self._dt
        self._log_price = math.log(float(start_price))
        self._volume_mu = math.log(float(volume_mean)) - volume_sigma**2 / 2
        self._volume_sigma = volume_sigma
        self.price = self._rounded()
        self.jumps = 0
        """Jumps so far (for calibration checks)."""
        self.steps = 0
        """Steps so far."""

    def _rounded(self) -> Decimal:
        price = round_to_tick(Decimal(repr(math.exp(self._log_price))), self.tick)
        return max(price, round_to_tick(self.tick, self.tick))

    def next(self) -> Decimal:
        """Advance one step; the new price on the tick, at least one tick."""
        rng = self._price_rng
        change = self._step_drift + self._volatility * math.sqrt(self._dt) * rng.gauss(0.0, 1.0)
        jumps = _poisson(rng, self._jump_intensity * self._dt)
        for _ in range(jumps):
            change += rng.gauss(self._jump_mean, self._jump_stdev)
        self.jumps += jumps
        self.steps += 1
        # Keep the walk where a Decimal of 28 digits still holds the price on the tick.
        self._log_price = min(max(self._log_price + change, -_LOG_PRICE_BOUND), _LOG_PRICE_BOUND)
        self.price = self._rounded()
        return self.price

    def volume(self) -> Decimal:
        """One step's traded volume: lognormal with mean `volume_mean`, in whole lots, at least one lot."""
        draw = self._volume_rng.lognormvariate(self._volume_mu, self._volume_sigma)
        lots = max(1, round(draw / float(self.lot)))
        return self.lot * lots


def synthetic_bars(
    symbol: str,
    start: datetime,
    timeframe: Timeframe,
    count: int,
    seed: int,
    start_price: Decimal,
    tick: Decimal,
    *,
    substeps: int = 20,
    drift: float = 0.0,
    volatility: float = 0.5,
    jump_intensity: float = 0.0,
    jump_mean: float = 0.0,
    jump_stdev: float = 0.0,
    volume_mean: Decimal = Decimal(1000),
    lot: Decimal = Decimal(1),
) -> list[Bar]:
    """`count` consecutive OHLCV bars of a `PricePathGenerator` walk.

    The first bar starts at `start` floored to the timeframe (UTC) and opens at `start_price` rounded
    to `tick`; each later bar opens at the previous close. Inside a bar the walk takes `substeps`
    steps: high and low are the extremes of open and those steps, close is the last, volume is the
    sum of the steps' volumes (`volume_mean` is per substep). The path parameters are as in
    `PricePathGenerator`.
    """
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    if substeps < 1:
        raise ValueError(f"substeps must be at least 1, got {substeps}")
    generator = PricePathGenerator(
        start_price=start_price,
        tick=tick,
        seed=seed,
        step_seconds=timeframe.seconds / substeps,
        drift=drift,
        volatility=volatility,
        jump_intensity=jump_intensity,
        jump_mean=jump_mean,
        jump_stdev=jump_stdev,
        volume_mean=volume_mean,
        lot=lot,
    )
    bar_start = timeframe.floor(start)
    open_price = generator.price
    bars: list[Bar] = []
    for _ in range(count):
        prices = [generator.next() for _ in range(substeps)]
        volume = sum((generator.volume() for _ in range(substeps)), Decimal(0))
        high = max(open_price, *prices)
        low = min(open_price, *prices)
        bars.append(Bar(symbol, bar_start, open_price, high, low, prices[-1], volume))
        open_price = prices[-1]
        bar_start += timeframe.delta
    return bars


# Relative frequency of the event kinds the book simulator draws.
_EVENT_WEIGHTS = {"add": 0.55, "cancel": 0.30, "market": 0.15}


class OrderBookSimulator:
    """A seeded limit order book that evolves by random events and reports L2 snapshots.

    Each `step(ts)` applies between 1 and `events_per_step` events, each one of:

    - ``add``: a limit order of 1 to `max_order_lots` lots joins a level at or behind its side's
      touch, or improves the touch inside the spread, without crossing;
    - ``cancel``: part or all of a random resting level is withdrawn;
    - ``market``: an order of 1 to `max_market_lots` lots takes liquidity from the other side's
      touch, sweeping levels if it is larger, which moves the mid. Each level it fills prints a
      trade (`trades`, `last_trade`).

    A side left empty is refilled with `depth` levels next to the other side (counted as
    ``replenish``), so the book is never empty or crossed, and a side with fewer than `depth` levels
    is padded behind its deepest level. Levels far behind the touch are dropped.
    Bid prices stay at or above one tick and ask prices at or above two. `events` counts what
    happened by kind.
    """

    def __init__(
        self,
        symbol: str,
        mid: Decimal,
        tick: Decimal,
        seed: int,
        *,
        depth: int = 10,
        lot: Decimal = Decimal(1),
        events_per_step: int = 10,
        max_order_lots: int = 20,
        max_market_lots: int = 40,
    ) -> None:
        _positive("tick", tick)
        _positive("lot", lot)
        if depth < 1 or events_per_step < 1 or max_order_lots < 1 or max_market_lots < 1:
            raise ValueError("depth, events_per_step, max_order_lots and max_market_lots must be at least 1")
        if mid < 3 * tick:
            raise ValueError(f"mid {mid} must be at least three ticks ({3 * tick})")
        self.symbol = symbol
        self.tick = tick
        self.lot = lot
        self.depth = depth
        self.events_per_step = events_per_step
        self.max_order_lots = max_order_lots
        self.max_market_lots = max_market_lots
        self._rng = random.Random(seed)  # noqa: S311 - seeded simulation, not security
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        self.events: dict[str, int] = {"add": 0, "cancel": 0, "market": 0, "replenish": 0}
        """Events applied so far, by kind."""
        self.trades: tuple[Trade, ...] = ()
        """Trades printed by market orders during the latest step."""
        self.last_trade: Trade | None = None
        """The most recent trade printed by any step."""
        best_bid = ceil_to_tick(mid, tick) - tick
        best_ask = floor_to_tick(mid, tick) + tick
        self._fill_bids(best_bid)
        self._fill_asks(best_ask)

    @property
    def best_bid(self) -> Decimal:
        """Highest resting bid price."""
        return max(self._bids)

    @property
    def best_ask(self) -> Decimal:
        """Lowest resting ask price."""
        return min(self._asks)

    @property
    def mid(self) -> Decimal:
        """Midpoint of the best bid and ask."""
        return (self.best_bid + self.best_ask) / 2

    def step(self, ts: datetime) -> OrderBook:
        """Apply a random batch of events and return the top `depth` levels stamped `ts` (UTC)."""
        trades: list[Trade] = []
        for _ in range(self._rng.randint(1, self.events_per_step)):
            kind = self._rng.choices(tuple(_EVENT_WEIGHTS), weights=tuple(_EVENT_WEIGHTS.values()))[0]
            if kind == "add":
                self._add()
            elif kind == "cancel":
                self._cancel()
            else:
                trades.extend(self._market(ts))
            self.events[kind] += 1
            self._replenish()
        self.trades = tuple(trades)
        if trades:
            self.last_trade = trades[-1]
        return self.book(ts)

    def book(self, ts: datetime) -> OrderBook:
        """The current top `depth` levels of each side, stamped `ts` (UTC)."""
        bids = tuple(BookLevel(p, self._bids[p]) for p in sorted(self._bids, reverse=True)[: self.depth])
        asks = tuple(BookLevel(p, self._asks[p]) for p in sorted(self._asks)[: self.depth])
        return OrderBook(self.symbol, bids, asks, ts)

    def _size(self, max_lots: int) -> Decimal:
        return self.lot * self._rng.randint(1, max_lots)

    def _offset(self) -> int:
        """Ticks behind the touch for a new order: mostly near it."""
        return min(int(self._rng.expovariate(0.4)), 3 * self.depth)

    def _add(self) -> None:
        tick, best_bid, best_ask = self.tick, self.best_bid, self.best_ask
        improve = best_ask - best_bid > tick and self._rng.random() < 0.25
        if self._rng.random() < 0.5:
            price = best_bid + tick if improve else best_bid - tick * self._offset()
            if price >= tick:
                self._bids[price] = self._bids.get(price, Decimal(0)) + self._size(self.max_order_lots)
        else:
            price = best_ask - tick if improve else best_ask + tick * self._offset()
            self._asks[price] = self._asks.get(price, Decimal(0)) + self._size(self.max_order_lots)
        self._prune()

    def _cancel(self) -> None:
        levels = self._bids if self._rng.random() < 0.5 else self._asks
        price = self._rng.choice(sorted(levels))
        lots = int(levels[price] / self.lot)
        withdrawn = self.lot * self._rng.randint(1, max(lots, 1))
        remaining = levels[price] - withdrawn
        if remaining > 0:
            levels[price] = remaining
        else:
            del levels[price]

    def _market(self, ts: datetime) -> list[Trade]:
        side = Side.BUY if self._rng.random() < 0.5 else Side.SELL
        levels = self._asks if side is Side.BUY else self._bids
        wanted = self._size(self.max_market_lots)
        trades: list[Trade] = []
        while wanted > 0 and levels:
            price = min(levels) if side is Side.BUY else max(levels)
            filled = min(wanted, levels[price])
            levels[price] -= filled
            if levels[price] == 0:
                del levels[price]
            wanted -= filled
            trades.append(Trade(self.symbol, price, filled, side, ts))
        return trades

    def _replenish(self) -> None:
        """Refill an emptied side next to the other one, and pad thin sides to `depth` levels."""
        if not self._bids:
            self._fill_bids(max(self.best_ask - self.tick, self.tick))
            self.events["replenish"] += 1
        if not self._asks:
            self._fill_asks(max(self.best_bid + self.tick, 2 * self.tick))
            self.events["replenish"] += 1
        if len(self._bids) < self.depth:
            self._fill_bids(min(self._bids) - self.tick)
        if len(self._asks) < self.depth:
            self._fill_asks(max(self._asks) + self.tick)

    def _fill_bids(self, best: Decimal) -> None:
        """Add bid levels one tick apart from `best` down until the side has `depth` levels."""
        price = best
        while len(self._bids) < self.depth and price >= self.tick:
            self._bids[price] = self._size(self.max_order_lots)
            price -= self.tick

    def _fill_asks(self, best: Decimal) -> None:
        """Add ask levels one tick apart from `best` up until the side has `depth` levels."""
        price = best
        while len(self._asks) < self.depth:
            self._asks[price] = self._size(self.max_order_lots)
            price += self.tick

    def _prune(self) -> None:
        """Drop levels more than 4 x depth ticks behind either touch."""
        reach = self.tick * 4 * self.depth
        best_bid, best_ask = self.best_bid, self.best_ask
        for price in [p for p in self._bids if p < best_bid - reach]:
            del self._bids[price]
        for price in [p for p in self._asks if p > best_ask + reach]:
            del self._asks[price]
