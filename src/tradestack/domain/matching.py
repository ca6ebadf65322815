"""Paper matching: fill working orders against quotes and trades with fee, slippage and latency models.

The engine is pure and deterministic: one instrument, its models, a seed and a sequence of calls
always give the same events. It keeps its own copy of each working order's progress (remaining
quantity, triggered) and reports what happens as `Fill`, `Triggered` and `Expired` events;
recording them is the caller's job.

Rules, in the order the engine applies them to each order at a market event:

- Eligibility: an order submitted at `ts` takes part only in market events at or after
  `ts + latency`. With zero latency `submit` tries it at once against the last quote.
- Stops trigger when the market reaches the stop: a buy stop when the ask (or a trade price) is at
  or above it, a sell stop when the bid (or a trade price) is at or below it. In the same event a
  triggered stop then matches as a market order and a stop-limit as a limit order.
- Price: a buy trades against the ask of a quote, a sell against the bid; a trade print offers its
  price to both sides. Takers pay slippage, and the price is rounded to the tick against the order.
  A limit buy fills only when the ask is at or below its limit and never above the limit (slippage
  stops at the limit); a limit sell mirrors it. A limit order that found no price on an earlier
  attempt is resting: it fills as maker, without slippage, and a print exactly at its limit fills
  it only with `queue_fill_probability` (its place in the queue, drawn from the seeded generator).
- Quantity: one order takes at most `participation_rate` of the event's size (the touch size of a
  quote, the size of a trade), at least one lot when the size has one, in whole lots, never more
  than its remaining quantity. Orders share an event's size in submission order. What is left
  waits for later events.
- Time in force: ioc and fok orders get one attempt once live (for stops: once triggered); ioc
  then expires its remainder, fok expires unfilled unless the attempt fills it completely. Day
  orders expire at `on_session_close`; gtc orders wait until filled or canceled.
- Sessions: with `hours` (the venue's calendar) nothing matches while the venue is closed: orders
  rest until a market event inside a session.
- Fees: `FeeModel` charged per order on its cumulative filled notional, so the minimum is paid
  once per order and the fees of an order's fills add up to `fee(total notional)`.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right, insort
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING

from tradestack.core.money import plain
from tradestack.domain.frozen import builder, fast_init
from tradestack.domain.instruments import Instrument, Venue, ceil_to_tick, floor_to_tick
from tradestack.domain.marketdata import Quote, Side, Trade
from tradestack.domain.order_kinds import _LIMIT_TYPES, _STOP_TYPES, Liquidity, OrderType, TimeInForce

if TYPE_CHECKING:
    from tradestack.domain.orders import Order

_BASIS_POINTS = Decimal(10_000)
_ZERO = Decimal(0)
_NO_OFFSET = timedelta(0)


def _is_non_negative(value: object) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and value >= 0


def _is_positive(value: object) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and value > 0


def _is_utc(ts: datetime) -> bool:
    return ts.tzinfo is UTC or (ts.tzinfo is not None and ts.utcoffset() == _NO_OFFSET)


def _non_negative(name: str, value: Decimal) -> None:
    if not _is_non_negative(value):
        raise ValueError(f"{name} must be a non-negative finite Decimal, got {value!r}")


def _positive(name: str, value: Decimal) -> None:
    if not _is_positive(value):
        raise ValueError(f"{name} must be a positive finite Decimal, got {value!r}")


def _require_utc(name: str, ts: datetime) -> None:
    if not _is_utc(ts):
        raise ValueError(f"{name} must be a timezone-aware UTC datetime, got {ts!r}")


_MINOR_UNITS = tuple(Decimal(1).scaleb(-places) for places in range(19))
"""1, 0.1, ... 1E-18: what a fee is rounded to, by `FeeModel.places`."""


@dataclass(frozen=True, slots=True)
class FeeModel:
    """Commission of `bps` basis points of the notional, at least `minimum` per order (quote currency).

    With `places` (the quote currency's minor unit: 2 for USD, 0 for JPY, 8 for crypto) the fee is
    rounded half-even to it, so every fee an order pays is a whole number of cents; an order's
    fills still add up to `fee(total notional)`. Per-venue fee schedules are a mapping of venue to
    `FeeModel`, kept by the caller.
    """

    bps: Decimal
    minimum: Decimal = _ZERO
    places: int | None = None

    def __post_init__(self) -> None:
        _non_negative("fee bps", self.bps)
        _non_negative("fee minimum", self.minimum)
        if self.places is not None and not 0 <= self.places <= 18:
            raise ValueError(f"fee places must be between 0 and 18, got {self.places}")

    def fee(self, notional: Decimal) -> Decimal:
        """The fee on `notional`: `bps` of it, at least `minimum`, in `places`; nothing on a zero notional."""
        if notional <= _ZERO:
            return _ZERO
        places = self.places
        if places is None:
            return max(notional * self.bps / _BASIS_POINTS, self.minimum)
        # `notional * bps / 10_000` in value (the same product, rounded alike, scaled exactly by a power of ten), in
        # other digits perhaps, which the rounding to `places` makes the same; a multiplication costs half a division
        fee = notional * _fee_rate(self.bps)
        if fee < self.minimum:
            fee = self.minimum
        return fee.quantize(_MINOR_UNITS[places], rounding=ROUND_HALF_EVEN)


@lru_cache(maxsize=64)
def _fee_rate(bps: Decimal) -> Decimal:
    """`bps` basis points as a fraction, worked out once per rate (`FeeModel.fee` multiplies by it)."""
    return bps / _BASIS_POINTS


@dataclass(frozen=True, slots=True)
class SlippageModel:
    """Takers trade `bps` basis points beyond the touch: buys above the ask, sells below the bid."""

    bps: Decimal

    def __post_init__(self) -> None:
        _non_negative("slippage bps", self.bps)
        if self.bps >= _BASIS_POINTS:
            raise ValueError(f"slippage bps must be below {_BASIS_POINTS}, got {self.bps}")

    def price(self, side: Side, touch: Decimal, tick: Decimal) -> Decimal:
        """The price a taker on `side` gets at `touch`, rounded to `tick` against the taker."""
        above, below = _slippage_factors(self.bps)
        if side is _SIDE_BUY:
            return ceil_to_tick(touch * above, tick)
        return floor_to_tick(touch * below, tick)


@lru_cache(maxsize=64)
def _slippage_factors(bps: Decimal) -> tuple[Decimal, Decimal]:
    """1 + `bps` and 1 - `bps` basis points, worked out once per rate (`SlippageModel.price` multiplies by them).

    Equal rates written differently share an entry: the product is rounded to the tick, so its exponent never shows."""
    return 1 + bps / _BASIS_POINTS, 1 - bps / _BASIS_POINTS


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Orders reach the market `seconds` after they are submitted."""

    seconds: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.seconds, bool) or not math.isfinite(self.seconds) or self.seconds < 0:
            raise ValueError(f"latency must be a non-negative finite number of seconds, got {self.seconds!r}")

    def eligible_at(self, submitted: datetime) -> datetime:
        """When an order submitted at `submitted` can first match."""
        return submitted + timedelta(seconds=self.seconds) if self.seconds else submitted


