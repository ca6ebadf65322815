"""The strategy API: what a strategy implements and what its host offers it.

A strategy is a `Strategy` subclass. Its host (the backtester; later the paper and live runners)
calls, in this order:

* `on_start(ctx)` once, before the first market event: declare indicators here;
* `on_bar(ctx, bar)` when a bar of a subscribed symbol closes (`on_quote(ctx, quote)` for quotes);
* `on_order_update(ctx, order)` whenever one of its orders changes (accepted, denied, filled,
  canceled, expired), after `on_fill(ctx, fill)` for a fill;
* `on_stop(ctx)` once, after the last event.

Everything a strategy knows comes through the `StrategyContext`: the clock, its cash, positions and
open orders (from the books, in the account's base currency), the history of each symbol and the
indicators, and `submit`/`cancel`. Orders are the domain's `Order` folded from its events, fills are
the domain's `FillEvent`s: a strategy reads the same values as the rest of the platform.

No future data: a `Line` is a series seen from the current bar. ``line[0]`` is the value at the bar
being handled, ``line[-1]`` the one before; ``line[1]`` (the next bar) raises `LookaheadError`, and
`window` only returns values up to now. The host moves the cursor; a strategy cannot. (Python has no
private attributes: a strategy that digs into a Line's internals is not stopped, only the API is
guarded, and the backtester's tests check that decisions never change when future bars are cut off.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from tradestack.core.clock import Clock
from tradestack.domain.marketdata import Bar, Quote, Side
from tradestack.domain.orders import FillEvent, Order, OrderType, TimeInForce


class LookaheadError(IndexError):
    """A strategy asked for a value after the current bar."""


class StrategyError(ValueError):
    """A strategy or its parameters are unusable; the message says what to change."""


class Cursor:
    """Which bar of a series is "now". Only the host moves it, one bar at a time."""

    __slots__ = ("index",)

    def __init__(self) -> None:
        self.index = -1


class Line:
    """A series of floats seen from the cursor's bar: ``line[0]`` now, ``line[-n]`` n bars ago.

    ``line[n]`` with n > 0 raises `LookaheadError`; before the series starts it raises IndexError.
    A value may be NaN while an indicator is warming up (see `ready`).
    """

    __slots__ = ("_cursor", "_name", "_values")

    def __init__(self, name: str, values: Sequence[float], cursor: Cursor) -> None:
        self._name = name
        self._values = values
        self._cursor = cursor

    @property
    def name(self) -> str:
        """What the line is (``close``, ``sma(10)``)."""
        return self._name

    def __getitem__(self, ago: int) -> float:
        if ago > 0:
            raise LookaheadError(f"{self._name}[{ago}] is {ago} bar(s) in the future; use 0 (now) or a negative offset")
        index = self._cursor.index + ago
        if index < 0:
            raise IndexError(f"{self._name}[{ago}] is before the first bar")
        return self._values[index]

    def __len__(self) -> int:
        """Bars seen so far (the current one included)."""
        return self._cursor.index + 1

    def ready(self, ago: int = 0) -> bool:
        """Whether ``line[ago]`` exists and is a number (not NaN while warming up)."""
        if ago > 0:
            raise LookaheadError(f"{self._name}.ready({ago}) asks about the future")
        index = self._cursor.index + ago
        return index >= 0 and self._values[index] == self._values[index]

    def window(self, length: int) -> tuple[float, ...]:
        """The last `length` values up to now, oldest first (fewer at the start of the series); a copy."""
        if length <= 0:
            raise ValueError(f"window length must be positive, got {length}")
        end = self._cursor.index + 1
        return tuple(self._values[max(0, end - length) : end])


@dataclass(frozen=True, slots=True)
class Bands:
    """Bollinger bands: the moving average and the bands `width` standard deviations around it."""

    middle: Line
    upper: Line
    lower: Line


class Indicators(Protocol):
    """Indicators the host computes causally (each value from the bars up to its own)."""

    def sma(self, symbol: str, period: int) -> Line:
        """Simple moving average of the closes over `period` bars (NaN for the first period-1 bars)."""
        ...

    def bollinger(self, symbol: str, period: int, width: float) -> Bands:
        """SMA of the closes and the bands `width` population standard deviations around it."""
        ...


class History(Protocol):
    """One symbol's bars up to now."""

    @property
    def open(self) -> Line: ...

    @property
    def high(self) -> Line: ...

    @property
    def low(self) -> Line: ...

    @property
    def close(self) -> Line: ...

    @property
    def volume(self) -> Line: ...

    def bar(self, ago: int = 0) -> Bar:
        """The bar `ago` bars back (0: the current one), exact (Decimal prices); LookaheadError for ago > 0."""
        ...


