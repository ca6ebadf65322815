"""Market data values: timeframes, bars, quotes, trades and L2 books, and bar aggregation.

Timestamps are timezone-aware UTC datetimes. A bar's `ts` is the start of its interval. Prices,
sizes and volumes are Decimals.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from tradestack.domain.frozen import fast_init

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Timeframe(StrEnum):
    """A bar interval. Buckets are aligned to the Unix epoch in UTC (as pandas' default resample)."""

    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    D1 = "1d"

    @property
    def seconds(self) -> int:
        """Length of one bar in seconds."""
        return _TIMEFRAME_SECONDS[self]

    @property
    def delta(self) -> timedelta:
        """Length of one bar."""
        return timedelta(seconds=self.seconds)

    def floor(self, ts: datetime) -> datetime:
        """Start of the bucket that contains `ts`."""
        seconds = int((ts - _EPOCH).total_seconds() // self.seconds) * self.seconds
        return _EPOCH + timedelta(seconds=seconds)

    def divides(self, other: Timeframe) -> bool:
        """True when bars of this timeframe aggregate exactly into bars of `other`."""
        return other.seconds % self.seconds == 0

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        """The timeframe named `text`; ValueError listing the valid names otherwise."""
        try:
            return cls(text)
        except ValueError:
            valid = ", ".join(t.value for t in cls)
            raise ValueError(f"unknown timeframe {text!r}; use one of {valid}") from None


_TIMEFRAME_SECONDS = {
    Timeframe.M1: 60,
    Timeframe.M5: 300,
    Timeframe.M15: 900,
    Timeframe.H1: 3600,
    Timeframe.D1: 86400,
}


def _utc(ts: datetime) -> None:
    if ts.tzinfo is None or ts.utcoffset() != timedelta(0):
        raise ValueError(f"timestamps must be timezone-aware UTC, got {ts!r}")


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar; `ts` is the start of its interval."""

    symbol: str
    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def __post_init__(self) -> None:
        _utc(self.ts)

    def extended(self, later: Bar) -> Bar:
        """This bar with a later bar (or trade, as a one-price bar) of the same interval folded in."""
        return Bar(
            self.symbol,
            self.ts,
            self.open,
            max(self.high, later.high),
            min(self.low, later.low),
            later.close,
            self.volume + later.volume,
        )


@fast_init
@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book and last trade. `ts` is when the event happened; `source_ts` is the historical
    time it replays (None for live and synthetic data)."""

    symbol: str
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal
    last: Decimal
    last_size: Decimal
    ts: datetime
    source_ts: datetime | None = None

    def __post_init__(self) -> None:
        _utc(self.ts)
        if self.bid > self.ask:
            raise ValueError(f"{self.symbol}: bid {self.bid} above ask {self.ask}")

    @property
    def mid(self) -> Decimal:
        """Midpoint of bid and ask."""
        return (self.bid + self.ask) / 2


class Side(StrEnum):
    """Which way an order trades, or a trade's aggressor went: the one side type of the domain."""

    BUY = "buy"
    SELL = "sell"


@fast_init
@dataclass(frozen=True, slots=True)
class Trade:
    """One print."""

    symbol: str
    price: Decimal
    size: Decimal
    side: Side
    ts: datetime
    source_ts: datetime | None = None

    def __post_init__(self) -> None:
        _utc(self.ts)


@dataclass(frozen=True, slots=True)
class BookLevel:
    """Aggregated size resting at one price."""

    price: Decimal
    size: Decimal


@dataclass(frozen=True, slots=True)
class OrderBook:
    """An L2 snapshot: bids best (highest) first, asks best (lowest) first."""

    symbol: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    ts: datetime

    def __post_init__(self) -> None:
        _utc(self.ts)
        if any(a.price <= b.price for a, b in zip(self.bids, self.bids[1:], strict=False)):
            raise ValueError(f"{self.symbol}: bids must be strictly descending")
        if any(a.price >= b.price for a, b in zip(self.asks, self.asks[1:], strict=False)):
            raise ValueError(f"{self.symbol}: asks must be strictly ascending")
        if self.bids and self.asks and self.bids[0].price >= self.asks[0].price:
            raise ValueError(f"{self.symbol}: crossed book ({self.bids[0].price} >= {self.asks[0].price})")

    def top(self, depth: int) -> OrderBook:
        """The best `depth` levels of each side."""
        return OrderBook(self.symbol, self.bids[:depth], self.asks[:depth], self.ts)


MarketEvent = Quote | Trade | OrderBook


def aggregate(bars: Iterable[Bar], timeframe: Timeframe) -> Iterator[Bar]:
    """Roll time-ordered bars of a finer resolution up into `timeframe` buckets.

    open = first open, high = max high, low = min low, close = last close, volume = sum. Buckets
    with no bars produce nothing. Input must be sorted by `ts` and of one symbol.
    """
    current: Bar | None = None
    bucket: datetime | None = None
    for bar in bars:
        start = timeframe.floor(bar.ts)
        if current is not None and start == bucket:
            current = current.extended(bar)
            continue
        if current is not None:
            if bucket is not None and start < bucket:
                raise ValueError(f"bars are not in time order at {bar.ts.isoformat()}")
            yield current
        bucket = start
        current = Bar(bar.symbol, start, bar.open, bar.high, bar.low, bar.close, bar.volume)
    if current is not None:
        yield current