@fast_init
@dataclass(frozen=True, slots=True)
class WorkingOrder:
    """An accepted order handed to the engine; prices in the quote currency, quantities in units.

    `remaining` is what is still to fill (equal to `quantity` for a new order). `limit_price` is
    required for limit and stop-limit orders and `stop_price` for stop and stop-limit orders; the
    other order types must leave them None. `triggered` marks a stop that already triggered.
    An order rebuilt after a restart carries what it has already done: `fills` made so far (the
    next fill id continues from it), their `filled_notional` and the `fees_paid` on them (the fee
    minimum is not charged twice).
    """

    order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    remaining: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    time_in_force: TimeInForce
    triggered: bool
    submitted_at: datetime
    fills: int = 0
    filled_notional: Decimal = _ZERO
    fees_paid: Decimal = _ZERO

    def __post_init__(self) -> None:
        order_type, quantity, remaining, limit, stop = self.type, self.quantity, self.remaining, self.limit_price, self.stop_price
        if (  # the common case, sound: the right types, positive finite amounts, the prices the type takes, UTC
            type(self.side) is Side and type(order_type) is OrderType and type(self.time_in_force) is TimeInForce
            and type(self.order_id) is str and self.order_id
            and type(quantity) is Decimal and quantity.is_finite() and type(remaining) is Decimal and remaining.is_finite()
            and _ZERO < remaining <= quantity  # against a Decimal: an int would be converted at every check
            and (limit is None) is (order_type not in _LIMIT_TYPES) and (stop is None) is (order_type not in _STOP_TYPES)
            and (limit is None or (type(limit) is Decimal and limit.is_finite() and limit > _ZERO))
            and (stop is None or (type(stop) is Decimal and stop.is_finite() and stop > _ZERO))
            and type(self.submitted_at) is datetime and self.submitted_at.tzinfo is UTC
            and type(self.fills) is int and self.fills >= 0
            and (self.filled_notional is _ZERO or (  # a new order's: the default
                type(self.filled_notional) is Decimal and self.filled_notional.is_finite() and self.filled_notional >= _ZERO
            ))
        ):  # fmt: skip
            return
        if type(self.side) is not Side:
            object.__setattr__(self, "side", Side(self.side))
        if type(self.type) is not OrderType:
            object.__setattr__(self, "type", OrderType(self.type))
        if type(self.time_in_force) is not TimeInForce:
            object.__setattr__(self, "time_in_force", TimeInForce(self.time_in_force))
        order_id = self.order_id
        if not order_id:
            raise ValueError("order_id must not be empty")
        if not _is_positive(self.quantity):
            _positive(f"order {order_id}: quantity", self.quantity)
        if not _is_positive(self.remaining):
            _positive(f"order {order_id}: remaining", self.remaining)
        if self.remaining > self.quantity:
            raise ValueError(f"order {order_id}: remaining {self.remaining} exceeds quantity {self.quantity}")
        _check_prices(order_id, self.type, self.limit_price, self.stop_price)
        if not _is_utc(self.submitted_at):
            _require_utc(f"order {order_id}: submitted_at", self.submitted_at)
        if self.fills < 0:
            raise ValueError(f"order {order_id}: fills must not be negative, got {self.fills}")
        if not _is_non_negative(self.filled_notional):
            _non_negative(f"order {order_id}: filled_notional", self.filled_notional)


