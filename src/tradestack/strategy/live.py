"""What a strategy reads on paper: bars as they close, history lines and indicators that grow with them.

The paper host appends each closed bar (`LiveMarket.add_bar`) before the strategy's `on_bar`, so a
`Line` here is the same object the backtester hands out (`strategy.api.Line` over a list and a
cursor), only its list grows. The history is kept as the backtester keeps it (`BarSeries`): prices
and volumes as exact integers in units of 10^-10, the float lines derived from those integers by
one division each. Indicators are computed by the backtester's own function
(`backtest.indicators.indicator`) over the trailing window at each new bar, so equal bars give equal
values in both hosts and a crossover is decided the same way.

A restarted host is given its stored bars first (`LiveMarket.restore`, with the number of bars that
came before them), so its indicators, bar indexes and first decisions are those of a host that never
stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np

from tradestack.backtest.data import MAX_PLACES
from tradestack.backtest.indicators import indicator
from tradestack.domain.marketdata import Bar
from tradestack.strategy.api import Bands, Cursor, Line, LookaheadError, StrategyError

_PLACES = MAX_PLACES
_SCALE = Decimal(10) ** _PLACES
_UNIT = float(10**_PLACES)
_NAN = float("nan")
_COLUMNS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class LiveBar:
    """The bar that just closed (`strategy.api.BarView`)."""

    symbol: str
    index: int
    ts: datetime
    close: float
    exact: Bar

    def bar(self) -> Bar:
        """The exact bar (Decimal prices)."""
        return self.exact


def _scaled(bar: Bar, name: str) -> int:
    value: Decimal = getattr(bar, name)
    scaled = value * _SCALE
    whole = int(scaled)
    if whole != scaled:
        raise StrategyError(f"{bar.symbol}: {name} {value} has more than {_PLACES} decimal places")
    return whole


class LiveHistory:
    """One symbol's closed bars, oldest first, read through its cursor (exact integer columns, float lines)."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.cursor = Cursor()
        self.offset = 0
        """Bars before the first one held (a restarted host holds a window of its stored bars)."""
        self.bars: list[Bar] = []
        self.scaled: dict[str, list[int]] = {name: [] for name in _COLUMNS}
        """Each column in units of 10^-10, exact."""
        self._floats: dict[str, list[float]] = {name: [] for name in _COLUMNS}
        self.open = Line("open", self._floats["open"], self.cursor)
        self.high = Line("high", self._floats["high"], self.cursor)
        self.low = Line("low", self._floats["low"], self.cursor)
        self.close = Line("close", self._floats["close"], self.cursor)
        self.volume = Line("volume", self._floats["volume"], self.cursor)

    def append(self, bar: Bar) -> None:
        row = {name: _scaled(bar, name) for name in _COLUMNS}
        self.bars.append(bar)
        for name, value in row.items():
            self.scaled[name].append(value)
            self._floats[name].append(value / _UNIT)  # as `BarSeries.floats`: one correctly rounded division

    def bar(self, ago: int = 0) -> Bar:
        """The bar `ago` bars back (0: the current one), exact."""
        if ago > 0:
            raise LookaheadError(f"bar({ago}) is {ago} bar(s) in the future; use 0 (now) or a negative offset")
        index = self.cursor.index + ago
        if index < 0:
            raise IndexError(f"bar({ago}) is before the first bar")
        return self.bars[index]

    def indicator_at(self, count: int, kind: str, period: int, width: float) -> float:
        """An indicator's value at the `count`-th bar held (NaN while fewer than `period` bars lead up to it)."""
        if count < period:
            return _NAN
        window = np.asarray(self.scaled["close"][count - period : count], dtype=np.int64)
        closes = np.asarray(self._floats["close"][count - period : count])
        return float(indicator(kind, window, closes, _PLACES, period, width)[-1])


class LiveIndicators:
    """Indicators over the live histories, each value appended when its bar closes (`extend`)."""

    def __init__(self, histories: dict[str, LiveHistory]) -> None:
        self._histories = histories
        self._series: dict[tuple[str, str, int, float], list[float]] = {}

    def _history(self, symbol: str, period: int) -> LiveHistory:
        history = self._histories.get(symbol)
        if history is None:
            raise StrategyError(f"no bars for {symbol}; this deployment trades {', '.join(self._histories)}")
        if period < 1:
            raise StrategyError(f"an indicator period must be positive, got {period}")
        return history

    def _values(self, symbol: str, kind: str, period: int, width: float = 0.0) -> list[float]:
        key = (symbol, kind, period, width)
        existing = self._series.get(key)
        if existing is not None:
            return existing
        history = self._histories[symbol]
        # Declared after bars arrived (a restart restores its stored bars first): fill in the past, causally.
        values = [history.indicator_at(count, kind, period, width) for count in range(1, len(history.bars) + 1)]
        self._series[key] = values
        return values

    def extend(self, symbol: str) -> None:
        """Append each indicator's value at `symbol`'s newest bar."""
        history = self._histories[symbol]
        count = len(history.bars)
        for (of, kind, period, width), values in self._series.items():
            if of == symbol:
                values.append(history.indicator_at(count, kind, period, width))

    def sma(self, symbol: str, period: int) -> Line:
        """Simple moving average of `symbol`'s closes."""
        history = self._history(symbol, period)
        return Line(f"sma({period})", self._values(symbol, "sma", period), history.cursor)

    def bollinger(self, symbol: str, period: int, width: float) -> Bands:
        """SMA and the bands `width` population standard deviations around it."""
        history = self._history(symbol, period)
        cursor = history.cursor
        return Bands(
            Line(f"bollinger({period}).middle", self._values(symbol, "sma", period), cursor),
            Line(f"bollinger({period},{width}).upper", self._values(symbol, "upper", period, width), cursor),
            Line(f"bollinger({period},{width}).lower", self._values(symbol, "lower", period, width), cursor),
        )


class LiveMarket:
    """The histories and indicators of a deployment's symbols."""

    def __init__(self, symbols: tuple[str, ...]) -> None:
        self.histories = {symbol: LiveHistory(symbol) for symbol in symbols}
        self.indicators = LiveIndicators(self.histories)

    def add_bar(self, bar: Bar) -> LiveBar:
        """Append a closed bar, extend the indicators, move the cursor to it; its view."""
        history = self.histories[bar.symbol]
        history.append(bar)
        self.indicators.extend(bar.symbol)
        history.cursor.index = len(history.bars) - 1
        return LiveBar(bar.symbol, history.offset + history.cursor.index, bar.ts, history.close[0], bar)

    def restore(self, symbol: str, bars: Sequence[Bar], before: int) -> None:
        """Take a restarted host's stored bars of `symbol` (oldest first; `before` older ones not given) as its history.

        Only into an empty history (a retried start does not add them twice).
        """
        history = self.histories[symbol]
        if history.bars:
            return
        history.offset = before
        for bar in bars:
            self.add_bar(bar)
