"""Built-in example strategies and the registry the command line picks them from.

* `SmaCross`: long `quantity` units when the fast SMA of the closes crosses above the slow one,
  flat again when it crosses below (market orders, long only).
* `BollingerReversion`: long `quantity` units when the close falls below the lower band, flat when
  it gets back to the middle band (market orders, long only).

* `TopKRebalancer`: every `every` bars, long the `k` symbols the promoted alpha model scores highest
  and short the `k` it scores lowest, `gross` of the equity split equally among them (whole lots),
  everything else flat. Its scores come from the host as a `ScoreTable` (the backtest command reads
  the promoted model's scores of every day; a day's score uses bars up to that day's close only).

All decide at a bar's close and send market orders; when they fill is the host's fill rule.
"""

from __future__ import annotations

import bisect
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, get_type_hints

from tradestack.domain.marketdata import Side
from tradestack.strategy.api import Bands, BarView, Line, Strategy, StrategyContext, StrategyError


class SmaCross(Strategy):
    """Long on a fast-over-slow SMA crossover of the closes, flat on the cross back down."""

    name = "sma_cross"

    def __init__(self, symbols: Sequence[str], fast: int = 10, slow: int = 30, quantity: Decimal = Decimal(100)) -> None:
        super().__init__(symbols)
        if not 0 < fast < slow:
            raise StrategyError(f"sma_cross needs 0 < fast < slow, got fast={fast} slow={slow}")
        if quantity <= 0:
            raise StrategyError(f"sma_cross quantity must be positive, got {quantity}")
        self.fast_period, self.slow_period, self.quantity = fast, slow, quantity
        self._fast: dict[str, Line] = {}
        self._slow: dict[str, Line] = {}

    def on_start(self, ctx: StrategyContext) -> None:
        for symbol in self.symbols:
            self._fast[symbol] = ctx.indicators.sma(symbol, self.fast_period)
            self._slow[symbol] = ctx.indicators.sma(symbol, self.slow_period)

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        symbol = bar.symbol
        if bar.index < self.slow_period:  # the slow SMA needs `slow` bars, the cross one more
            return
        fast, slow = self._fast[symbol], self._slow[symbol]
        now_above = fast[0] > slow[0]
        before_above = fast[-1] > slow[-1]
        if now_above == before_above or ctx.open_orders(symbol):
            return
        held = ctx.position(symbol)
        if now_above and held == 0:
            ctx.submit(symbol, Side.BUY, self.quantity)
        elif not now_above and held > 0:
            ctx.submit(symbol, Side.SELL, held)


class BollingerReversion(Strategy):
    """Buy below the lower Bollinger band, sell back at the middle band."""

    name = "bollinger"

    def __init__(self, symbols: Sequence[str], period: int = 20, width: float = 2.0, quantity: Decimal = Decimal(100)) -> None:
        super().__init__(symbols)
        if period < 2 or width <= 0:
            raise StrategyError(f"bollinger needs period >= 2 and width > 0, got period={period} width={width}")
        if quantity <= 0:
            raise StrategyError(f"bollinger quantity must be positive, got {quantity}")
        self.period, self.width, self.quantity = period, width, quantity
        self._bands: dict[str, Bands] = {}

    def on_start(self, ctx: StrategyContext) -> None:
        for symbol in self.symbols:
            self._bands[symbol] = ctx.indicators.bollinger(symbol, self.period, self.width)

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        bands = self._bands[bar.symbol]
        if not bands.middle.ready() or ctx.open_orders(bar.symbol):
            return
        held = ctx.position(bar.symbol)
        if held == 0 and bar.close < bands.lower[0]:
            ctx.submit(bar.symbol, Side.BUY, self.quantity)
        elif held > 0 and bar.close >= bands.middle[0]:
            ctx.submit(bar.symbol, Side.SELL, held)


@dataclass(frozen=True, slots=True)
class ScoreTable:
    """A model's scores per day: `rows[i]` maps each scored symbol to its score on `days[i]` (ascending days).

    A day's scores use the bars up to that day's close, so `at(when)` gives those of the last day
    on or before `when`'s date and never a later day's.
    """

    model_version: str
    days: tuple[date, ...]
    rows: tuple[Mapping[str, float], ...]

    def __post_init__(self) -> None:
        if len(self.days) != len(self.rows):
            raise ValueError(f"{len(self.days)} days but {len(self.rows)} rows of scores")
        if any(a >= b for a, b in zip(self.days, self.days[1:], strict=False)):
            raise ValueError("score days must be strictly ascending")

    def at(self, when: datetime) -> Mapping[str, float]:
        """The scores known at `when`: those of the last day on or before its date (empty before the first)."""
        index = bisect.bisect_right(self.days, when.date()) - 1
        return self.rows[index] if index >= 0 else {}