def _check_prices(order_id: str, order_type: OrderType, limit_price: Decimal | None, stop_price: Decimal | None) -> None:
    """Require exactly the prices `order_type` uses, each positive."""
    for name, price, needed in (
        ("limit_price", limit_price, order_type.needs_limit_price),
        ("stop_price", stop_price, order_type.needs_stop_price),
    ):
        if needed and price is None:
            raise ValueError(f"order {order_id}: a {order_type.value} order needs a {name}")
        if not needed and price is not None:
            raise ValueError(f"order {order_id}: a {order_type.value} order must not carry a {name}")
        if price is not None and not _is_positive(price):
            _positive(f"order {order_id}: {name}", price)


_unchecked_working_order = builder(WorkingOrder, checked=False)


def submitted_working_order(order: Order) -> WorkingOrder:
    """The engine's view of `order` just accepted (nothing filled or replaced, no stop triggered), built unchecked.

    For a producer that holds the `Order` it hands the engine (the backtester, benchmarks/order_path_inprocess.py); the
    engine's other callers (trading, from stored orders) build `WorkingOrder` itself, checked. Sound for any `Order`
    folded from its events: they checked what `WorkingOrder.__post_init__` would. The id is a non-empty string and the
    submit time UTC (`OrderEvent`); the side, type and time in force are members and the amounts finite Decimals
    (`OrderRequest`); the quantity is positive and each price present exactly when the type takes it, and positive
    (`OrderSubmitted`, through `structural_problems`). Whether they are on the instrument's lot and tick is not among
    these: `submit` checks it.
    """
    request = order.request
    quantity = request.quantity
    return _unchecked_working_order(
        order.id, request.symbol, request.side, request.type, quantity, quantity, request.limit_price,
        request.stop_price, request.time_in_force, False, order.created_at, 0, _ZERO, _ZERO,
    )  # fmt: skip


@fast_init
@dataclass(frozen=True, slots=True)
class Fill:
    """Part of an order executed: `quantity` at `price`, paying `fee` (quote currency)."""

    order_id: str
    fill_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    liquidity: Liquidity
    ts: datetime

    @property
    def notional(self) -> Decimal:
        """Quantity times price."""
        return self.quantity * self.price


_new_fill = builder(Fill)
"""`Fill(...)` positionally, without binding the constructor's arguments (Fill has no checks to skip)."""


@fast_init
@dataclass(frozen=True, slots=True)
class Triggered:
    """A stop or stop-limit order's stop price was reached; it now works as a market or limit order."""

    order_id: str
    ts: datetime


@fast_init
@dataclass(frozen=True, slots=True)
class Expired:
    """The order's unfilled remainder left the engine without a cancel; `reason` says why."""

    order_id: str
    reason: str
    ts: datetime


