"""Bars as columns: one symbol's series in NumPy arrays, prices as exact scaled integers.

Prices are kept as int64 counts of 10^-`places` (``places`` = 2: cents), so every price converts
back to its exact Decimal (`price`) and the float columns used by signals are derived from the same
integers. Volumes likewise, as int64 counts of 10^-`volume_places` (`volume_of` gives the exact
Decimal the matching's participation model takes; floats only for signals and charts).
Timestamps are int64 microseconds since the epoch, UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from tradestack.domain.marketdata import Bar

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_PLACES = 10
"""Most decimal places a price may have (as the database stores them)."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def utc_of(microseconds: int) -> datetime:
    """The UTC datetime `microseconds` after the epoch."""
    seconds, rest = divmod(microseconds, 1_000_000)
    return _EPOCH + timedelta(0, seconds, rest)  # positional: cheaper than the keyword's normalisation


def microseconds_of(ts: datetime) -> int:
    """Microseconds from the epoch to `ts` (timezone-aware)."""
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _places(values: Sequence[Decimal], what: str = "prices") -> int:
    places = 0
    for value in values:
        exponent = value.normalize().as_tuple().exponent
        if isinstance(exponent, int) and -exponent > places:
            places = -exponent
    if places > MAX_PLACES:
        raise ValueError(f"{what} with more than {MAX_PLACES} decimal places are not supported")
    return places


def _scaled(values: Sequence[Decimal], places: int, what: str) -> IntArray:
    """`values` as int64 counts of 10^-`places` (exact; ValueError when one does not fit in 63 bits)."""
    scale = Decimal(10) ** places
    counts = [int(value * scale) for value in values]
    if counts and max(abs(c) for c in counts) >= 2**63:
        raise ValueError(f"{what} too large for {places} decimal places in 64 bits")
    return np.array(counts, dtype=np.int64)


@dataclass(frozen=True, slots=True, eq=False)
class BarSeries:
    """One symbol's bars in time order; `open`..`close` in units of 10^-`places`, `volume` in units of
    10^-`volume_places`, `ts` in epoch microseconds."""

    symbol: str
    ts: IntArray
    open: IntArray
    high: IntArray
    low: IntArray
    close: IntArray
    volume: IntArray
    places: int
    volume_places: int = 0

    def __post_init__(self) -> None:
        n = len(self.ts)
        for name in ("open", "high", "low", "close", "volume"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{self.symbol}: column {name} has {len(getattr(self, name))} values for {n} timestamps")
        if n > 1 and not bool(np.all(np.diff(self.ts) > 0)):
            raise ValueError(f"{self.symbol}: bars must be in strictly increasing time order")
        for name in ("places", "volume_places"):
            if not 0 <= getattr(self, name) <= MAX_PLACES:
                raise ValueError(f"{name} must be between 0 and {MAX_PLACES}, got {getattr(self, name)}")
        for name in ("open", "high", "low", "close", "volume"):
            if getattr(self, name).dtype != np.int64:
                raise TypeError(f"{self.symbol}: column {name} must be int64 scaled counts, got {getattr(self, name).dtype}")

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def from_bars(cls, symbol: str, bars: Sequence[Bar]) -> BarSeries:
        """The series of `bars` (one symbol, time order), exact: Decimal prices become scaled integers."""
        places = _places([p for bar in bars for p in (bar.open, bar.high, bar.low, bar.close)])
        volume_places = _places([bar.volume for bar in bars], "volumes")

        def column(values: Sequence[Decimal]) -> IntArray:
            return _scaled(values, places, f"{symbol} prices")

        return cls(
            symbol=symbol,
            ts=np.array([microseconds_of(bar.ts) for bar in bars], dtype=np.int64),
            open=column([bar.open for bar in bars]),
            high=column([bar.high for bar in bars]),
            low=column([bar.low for bar in bars]),
            close=column([bar.close for bar in bars]),
            volume=_scaled([bar.volume for bar in bars], volume_places, f"{symbol} volumes"),
            places=places,
            volume_places=volume_places,
        )

    def between(self, start: datetime | None, end: datetime | None) -> BarSeries:
        """The bars with start <= ts <= end (either bound optional)."""
        low = 0 if start is None else int(np.searchsorted(self.ts, microseconds_of(start), side="left"))
        high = len(self.ts) if end is None else int(np.searchsorted(self.ts, microseconds_of(end), side="right"))
        return self.head(high, start=low)

    def head(self, stop: int, *, start: int = 0) -> BarSeries:
        """Bars `start` to `stop` (exclusive): the series cut off, as if later bars did not exist yet."""
        part = slice(start, stop)
        return BarSeries(
            self.symbol,
            self.ts[part],
            self.open[part],
            self.high[part],
            self.low[part],
            self.close[part],
            self.volume[part],
            self.places,
            self.volume_places,
        )

    def price(self, scaled: int) -> Decimal:
        """The exact Decimal of a scaled integer price of this series."""
        return Decimal(scaled).scaleb(-self.places)

    def floats(self, column: IntArray) -> FloatArray:
        """A price column as floats (for signals)."""
        return column / float(10**self.places)

    def volume_of(self, index: int) -> Decimal:
        """The exact volume of bar `index`."""
        return Decimal(self.volume.item(index)).scaleb(-self.volume_places)

    def volume_floats(self) -> FloatArray:
        """The volumes as floats (for signals and charts)."""
        return self.volume / float(10**self.volume_places)

    def bar(self, index: int) -> Bar:
        """Bar `index` as the domain's exact `Bar`."""
        return Bar(
            self.symbol,
            utc_of(int(self.ts[index])),
            self.price(int(self.open[index])),
            self.price(int(self.high[index])),
            self.price(int(self.low[index])),
            self.price(int(self.close[index])),
            self.volume_of(index),
        )