class TopKRebalancer(Strategy):
    """Long the top `k`, short the bottom `k` of the alpha model's ranking, rebalanced every `every` bars."""

    name = "top_k"
    needs_scores = True
    sells_short = True

    def __init__(
        self,
        symbols: Sequence[str],
        k: int = 1,
        every: int = 5,
        gross: Decimal = Decimal("0.8"),
        scores: ScoreTable | None = None,
    ) -> None:
        super().__init__(symbols)
        if scores is None:
            raise StrategyError("top_k needs the promoted alpha model's scores (the host reads them)")
        if k < 1 or 2 * k > len(self.symbols):
            raise StrategyError(f"top_k needs 1 <= k and 2k <= the {len(self.symbols)} symbols, got k={k}")
        if every < 1:
            raise StrategyError(f"top_k rebalances every >= 1 bars, got every={every}")
        if not 0 < gross <= 2:
            raise StrategyError(f"top_k gross exposure must be in (0, 2] of the equity, got gross={gross}")
        self.k, self.every, self.gross, self.scores = k, every, gross, scores
        self._times = 0
        self.rebalances = 0

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        if bar.symbol != self.symbols[-1]:  # once per time, after every symbol's bar of that time
            return
        self._times += 1
        if (self._times - 1) % self.every:
            return
        now = bar.ts
        today = {s: ctx.history(s).bar() for s in self.symbols if len(ctx.history(s).close)}
        fresh = {s: b for s, b in today.items() if b.ts == now}  # a symbol without a bar now is left as it is
        scores = self.scores.at(now)
        ranked = sorted((s for s in fresh if s in scores), key=lambda s: (-scores[s], s))
        if len(ranked) < 2 * self.k:
            return
        equity = ctx.cash + sum((q * today[s].close for s, q in ctx.positions.items() if s in today), Decimal(0))
        budget = equity * self.gross / (2 * self.k)
        targets = {s: Decimal(0) for s in fresh}
        for symbol in ranked[: self.k]:
            targets[symbol] = (budget / fresh[symbol].close).to_integral_value(ROUND_FLOOR)
        for symbol in ranked[-self.k :]:
            targets[symbol] = -(budget / fresh[symbol].close).to_integral_value(ROUND_FLOOR)
        changes = {s: t - ctx.position(s) for s, t in targets.items() if t != ctx.position(s) and not ctx.open_orders(s)}
        for symbol, change in sorted(changes.items(), key=lambda item: item[1]):  # sells first: they free the cash
            ctx.submit(symbol, Side.SELL if change < 0 else Side.BUY, abs(change))
        self.rebalances += 1


class ParameterError(StrategyError):
    """One named parameter is unknown or not of its type."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


STRATEGIES: Mapping[str, type[Strategy]] = {cls.name: cls for cls in (SmaCross, BollingerReversion, TopKRebalancer)}
"""The built-in strategies by name."""

_HOST_SUPPLIED = ("self", "symbols", "scores")


def build(name: str, symbols: Sequence[str], params: Mapping[str, str], *, scores: ScoreTable | None = None) -> Strategy:
    """The strategy `name` on `symbols` with parameters given as text (``fast=10``), typed by its constructor.

    `scores` is handed to a strategy that reads a model's scores (`needs_scores`). `StrategyError`
    naming the strategy, the parameter and the accepted ones when anything is wrong (`ParameterError`,
    carrying the parameter's name, when one parameter is unknown or of the wrong type).
    """
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise StrategyError(f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}") from None
    hints = get_type_hints(cls.__init__)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in _HOST_SUPPLIED]
    values: dict[str, Any] = {}
    for key, text in params.items():
        if key not in accepted:
            raise ParameterError(key, f"{name} has no parameter {key!r}; its parameters are {', '.join(accepted)}")
        kind = hints[key]
        try:
            values[key] = Decimal(text) if kind is Decimal else kind(text)
        except (ValueError, InvalidOperation):
            raise ParameterError(key, f"{name} parameter {key}={text!r} is not a valid {kind.__name__}") from None
        if kind in (Decimal, float) and not Decimal(str(values[key])).is_finite():
            raise ParameterError(key, f"{name} parameter {key}={text!r} must be a finite number")
    if needs_scores(cls):
        values["scores"] = scores
    return cls(symbols, **values)


def needs_scores(strategy: type[Strategy] | str) -> bool:
    """Whether the strategy (class or name) reads a model's scores, which its host must supply."""
    cls = STRATEGIES.get(strategy) if isinstance(strategy, str) else strategy
    return bool(getattr(cls, "needs_scores", False))