MatchEvent = Fill | Triggered | Expired


_UNFILED = -2
_ALWAYS = -1
_BUY_LIMITS, _SELL_LIMITS, _BUY_STOPS, _SELL_STOPS = range(4)  # the ladders, as `MatchingEngine._ladders` holds them


@dataclass(slots=True)
class _Progress:
    """The engine's mutable view of one working order."""

    order: WorkingOrder
    eligible_at: datetime
    remaining: Decimal
    triggered: bool
    rested: bool = False
    fills: int = 0
    filled_notional: Decimal = _ZERO
    fees: Decimal = _ZERO
    seq: int = 0
    """Submission number: the order in which orders act at one market event."""
    ladder: int = _UNFILED
    """Where it waits: `_ALWAYS` (visited at every market event), the index of its ladder in
    `MatchingEngine._ladders` (at `ladder_price`), or `_UNFILED` (before it is filed, once gone)."""
    ladder_price: Decimal = _ZERO
    working: bool = True

    def snapshot(self) -> WorkingOrder:
        return replace(
            self.order,
            remaining=self.remaining,
            triggered=self.triggered,
            fills=self.fills,
            filled_notional=self.filled_notional,
            fees_paid=self.fees,
        )


_Rung = tuple[Decimal, int, "_Progress"]  # (price, seq, order): seq is unique, so the order is never compared
_price_of = itemgetter(0)
_seq_of = attrgetter("seq")


class _Ladder:
    """Orders that cannot act until the touch reaches their price, sorted by that price.

    `buys`: the orders are buys, reached by the buyers' touch (the ask, or a print). `from_above`:
    the touch reaches prices at or above it (buy limits: an ask at or below the limit; sell stops: a
    bid at or below the stop); else prices at or below it (sell limits, buy stops).
    """

    __slots__ = ("buys", "from_above", "rungs")

    def __init__(self, *, buys: bool, from_above: bool) -> None:
        self.buys = buys
        self.from_above = from_above
        self.rungs: list[_Rung] = []

    def add(self, rung: _Rung) -> None:
        insort(self.rungs, rung)

    def remove(self, rung: _Rung) -> None:
        rungs = self.rungs
        del rungs[bisect_left(rungs, rung)]

    def reached(self, touch: Decimal) -> list[_Progress]:
        """The orders whose price `touch` reaches (the ladder is not empty)."""
        rungs = self.rungs
        if self.from_above:
            if rungs[-1][0] < touch:  # the usual case, the nearest order out of reach: one comparison
                return []
            return [rung[2] for rung in rungs[bisect_left(rungs, touch, key=_price_of) :]]
        if rungs[0][0] > touch:
            return []
        return [rung[2] for rung in rungs[: bisect_right(rungs, touch, key=_price_of)]]


_UNKNOWN = Decimal("NaN")
"""A `_Market` figure not worked out yet (told apart by identity, never compared)."""


@dataclass(slots=True)
class _Market:
    """What one market event offers: a price and a size for buyers and for sellers.

    The takers' prices and the participation caps depend only on the event (and the engine's models), so each is
    worked out once, at the first order that needs it, however many orders the event serves: the quote in force
    serves every order submitted while it lasts (`MatchingEngine._quote_market`)."""

    ts: datetime
    buy_price: Decimal | None
    buy_size: Decimal
    sell_price: Decimal | None
    sell_size: Decimal
    is_trade: bool
    buy_pool: Decimal  # what is left of `buy_size` for the next order (starts equal to it)
    sell_pool: Decimal
    buy_taker: Decimal = _UNKNOWN  # `SlippageModel.price` at `buy_price` (not yet checked positive)
    sell_taker: Decimal = _UNKNOWN
    buy_cap: Decimal = _UNKNOWN  # whole lots one order may take of `buy_size` (`MatchingEngine._cap`)
    sell_cap: Decimal = _UNKNOWN

    def price_for(self, side: Side) -> Decimal | None:
        return self.buy_price if side is _SIDE_BUY else self.sell_price


def _usable(price: Decimal, size: Decimal) -> tuple[Decimal | None, Decimal]:
    return (price, max(size, _ZERO)) if price > _ZERO else (None, _ZERO)


