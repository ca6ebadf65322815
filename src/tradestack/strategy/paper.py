"""The paper host: one deployed strategy object, its `StrategyContext` on the live platform.

A strategy's hooks are plain (synchronous) calls, as in the backtester; the host runs them on a
worker thread and `submit`/`cancel` cross over to the event loop through an `OrderPort`, which goes
through the trading service exactly as ``POST /api/orders`` does (risk checks, the engine, the books).

What the strategy holds is never kept anywhere but in its orders: before each event the host is
given the deployment's orders and their fills (`sync`), and rebuilds its positions (the fold of its
own fills, so a manual trade on the same account is not the strategy's) and open orders from them;
cash is the account's. New fills and order changes found by `sync` are delivered as `on_fill` and
`on_order_update` before the event itself.

Client order ids are deterministic: ``{prefix}{event key}.{n}``, the n-th order sent while handling
one event, the key naming the event (a bar by its start time, a quote by its time). A host restarted
after a crash that handles the same event again sends the same ids, and order entry answers them
with the orders already stored instead of new ones.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from tradestack.core.clock import Clock
from tradestack.domain.marketdata import Bar, Quote, Side
from tradestack.domain.orders import FillEvent, Order, OrderType, TimeInForce
from tradestack.domain.portfolio import PositionState
from tradestack.strategy.api import Strategy, StrategyError
from tradestack.strategy.live import LiveBar, LiveHistory, LiveIndicators, LiveMarket

_ZERO = Decimal(0)


class OrderPort(Protocol):
    """Where the host's orders go (called from the strategy's thread; blocks until answered)."""

    def submit(
        self,
        client_order_id: str,
        symbol: str,
        side: Side,
        quantity: Decimal,
        type: OrderType,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        time_in_force: TimeInForce,
    ) -> Order:
        """Submit through order entry; the order as decided (accepted or denied). Raises for invalid terms."""
        ...

    def cancel(self, order_id: str) -> bool:
        """Cancel a working order; False when it is not working any more."""
        ...


def event_key_of_bar(bar: Bar) -> str:
    """The key of a closed bar: its start, in whole seconds since the epoch."""
    return f"b{int(bar.ts.timestamp())}"


def event_key_of_quote(quote: Quote) -> str:
    """The key of a quote: its time, in microseconds since the epoch."""
    return f"q{int(quote.ts.timestamp() * 1_000_000)}"


def event_key_of_update(order: Order) -> str:
    """The key of an order update: the order and its version."""
    return f"u{zlib.crc32(order.id.encode()):08x}v{order.version}"


class PaperHost:
    """A strategy's `StrategyContext` on paper (see the module docstring)."""

    def __init__(
        self, strategy: Strategy, *, prefix: str, port: OrderPort, clock: Clock, base_currency: str, account_id: str
    ) -> None:
        self.strategy = strategy
        self.prefix = prefix
        self.account_id = account_id
        self._port = port
        self._clock = clock
        self._base = base_currency
        self.market = LiveMarket(strategy.symbols)
        self._orders: dict[str, Order] = {}
        self._fill_ids: set[str] = set()
        self._positions: dict[str, PositionState] = {}
        self._cash = _ZERO
        self._event = "start"
        self._sent_in_event = 0
        self.started = False

    # -- StrategyContext -------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def now(self) -> datetime:
        return self._clock.now()

    @property
    def base_currency(self) -> str:
        return self._base

    @property
    def cash(self) -> Decimal:
        return self._cash

    @property
    def positions(self) -> Mapping[str, Decimal]:
        return {s: p.quantity for s, p in self._positions.items() if p.quantity}

    def position(self, symbol: str) -> Decimal:
        held = self._positions.get(symbol)
        return held.quantity if held is not None else _ZERO

    def open_orders(self, symbol: str | None = None) -> tuple[Order, ...]:
        return tuple(o for o in self._orders.values() if o.status.is_open and (symbol is None or o.request.symbol == symbol))

    def history(self, symbol: str) -> LiveHistory:
        history = self.market.histories.get(symbol)
        if history is None:
            raise StrategyError(f"no bars for {symbol}; this deployment trades {', '.join(self.market.histories)}")
        return history

    @property
    def indicators(self) -> LiveIndicators:
        return self.market.indicators

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
        if symbol not in self.market.histories:
            raise StrategyError(f"{self.strategy.name} may only trade {', '.join(self.market.histories)}, not {symbol}")
        self._sent_in_event += 1
        client_order_id = f"{self.prefix}{self._event}.{self._sent_in_event}"
        order = self._port.submit(client_order_id, symbol, side, quantity, type, limit_price, stop_price, time_in_force)
        self._orders[order.id] = order
        return order

    def cancel(self, order_id: str) -> bool:
        order = self._orders.get(order_id)
        if order is None or not order.status.is_open:
            return False
        return self._port.cancel(order_id)

    # -- driven by the runner ----------------------------------------------------------------------

    def sync(self, orders: Sequence[tuple[Order, list[FillEvent]]], cash: Decimal, *, notify: bool = True) -> None:
        """Take the deployment's orders and fills as stored; deliver what is new to the strategy (`notify`)."""
        self._cash = cash
        updates: list[tuple[Order, FillEvent | None]] = []
        for order, fills in orders:
            before = self._orders.get(order.id)
            self._orders[order.id] = order
            for fill in sorted(fills, key=lambda one: (one.ts, one.fill_id)):
                if fill.fill_id in self._fill_ids:
                    continue
                self._fill_ids.add(fill.fill_id)
                symbol = order.request.symbol
                held = self._positions.get(symbol) or PositionState(symbol)
                self._positions[symbol] = held.apply_fill(order.request.side.value, fill.quantity, fill.price)[0]
                updates.append((order, fill))
            changed = before is not None and before.version != order.version
            if changed and not any(o is order for o, _ in updates):
                updates.append((order, None))
        if notify and self.started:
            for updated, new_fill in updates:
                self._in_event(event_key_of_update(updated))
                if new_fill is not None:
                    self.strategy.on_fill(self, updated, new_fill)
                self.strategy.on_order_update(self, updated)

    def start(self) -> None:
        """`on_start` (declare indicators)."""
        self._in_event("start")
        self.strategy.on_start(self)
        self.started = True

    def stop(self) -> None:
        """`on_stop`."""
        self._in_event("stop")
        self.strategy.on_stop(self)

    def add_bar(self, bar: Bar) -> LiveBar:
        """Append a closed bar to the history without telling the strategy (warm-up, or while trading is halted)."""
        return self.market.add_bar(bar)

    def on_bar(self, bar: Bar) -> None:
        """Append a closed bar and hand it to the strategy."""
        view = self.market.add_bar(bar)
        self._in_event(event_key_of_bar(bar))
        self.strategy.on_bar(self, view)

    def on_quote(self, quote: Quote) -> None:
        self._in_event(event_key_of_quote(quote))
        self.strategy.on_quote(self, quote)

    @property
    def wants_quotes(self) -> bool:
        """Whether the strategy overrides `on_quote` (otherwise quotes only build bars)."""
        return type(self.strategy).on_quote is not Strategy.on_quote

    def _in_event(self, key: str) -> None:
        self._event = key
        self._sent_in_event = 0

    # -- status ------------------------------------------------------------------------------------

    @property
    def orders(self) -> tuple[Order, ...]:
        return tuple(self._orders.values())