class StrategyContext(Protocol):
    """What a strategy sees of the world and can do in it."""

    @property
    def clock(self) -> Clock:
        """The host's clock (simulated in a backtest)."""
        ...

    @property
    def now(self) -> datetime:
        """The clock's current time (UTC)."""
        ...

    @property
    def base_currency(self) -> str:
        """The account's base currency."""
        ...

    @property
    def cash(self) -> Decimal:
        """Cash held, converted into the base currency."""
        ...

    @property
    def positions(self) -> Mapping[str, Decimal]:
        """Signed units held per symbol (absent when flat)."""
        ...

    def position(self, symbol: str) -> Decimal:
        """Signed units of `symbol` held (zero when flat)."""
        ...

    def open_orders(self, symbol: str | None = None) -> tuple[Order, ...]:
        """The strategy's orders that are still working (of `symbol` when given), oldest first."""
        ...

    def history(self, symbol: str) -> History:
        """`symbol`'s bars up to now."""
        ...

    @property
    def indicators(self) -> Indicators:
        """The host's indicator factory (call it from `on_start`)."""
        ...

    def submit(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        *,
        type: OrderType = OrderType.MARKET,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        time_in_force: TimeInForce = TimeInForce.DAY,
    ) -> Order:
        """Send an order; returns it after the risk checks (accepted, or denied with its reason).

        Its client order id is deterministic (strategy name and sequence number), so a restarted
        runner does not send it twice.
        """
        ...

    def cancel(self, order_id: str) -> bool:
        """Cancel a working order; False when it is not working any more."""
        ...


class Strategy:
    """Base class of strategies: override the hooks you need; each default does nothing.

    `name` identifies the strategy (client order ids start with it); `symbols` are the ones it
    trades and receives bars for. Parameters are constructor arguments (`from_params` parses the
    ``k=v`` texts of the command line into them).
    """

    name = "strategy"

    def __init__(self, symbols: Sequence[str]) -> None:
        if not symbols:
            raise StrategyError("a strategy needs at least one symbol")
        self.symbols = tuple(symbols)

    def on_start(self, ctx: StrategyContext) -> None:
        """Before the first event: declare indicators, read parameters."""

    def on_stop(self, ctx: StrategyContext) -> None:
        """After the last event."""

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        """A bar of one of `symbols` closed; `bar` is it (its symbol, time and prices)."""

    def on_quote(self, ctx: StrategyContext, quote: Quote) -> None:
        """A new top of book of one of `symbols`."""

    def on_order_update(self, ctx: StrategyContext, order: Order) -> None:
        """One of this strategy's orders changed (its status, fills or terms)."""

    def on_fill(self, ctx: StrategyContext, order: Order, fill: FillEvent) -> None:
        """One of this strategy's orders was (partly) filled."""


class BarView(Protocol):
    """The bar that just closed: floats for signals, `bar()` for the exact Decimal bar."""

    @property
    def symbol(self) -> str: ...

    @property
    def index(self) -> int:
        """Its position in the symbol's series (0 for the first bar)."""
        ...

    @property
    def ts(self) -> datetime:
        """The start of its interval (UTC)."""
        ...

    @property
    def close(self) -> float: ...

    def bar(self) -> Bar:
        """The exact bar (Decimal prices)."""
        ...
