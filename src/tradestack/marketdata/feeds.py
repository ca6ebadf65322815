"""Feeds that run inside Tradestack: replay of stored bars, and seeded synthetic markets.

Both pace themselves in real time with the injected clock and implement `tradestack.domain.feeds.Feed`.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from tradestack.core.clock import Clock
from tradestack.domain.instruments import Instrument, Venue
from tradestack.domain.marketdata import Bar, MarketEvent, OrderBook, Quote, Side, Timeframe, Trade
from tradestack.domain.replay import SpreadModel, book_around, intrabar_path, split_volume
from tradestack.domain.synthetic import OrderBookSimulator

BOOK_DEPTH = 20
MAX_STEPS_PER_BAR = 2000


def _seed(base: int, symbol: str) -> int:
    """A per-symbol seed that is stable across processes (unlike hash())."""
    return base * 1_000_003 + zlib.crc32(symbol.encode())


class _Pacer:
    """Sleeps until the next tick on the injected clock's monotonic time, without drifting."""

    def __init__(self, clock: Clock, interval: float) -> None:
        self.clock = clock
        self.interval = interval
        self.next_at = clock.monotonic()

    async def wait(self) -> None:
        self.next_at += self.interval
        delay = self.next_at - self.clock.monotonic()
        if delay < -self.interval:  # fell far behind (suspended, overloaded): do not burst to catch up
            self.next_at = self.clock.monotonic()
            delay = 0.0
        await asyncio.sleep(max(0.0, delay))


@dataclass
class _Replay:
    """Where one symbol's replay is: which bar, how far into it, and that bar's precomputed ticks."""

    instrument: Instrument
    resolution: Timeframe
    bars: Sequence[Bar]
    rng: random.Random
    index: int = 0
    elapsed: float = 0.0  # simulated seconds into the current bar
    prices: list[Decimal] = field(default_factory=list)  # the current bar's path
    sizes: list[Decimal] = field(default_factory=list)  # its volume, split over the path
    emitted: int = -1
    held: Quote | None = None  # the last quote sent, repeated while the venue is closed
    side: Side = Side.BUY
    touch_lot: Decimal = Decimal(0)  # the unit of quoted sizes (see `touch_lot`)


TOUCH_UNIT_NOTIONAL = Decimal(4_000)
"""Quoted sizes are 1 to `SpreadModel.max_touch_lots` units worth about this much (quote currency)."""


def touch_lot(instrument: Instrument, price: Decimal) -> Decimal:
    """Whole lots worth about `TOUCH_UNIT_NOTIONAL` at `price` (at least one lot).

    A bare lot is 0.00001 BTC or one share: touches of 1-10 lots would let a paper order of a
    realistic size fill only in crumbs, so replayed touches are sized by value instead.
    """
    lot = instrument.lot_size
    if price <= 0:
        return lot
    return lot * max(1, int(TOUCH_UNIT_NOTIONAL / (price * lot)))


