"""What a strategy reads in a backtest: the bar views, history lines and indicators over `BarSeries`.

Indicators are computed once over the whole series, causally: the value at bar i uses bars 0..i
only (a trailing window). The strategy sees them through `Line`s whose cursor the engine moves, so
it reads each value at its own bar and never a later one.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tradestack.backtest.data import BarSeries, FloatArray, IntArray, utc_of
from tradestack.domain.marketdata import Bar
from tradestack.strategy.api import Bands, Cursor, Line, LookaheadError, StrategyError


class SeriesBar:
    """The current bar of one symbol, read through its cursor (a view of "now", not a snapshot).

    `closes` are the series' closes as floats; their list (what `close` reads) is made on first use.
    """

    __slots__ = ("_close_floats", "_closes", "_cursor", "_series", "symbol")

    def __init__(self, series: BarSeries, cursor: Cursor, closes: FloatArray) -> None:
        self.symbol = series.symbol
        self._series = series
        self._cursor = cursor
        self._close_floats = closes
        self._closes: list[float] | None = None

    @property
    def index(self) -> int:
        """The bar's position in the series."""
        return self._cursor.index

    @property
    def ts(self) -> datetime:
        """The start of the bar's interval."""
        return utc_of(int(self._series.ts[self._cursor.index]))

    @property
    def close(self) -> float:
        """The close, as a float (for signals)."""
        closes = self._closes
        if closes is None:
            closes = self.close_list()
        return closes[self._cursor.index]

    def close_list(self) -> list[float]:
        """Every close of the series as a float, in a list (made once): what `close` and the history's close line read."""
        if self._closes is None:
            self._closes = self._close_floats.tolist()
        return self._closes

    def bar(self) -> Bar:
        """The exact bar."""
        return self._series.bar(self._cursor.index)


class SeriesHistory:
    """One symbol's bars up to the cursor."""

    def __init__(self, series: BarSeries, cursor: Cursor, closes: list[float]) -> None:
        self._series, self._cursor = series, cursor
        self.open = Line("open", series.floats(series.open).tolist(), cursor)
        self.high = Line("high", series.floats(series.high).tolist(), cursor)
        self.low = Line("low", series.floats(series.low).tolist(), cursor)
        self.close = Line("close", closes, cursor)
        self.volume = Line("volume", series.volume_floats().tolist(), cursor)

    def bar(self, ago: int = 0) -> Bar:
        """The bar `ago` bars back, exact."""
        if ago > 0:
            raise LookaheadError(f"bar({ago}) is {ago} bar(s) in the future; use 0 (now) or a negative offset")
        index = self._cursor.index + ago
        if index < 0:
            raise IndexError(f"bar({ago}) is before the first bar")
        return self._series.bar(index)


def sma(scaled: IntArray, places: int, period: int) -> FloatArray:
    """Trailing simple moving average of scaled integer prices; NaN for the first period-1 values.

    The window sums are exact integers and each average is one correctly rounded division, so two
    averages that are equal as numbers are equal as floats: a crossover never comes from rounding.
    """
    out = np.empty(len(scaled))
    out[: period - 1] = np.nan
    if len(scaled) >= period:
        sums = np.cumsum(scaled, dtype=np.int64)
        window = np.empty(len(scaled) - period + 1, dtype=np.int64)  # the sum of each window
        window[0] = sums[period - 1]
        np.subtract(sums[period:], sums[:-period], out=window[1:])
        np.true_divide(window, float(period * 10**places), out=out[period - 1 :])
    return out


def rolling_std(closes: FloatArray, period: int) -> FloatArray:
    """Trailing population standard deviation; NaN for the first period-1 values."""
    out = np.full(len(closes), np.nan)
    if len(closes) >= period:
        out[period - 1 :] = sliding_window_view(closes, period).std(axis=1)
    return out


def indicator(kind: str, scaled: IntArray, closes: FloatArray, places: int, period: int, width: float = 0.0) -> FloatArray:
    """One indicator over a series of closes, causally: ``sma``, or the ``upper``/``lower`` Bollinger band.

    `scaled` are the closes in units of 10^-`places` (exact), `closes` the same as floats. Both hosts
    compute with this function: the backtester over the whole series at once, the paper host over
    the trailing window at each new bar (its last value), so equal bars give equal values.
    """
    middle = sma(scaled, places, period)
    if kind == "sma":
        return middle
    offset = width * rolling_std(closes, period)
    return middle + offset if kind == "upper" else middle - offset


class SeriesIndicators:
    """Indicators over the backtest's series, each computed once and shared."""

    def __init__(self, series: dict[str, BarSeries], cursors: dict[str, Cursor], closes: dict[str, FloatArray]) -> None:
        self._series, self._cursors, self._closes = series, cursors, closes
        self._cache: dict[tuple[str, str, int, float], list[float]] = {}

    def _check(self, symbol: str, period: int) -> None:
        if symbol not in self._series:
            raise StrategyError(f"no bars for {symbol}; the backtest has {', '.join(self._series)}")
        if period < 1:
            raise StrategyError(f"an indicator period must be positive, got {period}")

    def _values(self, kind: str, symbol: str, period: int, width: float = 0.0) -> list[float]:
        key = (kind, symbol, period, width)
        if key not in self._cache:
            series = self._series[symbol]
            self._cache[key] = indicator(kind, series.close, self._closes[symbol], series.places, period, width).tolist()
        return self._cache[key]

    def sma(self, symbol: str, period: int) -> Line:
        """Simple moving average of `symbol`'s closes."""
        self._check(symbol, period)
        return Line(f"sma({period})", self._values("sma", symbol, period), self._cursors[symbol])

    def bollinger(self, symbol: str, period: int, width: float) -> Bands:
        """SMA and the bands `width` population standard deviations around it."""
        self._check(symbol, period)
        cursor = self._cursors[symbol]
        return Bands(
            Line(f"bollinger({period}).middle", self._values("sma", symbol, period), cursor),
            Line(f"bollinger({period},{width}).upper", self._values("upper", symbol, period, width), cursor),
            Line(f"bollinger({period},{width}).lower", self._values("lower", symbol, period, width), cursor),
        )
