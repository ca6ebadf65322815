"""What a strategy reads on paper: bars as they close, history lines and indicators that grow with them.

The paper host appends each closed bar (`LiveMarket.add_bar`) before the strategy's `on_bar`, so a
`Line` here is the same object the backtester hands out (`strategy.api.Line` over a list and a
cursor), only its list grows. Indicators are extended bar by bar with the backtester's arithmetic:
the SMA is the exact integer sum of the closes over the window divided once (correctly rounded, as
`backtest.indicators.sma`), the Bollinger deviation is NumPy's population standard deviation of the
window's float closes (as `backtest.indicators.rolling_std`). Equal bars give equal values in both
hosts, so a crossover is decided the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np

from tradestack.domain.marketdata import Bar
from tradestack.strategy.api import Bands, Cursor, Line, LookaheadError, StrategyError

_PLACES = 10
_SCALE = Decimal(10) ** _PLACES
_UNIT: int = 10_000_000_000  # 10 ** _PLACES
_NAN = float("nan")


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


class LiveHistory:
    """One symbol's closed bars, oldest first, read through its cursor."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.cursor = Cursor()
        self.bars: list[Bar] = []
        self.scaled: list[int] = []  # closes in units of 10^-10, exact
        self.sums: list[int] = [0]  # running sums of `scaled` (sums[i] = scaled[0] + ... + scaled[i-1])
        self._open: list[float] = []
        self._high: list[float] = []
        self._low: list[float] = []
        self._close: list[float] = []
        self._volume: list[float] = []
        self.open = Line("open", self._open, self.cursor)
        self.high = Line("high", self._high, self.cursor)
        self.low = Line("low", self._low, self.cursor)
        self.close = Line("close", self._close, self.cursor)
        self.volume = Line("volume", self._volume, self.cursor)

    def append(self, bar: Bar) -> None:
        scaled = int(bar.close * _SCALE)
        if scaled != bar.close * _SCALE:
            raise StrategyError(f"{bar.symbol}: close {bar.close} has more than {_PLACES} decimal places")
        self.bars.append(bar)
        self.scaled.append(scaled)
        self.sums.append(self.sums[-1] + scaled)
        self._open.append(float(bar.open))
        self._high.append(float(bar.high))
        self._low.append(float(bar.low))
        self._close.append(float(bar.close))
        self._volume.append(float(bar.volume))

    def bar(self, ago: int = 0) -> Bar:
        """The bar `ago` bars back (0: the current one), exact."""
        if ago > 0:
            raise LookaheadError(f"bar({ago}) is {ago} bar(s) in the future; use 0 (now) or a negative offset")
        index = self.cursor.index + ago
        if index < 0:
            raise IndexError(f"bar({ago}) is before the first bar")
        return self.bars[index]


def _sma_at(history: LiveHistory, period: int) -> float:
    count = len(history.scaled)
    if count < period:
        return _NAN
    total: int = history.sums[count] - history.sums[count - period]
    return total / (period * _UNIT)


def _std_at(history: LiveHistory, period: int) -> float:
    closes = history._close
    if len(closes) < period:
        return _NAN
    return float(np.asarray(closes[-period:]).std())


class LiveIndicators:
    """Indicators over the live histories, each value appended when its bar closes (`extend`)."""

    def __init__(self, histories: dict[str, LiveHistory]) -> None:
        self._histories = histories
        self._series: dict[tuple[str, str, int, float], tuple[list[float], Callable[[LiveHistory], float]]] = {}

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
            return existing[0]
        compute: Callable[[LiveHistory], float]
        if kind == "sma":
            compute = lambda h: _sma_at(h, period)  # noqa: E731
        elif kind == "upper":
            compute = lambda h: _sma_at(h, period) + width * _std_at(h, period)  # noqa: E731
        else:
            compute = lambda h: _sma_at(h, period) - width * _std_at(h, period)  # noqa: E731
        history = self._histories[symbol]
        # Declared after bars arrived (a restart warms up from stored bars first): fill in the past, causally.
        values: list[float] = []
        self._series[key] = (values, compute)
        if history.bars:
            replay = LiveHistory(symbol)
            for bar in history.bars:
                replay.append(bar)
                values.append(compute(replay))
        return values

    def extend(self, symbol: str) -> None:
        """Append each indicator's value at `symbol`'s newest bar."""
        history = self._histories[symbol]
        for (of, *_), (values, compute) in self._series.items():
            if of == symbol:
                values.append(compute(history))

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
        return LiveBar(bar.symbol, history.cursor.index, bar.ts, float(bar.close), bar)