class ReplayFeed:
    """Stored bars replayed as live quotes, trades and books on an accelerated clock.

    Each symbol replays its own series from the first bar; `speed` simulated seconds pass per
    real second, and gaps between bars (nights, weekends) are skipped. Within a bar, prices
    follow a path that starts at the open, touches the high and the low and ends at the close
    (`tradestack.domain.replay.intrabar_path`); bid and ask come from the spread model. Event
    timestamps are the real time of publication; `source_ts` is the bar being replayed. At the
    end of its series a symbol starts over. While a symbol's venue is closed (`hours`) the replay
    holds: it sends the last quote again every second, prints no trades and does not move on.
    """

    def __init__(
        self,
        series: Mapping[str, tuple[Instrument, Timeframe, Sequence[Bar]]],
        *,
        clock: Clock,
        speed: float,
        tick_seconds: float,
        spread: SpreadModel,
        seed: int,
        hours: Mapping[str, Venue] | None = None,
    ) -> None:
        self._clock = clock
        self._hours = dict(hours or {})
        self._speed = speed
        self._tick_seconds = tick_seconds
        self._spread = spread
        self._closed = asyncio.Event()
        self._state = {
            symbol: _Replay(instrument, resolution, bars, random.Random(_seed(seed, symbol)))  # noqa: S311 - simulation, not crypto
            for symbol, (instrument, resolution, bars) in series.items()
            if bars
        }
        # Start each symbol part-way into its first bar, so bars do not all change on the same step.
        for state in self._state.values():
            state.elapsed = state.rng.random() * state.resolution.seconds
            state.touch_lot = touch_lot(state.instrument, state.bars[0].close)

    @property
    def name(self) -> str:
        """Feed name for logs and metrics."""
        return "replay"

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbols being replayed."""
        return tuple(self._state)

    def _steps(self, state: _Replay) -> int:
        real_seconds = state.resolution.seconds / self._speed
        return max(4, min(MAX_STEPS_PER_BAR, round(real_seconds / self._tick_seconds)))

    def _advance(self, state: _Replay, seconds: float) -> tuple[Quote, Trade] | None:
        """Move `seconds` of simulated time forward; the tick now due, or None if it was already sent.

        Only the bar's path and volume split are computed when a bar starts; each quote is built
        when it is due, so a bar change costs little and never stalls the other symbols.
        """
        state.elapsed += seconds
        bar_seconds = state.resolution.seconds
        while state.elapsed >= bar_seconds:
            state.elapsed -= bar_seconds
            state.index = (state.index + 1) % len(state.bars)
            state.prices = []
            state.emitted = -1
        bar = state.bars[state.index]
        if not state.prices:
            steps = self._steps(state)
            state.prices = intrabar_path(bar, steps, state.rng, state.instrument.tick_size)
            state.sizes = split_volume(bar.volume, steps, state.rng)
            state.side = Side.BUY if bar.close >= bar.open else Side.SELL
        position = min(len(state.prices) - 1, int(state.elapsed / bar_seconds * len(state.prices)))
        if position == state.emitted:
            return None
        previous = state.prices[state.emitted] if state.emitted >= 0 else None
        state.emitted = position
        # History may be off the tick (adjusted or float-noisy prices): prints are on it.
        price, size = state.instrument.round_price(state.prices[position]), state.sizes[position]
        if previous is not None and state.prices[position] != previous:
            state.side = Side.BUY if state.prices[position] > previous else Side.SELL
        now = self._clock.now()
        quote = self._spread.quote_around(
            bar.symbol,
            price,
            state.instrument.tick_size,
            now,
            state.rng,
            source_ts=bar.ts,
            last_size=size,
            lot=state.touch_lot,
        )
        return quote, Trade(bar.symbol, price, size, state.side, now, bar.ts)

    async def events(self) -> AsyncIterator[MarketEvent]:
        """Quotes, trades and books of every symbol, one step every `tick_seconds`."""
        pacer = _Pacer(self._clock, self._tick_seconds)
        first = True
        while not self._closed.is_set():
            step = 0.0 if first else self._tick_seconds * self._speed
            first = False
            for state in self._state.values():
                if not self._open(state.instrument.symbol):
                    if state.held is None and (first_tick := self._advance(state, 0.0)) is not None:
                        state.held = first_tick[0]  # a price to show from the start, without trading
                        yield state.held
                        continue
                    held = _hold(state.held, self._clock.now())
                    if held is not None:
                        state.held = held
                        yield held
                    continue
                due = self._advance(state, step)
                if due is None:
                    continue
                quote, trade = due
                state.held = quote
                yield quote
                if trade.size > 0:
                    yield trade
                yield book_around(quote, BOOK_DEPTH, state.instrument.tick_size, state.rng, lot=state.touch_lot)
                await asyncio.sleep(0)  # let subscribers receive this symbol before the next is built
            await pacer.wait()

    def _open(self, symbol: str) -> bool:
        hours = self._hours.get(symbol)
        return hours is None or hours.is_open(self._clock.now())

    async def close(self) -> None:
        """Stop after the current step."""
        self._closed.set()


HOLD_EVERY_SECONDS = 1.0
"""While a venue is closed its last quote is sent again this often (no trades, no new prices)."""


def _hold(last: Quote | None, now: datetime) -> Quote | None:
    """The last quote again at `now` (keeps it fresh in the cache), or None when it was sent less than a second ago."""
    if last is None or (now - last.ts).total_seconds() < HOLD_EVERY_SECONDS:
        return None
    return replace(last, ts=now, last_size=Decimal(0))


# Rough start prices of synthetic instruments, in their quote currency.
_START_PRICES = {
    "AUDUSD": Decimal("0.65"),
    "EURUSD": Decimal("1.08"),
    "USDINR": Decimal("84"),
    "BTC-USD": Decimal("65000"),
    "ETH-USD": Decimal("3000"),
    "BHP": Decimal("45"),
    "CBA": Decimal("110"),
    "RELIANCE": Decimal("2900"),
    "INFY": Decimal("1800"),
}


class SyntheticFeed:
    """Seeded synthetic markets: a limit-order-book simulator per symbol, published as books, quotes and trades.

    While a symbol's venue is closed (`hours`) it holds its last quote, as the replay does.
    """

    def __init__(
        self,
        instruments: Sequence[Instrument],
        *,
        clock: Clock,
        tick_seconds: float,
        seed: int,
        hours: Mapping[str, Venue] | None = None,
    ) -> None:
        self._clock = clock
        self._hours = dict(hours or {})
        self._held: dict[str, Quote] = {}
        self._tick_seconds = tick_seconds
        self._closed = asyncio.Event()
        self._books = {
            i.symbol: (
                i,
                OrderBookSimulator(
                    i.symbol,
                    max(_START_PRICES.get(i.symbol, Decimal(100)), 10 * i.tick_size),
                    i.tick_size,
                    _seed(seed, i.symbol),
                    depth=BOOK_DEPTH,
                    lot=i.lot_size,
                ),
            )
            for i in instruments
        }

    @property
    def name(self) -> str:
        """Feed name for logs and metrics."""
        return "synthetic"

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbols simulated."""
        return tuple(self._books)

    async def events(self) -> AsyncIterator[MarketEvent]:
        """A book, a quote and (when a market order hit the book) a trade per symbol per step."""
        pacer = _Pacer(self._clock, self._tick_seconds)
        while not self._closed.is_set():
            for symbol, (_, simulator) in self._books.items():
                now = self._clock.now()
                hours = self._hours.get(symbol)
                if hours is not None and not hours.is_open(now) and symbol in self._held:
                    held = _hold(self._held[symbol], now)  # closed: the last quote again, no trades
                    if held is not None:
                        self._held[symbol] = held
                        yield held
                    continue
                book: OrderBook = simulator.step(now)
                last = simulator.last_trade
                best_bid, best_ask = book.bids[0], book.asks[0]
                quote = Quote(
                    symbol,
                    best_bid.price,
                    best_ask.price,
                    best_bid.size,
                    best_ask.size,
                    last.price if last is not None else best_bid.price,
                    last.size if last is not None else Decimal(0),
                    now,
                )
                self._held[symbol] = quote
                yield quote
                if hours is not None and not hours.is_open(now):
                    continue  # the first quote of a closed venue: a price to show, without trading
                for trade in simulator.trades:
                    yield trade
                yield book
                await asyncio.sleep(0)
            await pacer.wait()

    async def close(self) -> None:
        """Stop after the current step."""
        self._closed.set()