def _from_quote(quote: Quote, ts: datetime) -> _Market:
    # each side as `_usable` reads it, without its call and its tuple (this runs for every order submitted)
    ask, bid, ask_size, bid_size = quote.ask, quote.bid, quote.ask_size, quote.bid_size
    buy_price, sell_price = (ask if ask > _ZERO else None), (bid if bid > _ZERO else None)
    buy_size = _ZERO if buy_price is None or ask_size < _ZERO else ask_size
    sell_size = _ZERO if sell_price is None or bid_size < _ZERO else bid_size
    return _Market(ts, buy_price, buy_size, sell_price, sell_size, False, buy_size, sell_size)


def _from_trade(trade: Trade) -> _Market:
    price, size = _usable(trade.price, trade.size)
    return _Market(trade.ts, price, size, price, size, True, size, size)


class MatchingEngine:
    """Paper matching for one instrument; see the module docstring for the rules.

    `participation_rate` (0 < rate <= 1) is the largest fraction of an event's size one order may
    take. `queue_fill_probability` is the chance that a resting limit order fills on a print at
    exactly its limit. `seed` seeds the only random draw (that queue position).

    A market event costs what the orders it can act on cost, not what the book holds: resting
    limits and untriggered stops wait on price-sorted ladders and are stepped only once the touch
    reaches their price (stepping them earlier would change nothing); the rest are stepped every time.
    """

    def __init__(
        self,
        instrument: Instrument,
        fee: FeeModel,
        slippage: SlippageModel,
        latency: LatencyModel,
        participation_rate: Decimal,
        seed: int,
        *,
        queue_fill_probability: Decimal = Decimal("0.5"),
        hours: Venue | None = None,
    ) -> None:
        _positive("participation_rate", participation_rate)
        if participation_rate > 1:
            raise ValueError(f"participation_rate must be at most 1, got {participation_rate}")
        _non_negative("queue_fill_probability", queue_fill_probability)
        if queue_fill_probability > 1:
            raise ValueError(f"queue_fill_probability must be at most 1, got {queue_fill_probability}")
        self.instrument = instrument
        self.fee = fee
        self.slippage = slippage
        self.latency = latency
        self.participation_rate = participation_rate
        self.queue_fill_probability = queue_fill_probability
        self.hours = hours
        """The venue calendar: while it is closed nothing matches (None: always open, as in backtests)."""
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self._orders: dict[str, _Progress] = {}
        """The working orders, in submission order."""
        self._quote: Quote | None = None
        self._quote_market: _Market | None = None
        """The quote in force as a market event: each order submitted meets it afresh (`_meet_quote`)."""
        # A market event visits only the orders that can act on it: those in `_always` (market
        # orders, triggered stops, limit orders not resting yet, eligible or not) and those of the
        # ladders whose price the touch reaches. The others - untriggered stops short of their stop,
        # resting limits short of their limit - would be stepped without any effect.
        self._always: dict[str, _Progress] = {}
        self._always_sorted = True  # `_always` in submission order (a triggered stop joins it late)
        self._always_last = 0  # the highest seq that joined `_always`
        self._ladders = (  # indexed by _BUY_LIMITS, _SELL_LIMITS, _BUY_STOPS, _SELL_STOPS
            _Ladder(buys=True, from_above=True),
            _Ladder(buys=False, from_above=False),
            _Ladder(buys=True, from_above=False),
            _Ladder(buys=False, from_above=True),
        )
        self._seq = 0

    # -- commands ------------------------------------------------------------------------------

    def submit(self, order: WorkingOrder, ts: datetime) -> list[MatchEvent]:
        """Accept `order` at `ts`; with zero latency, match it at once against the last quote.

        Raises ValueError for an order of another symbol, an order id already working, or a
        quantity or price off the instrument's lot or tick.
        """
        if type(ts) is not datetime or ts.tzinfo is not UTC:
            _require_utc("ts", ts)
        self._check_order(order)
        latency = self.latency
        self._seq += 1
        progress = _Progress(  # every field up to `seq`, positionally (binding keywords costs more than the stores)
            order,
            latency.eligible_at(ts) if latency.seconds else ts,  # what `eligible_at` answers for no latency
            order.remaining,
            order.triggered,
            False,
            order.fills,
            order.filled_notional,
            order.fees_paid,
            self._seq,
        )
        market = self._quote_market
        if market is None or progress.eligible_at > ts or not (self.hours is None or self.hours.is_open(ts)):
            self._orders[order.order_id] = progress
            self._place(progress)
            return []
        market.ts, market.buy_pool, market.sell_pool = ts, market.buy_size, market.sell_size  # the quote, met at `ts`
        events: list[MatchEvent] = []
        self._step(progress, market, events)
        if progress.working:  # filed only now: an order its first attempt finishes (filled, ioc, fok) never is
            self._orders[order.order_id] = progress
            self._place(progress)
        return events

    def cancel(self, order_id: str) -> bool:
        """Stop working `order_id`; False when it is not working (unknown, filled or expired)."""
        progress = self._orders.get(order_id)
        if progress is None:
            return False
        self._remove(progress)
        return True

    # -- market events -------------------------------------------------------------------------

    def on_quote(self, quote: Quote) -> list[MatchEvent]:
        """Match eligible orders against a new top of book."""
        self._check_symbol(quote.symbol)
        self._quote = quote
        self._quote_market = market = _from_quote(quote, quote.ts)
        return self._run(market)

    def on_trade(self, trade: Trade) -> list[MatchEvent]:
        """Match eligible orders against a print; its price is offered to buyers and sellers alike."""
        self._check_symbol(trade.symbol)
        return self._run(_from_trade(trade))

    def on_session_close(self, ts: datetime, order_ids: Collection[str] | None = None) -> list[MatchEvent]:
        """Expire the working day orders (only those in `order_ids`, when given), triggered or not."""
        _require_utc("ts", ts)
        day_orders = [
            p
            for p in self._orders.values()
            if p.order.time_in_force is _TIME_IN_FORCE_DAY and (order_ids is None or p.order.order_id in order_ids)
        ]
        return [self._expire(p, "day order expired at the session close", ts) for p in day_orders]

    def is_open(self, ts: datetime) -> bool:
        """Whether the venue trades at `ts` (always, without `hours`)."""
        return self.hours is None or self.hours.is_open(ts)

    # -- queries -------------------------------------------------------------------------------

    def working_orders(self) -> tuple[WorkingOrder, ...]:
        """Orders still working, in submission order, with their current remaining and triggered."""
        return tuple(p.snapshot() for p in self._orders.values())

    def working_order(self, order_id: str) -> WorkingOrder | None:
        """The working order `order_id` as it stands now, or None when it is not working."""
        progress = self._orders.get(order_id)
        return None if progress is None else progress.snapshot()

    # -- matching ------------------------------------------------------------------------------

    def _run(self, market: _Market) -> list[MatchEvent]:
        if not self.is_open(market.ts):
            return []  # a closed venue matches nothing, whatever the order type or time in force
        if not self._always_sorted:
            self._always = dict(sorted(self._always.items(), key=lambda item: item[1].seq))
            self._always_sorted = True
        candidates = list(self._always.values())
        reached = False
        for ladder in self._ladders:
            if ladder.rungs:
                touch = market.buy_price if ladder.buys else market.sell_price
                if touch is not None and (found := ladder.reached(touch)):
                    candidates += found
                    reached = True
        if reached:
            candidates.sort(key=_seq_of)  # orders share the event's size in submission order
        events: list[MatchEvent] = []
        for progress in candidates:
            if market.ts >= progress.eligible_at:
                rested, triggered = progress.rested, progress.triggered
                self._step(progress, market, events)
                if progress.rested is not rested or progress.triggered is not triggered:
                    self._place(progress)  # where it waits depends on these two (and on working)
        return events

    def _run_all(self, market: _Market) -> list[MatchEvent]:
        """`_run` without the ladders: every working order stepped at every event, as before issue 12.

        The reference `_run` must agree with exactly (tests/unit/domain/test_matching_index.py) and is
        measured against (benchmarks/matching_resting.py); the engine itself never calls it.
        """
        if not self.is_open(market.ts):
            return []
        events: list[MatchEvent] = []
        for progress in list(self._orders.values()):
            if market.ts >= progress.eligible_at:
                self._step(progress, market, events)
        return events

    def _place(self, progress: _Progress) -> None:
        """File a working order where its state says it waits: on a ladder, or among the orders always visited."""
        if not progress.working:
            return
        order = progress.order
        buy = order.side is _SIDE_BUY
        where, price = _ALWAYS, _ZERO
        if order.stop_price is not None and not progress.triggered:
            where, price = (_BUY_STOPS if buy else _SELL_STOPS), order.stop_price
        elif progress.rested and order.limit_price is not None:
            where, price = (_BUY_LIMITS if buy else _SELL_LIMITS), order.limit_price
        if where == progress.ladder:
            return
        self._unplace(progress)
        if where == _ALWAYS:
            self._always[order.order_id] = progress
            if progress.seq > self._always_last:
                self._always_last = progress.seq
            else:
                self._always_sorted = False
        else:
            self._ladders[where].add((price, progress.seq, progress))
            progress.ladder_price = price
        progress.ladder = where

    def _unplace(self, progress: _Progress) -> None:
        where = progress.ladder
        if where == _ALWAYS:
            del self._always[progress.order.order_id]
        elif where != _UNFILED:
            self._ladders[where].remove((progress.ladder_price, progress.seq, progress))
        progress.ladder = _UNFILED

    def _remove(self, progress: _Progress) -> None:
        """The order stops working: filled, expired or canceled."""
        if progress.ladder != _UNFILED:  # filed, so in `_orders` too (`submit` files what its first attempt leaves)
            del self._orders[progress.order.order_id]
            self._unplace(progress)
        progress.working = False

    def _step(self, progress: _Progress, market: _Market, events: list[MatchEvent]) -> None:
        """One matching attempt of one order at one market event; what happens is appended to `events`."""
        order = progress.order
        if order.stop_price is not None and not progress.triggered:
            if not _reaches_stop(order.side, order.stop_price, market):
                return
            progress.triggered = True
            events.append(Triggered(order.order_id, market.ts))
        price = self._fill_price(progress, market)
        quantity = _ZERO if price is None else self._fill_quantity(progress, market)
        if order.time_in_force is _TIME_IN_FORCE_FOK and quantity < progress.remaining:
            events.append(self._expire(progress, self._fok_reason(progress, price, quantity), market.ts))
            return
        if price is not None and quantity > _ZERO:
            events.append(self._fill(progress, market, quantity, price))
        elif price is None and order.limit_price is not None:
            progress.rested = True
        if order.time_in_force is _TIME_IN_FORCE_IOC and progress.remaining > _ZERO:
            reason = f"immediate-or-cancel: {plain(progress.remaining)} of {plain(order.quantity)} not filled"
            events.append(self._expire(progress, reason, market.ts))

    def _fill_price(self, progress: _Progress, market: _Market) -> Decimal | None:
        """The price this order fills at in `market`, or None when it cannot fill there."""
        order = progress.order
        buy = order.side is _SIDE_BUY
        touch = market.buy_price if buy else market.sell_price  # `market.price_for(order.side)`, without the call
        if touch is None:
            return None
        limit = order.limit_price
        if limit is None:  # market, or a triggered stop
            price = market.buy_taker if buy else market.sell_taker  # what `_taker_price` answers once it is known
            if price is _UNKNOWN:
                price = self._taker_price(market, buy, touch)
            return price if price > _ZERO else None
        if (touch > limit) if buy else (touch < limit):
            return None
        if market.is_trade and progress.rested and touch == limit and not self._wins_queue():
            return None
        if progress.rested:
            tick = self.instrument.tick_size
            price = ceil_to_tick(touch, tick) if buy else floor_to_tick(touch, tick)
        else:
            price = self._taker_price(market, buy, touch)
        price = min(price, limit) if buy else max(price, limit)
        return price if price > _ZERO else None

    def _taker_price(self, market: _Market, buy: bool, touch: Decimal) -> Decimal:
        """What a taker on that side gets at `touch`, that side's price in `market`: worked out once per event."""
        if buy:
            price = market.buy_taker
            if price is _UNKNOWN:
                price = market.buy_taker = self.slippage.price(_SIDE_BUY, touch, self.instrument.tick_size)
        else:
            price = market.sell_taker
            if price is _UNKNOWN:
                price = market.sell_taker = self.slippage.price(_SIDE_SELL, touch, self.instrument.tick_size)
        return price

    def _wins_queue(self) -> bool:
        return self._rng.random() < float(self.queue_fill_probability)

    def _fill_quantity(self, progress: _Progress, market: _Market) -> Decimal:
        """Whole lots this order may take now: its participation cap, the size left, its remainder."""
        remaining = progress.remaining
        if progress.order.side is _SIDE_BUY:
            cap = market.buy_cap
            if cap is _UNKNOWN:
                cap = market.buy_cap = self._cap(market.buy_size)
            quantity = min(cap, market.buy_pool, remaining)
        else:
            cap = market.sell_cap
            if cap is _UNKNOWN:
                cap = market.sell_cap = self._cap(market.sell_size)
            quantity = min(cap, market.sell_pool, remaining)
        lot = self.instrument.lot_size
        # `_floor_to_lot` leaves its own result as it is, and a whole number of lots written to the lot's places: the
        # cap is the one, the remainder (on the lot at submission, less whole lots since) the other when so written.
        if quantity is cap or (quantity is remaining and remaining.same_quantum(lot)):
            return quantity
        return _floor_to_lot(quantity, lot)

    def _cap(self, size: Decimal) -> Decimal:
        """The participation cap in whole lots of an event of `size`: at least one lot when the size has one."""
        lot = self.instrument.lot_size
        cap = _floor_to_lot(size * self.participation_rate, lot)
        return lot if cap < lot <= size else cap

    def _fill(self, progress: _Progress, market: _Market, quantity: Decimal, price: Decimal) -> Fill:
        order = progress.order
        if order.side is _SIDE_BUY:  # what it takes of the event's size
            market.buy_pool -= quantity
        else:
            market.sell_pool -= quantity
        progress.remaining -= quantity
        progress.fills += 1
        progress.filled_notional += quantity * price
        fee = self.fee.fee(progress.filled_notional) - progress.fees
        progress.fees += fee
        liquidity = _LIQUIDITY_MAKER if progress.rested and order.type in _LIMIT_TYPES else _LIQUIDITY_TAKER
        if not progress.remaining:
            self._remove(progress)
        return _new_fill(order.order_id, f"{order.order_id}-{progress.fills}", quantity, price, fee, liquidity, market.ts)

    def _expire(self, progress: _Progress, reason: str, ts: datetime) -> Expired:
        if progress.working:
            self._remove(progress)
        return Expired(progress.order.order_id, reason, ts)

    def _fok_reason(self, progress: _Progress, price: Decimal | None, quantity: Decimal) -> str:
        order = progress.order
        if price is None:
            return f"fill-or-kill: no {order.side.value} price within the order's terms"
        return f"fill-or-kill: only {plain(quantity)} of {plain(progress.remaining)} fillable at {price}"

    # -- validation ----------------------------------------------------------------------------

    def _check_symbol(self, symbol: str) -> None:
        if symbol != self.instrument.symbol:
            raise ValueError(f"this engine matches {self.instrument.symbol}, not {symbol}")

    def _check_order(self, order: WorkingOrder) -> None:
        if order.symbol != self.instrument.symbol:
            self._check_symbol(order.symbol)
        if order.order_id in self._orders:
            raise ValueError(f"order {order.order_id} is already working")
        instrument = self.instrument
        lot, tick, limit, stop = instrument.lot_size, instrument.tick_size, order.limit_price, order.stop_price
        if (  # the common case: a new order (remaining = quantity) on the lot, its prices on the tick
            order.remaining == order.quantity and not order.quantity % lot
            and (limit is None or not limit % tick) and (stop is None or not stop % tick)
        ):  # fmt: skip
            return
        for name, quantity in (("quantity", order.quantity), ("remaining", order.remaining)):
            if not instrument.is_quantity_on_lot(quantity):
                raise ValueError(f"order {order.order_id}: {name} {quantity} is not a multiple of the lot {instrument.lot_size}")
        for name, price in (("limit", order.limit_price), ("stop", order.stop_price)):
            if price is not None and not instrument.is_price_on_tick(price):
                raise ValueError(
                    f"order {order.order_id}: {name} price {price} is not a multiple of the tick {instrument.tick_size}"
                )


def _reaches_stop(side: Side, stop: Decimal, market: _Market) -> bool:
    touch = market.price_for(side)
    if touch is None:
        return False
    return touch >= stop if side is _SIDE_BUY else touch <= stop


def _floor_to_lot(quantity: Decimal, lot: Decimal) -> Decimal:
    if quantity <= _ZERO:
        return _ZERO
    return (quantity / lot).to_integral_value(rounding=ROUND_FLOOR) * lot


# Enum members as module constants: a member looked up on its class goes through EnumType's attribute
# hook on every use (about 80 ns in 3.11), a module global does not; the hot paths above use these.
_LIQUIDITY_MAKER = Liquidity.MAKER
_LIQUIDITY_TAKER = Liquidity.TAKER
_SIDE_BUY = Side.BUY
_SIDE_SELL = Side.SELL
_TIME_IN_FORCE_DAY = TimeInForce.DAY
_TIME_IN_FORCE_FOK = TimeInForce.FOK
_TIME_IN_FORCE_IOC = TimeInForce.IOC
