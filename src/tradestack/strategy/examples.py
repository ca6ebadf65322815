"""Built-in example strategies and the registry the command line picks them from.

* `SmaCross`: long `quantity` units when the fast SMA of the closes crosses above the slow one,
  flat again when it crosses below (market orders, long only).
* `BollingerReversion`: long `quantity` units when the close falls below the lower band, flat when
  it gets back to the middle band (market orders, long only).

Both decide at a bar's close and send market orders; when they fill is the host's fill rule.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, get_type_hints

from tradestack.domain.orders import OrderSide
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
            ctx.submit(symbol, OrderSide.BUY, self.quantity)
        elif not now_above and held > 0:
            ctx.submit(symbol, OrderSide.SELL, held)


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
            ctx.submit(bar.symbol, OrderSide.BUY, self.quantity)
        elif held > 0 and bar.close >= bands.middle[0]:
            ctx.submit(bar.symbol, OrderSide.SELL, held)


class ParameterError(StrategyError):
    """One named parameter is unknown or not of its type."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


STRATEGIES: Mapping[str, type[Strategy]] = {cls.name: cls for cls in (SmaCross, BollingerReversion)}
"""The built-in strategies by name."""


def build(name: str, symbols: Sequence[str], params: Mapping[str, str]) -> Strategy:
    """The strategy `name` on `symbols` with parameters given as text (``fast=10``), typed by its constructor.

    `StrategyError` naming the strategy, the parameter and the accepted ones when anything is wrong
    (`ParameterError`, carrying the parameter's name, when one parameter is unknown or of the wrong type).
    """
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise StrategyError(f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}") from None
    hints = get_type_hints(cls.__init__)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "symbols")]
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
    return cls(symbols, **values)
