"""Orders: what a client asks for, the events of an order's life, and the `Order` folded from them.

An order is a log of immutable events (`OrderSubmitted`, `OrderAccepted`, `OrderPartiallyFilled`,
...). `Order.from_events` folds a log and `Order.apply` adds one event, returning a new `Order`;
each step is checked against the one transition table, `TRANSITIONS`, and against the order's
quantities (no overfill, no fill id twice). Anything refused raises `InvalidTransition`.

Money, prices and quantities are Decimals, never floats. The filled quantity, the filled notional
(sum of quantity x price) and the fees are summed exactly, whatever the caller's decimal context.
The average fill price is that exact notional divided by the filled quantity to
`AVERAGE_PRICE_PRECISION` significant digits, rounded half-even: exact whenever the quotient fits
(it always does when every fill has the same price). Decimals held here have at most
`MAX_DECIMAL_DIGITS` digits and an exponent within +/- `MAX_DECIMAL_DIGITS`, which keeps exact
arithmetic bounded.

Timestamps are timezone-aware UTC datetimes passed in with each event; nothing here reads a clock.
Event timestamps are not required to increase: venue clocks and ours disagree by milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation, localcontext
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from tradestack.core.errors import ConflictError
from tradestack.core.money import plain
from tradestack.core.precision import AMOUNT, PRICE
from tradestack.domain.fieldchecks import (
    in_range,
    require_decimal,
    require_member,
    require_positive,
    require_str,
    require_utc,
)
from tradestack.domain.frozen import builder, fast_init
from tradestack.domain.instruments import Instrument, Venue
from tradestack.domain.marketdata import Side
from tradestack.domain.order_kinds import _LIMIT_TYPES, _STOP_TYPES
from tradestack.domain.order_kinds import Liquidity as Liquidity  # re-exported: the order's vocabulary lives there
from tradestack.domain.order_kinds import OrderStatus as OrderStatus
from tradestack.domain.order_kinds import OrderType as OrderType
from tradestack.domain.order_kinds import TimeInForce as TimeInForce
from tradestack.domain.order_terms import nearest_on_step, order_of_type, session_problem, stop_problem
from tradestack.domain.portfolio import _KNOWN_CURRENCIES, _is_currency

if TYPE_CHECKING:
    from tradestack.domain.matching import Fill

AVERAGE_PRICE_PRECISION = 34
"""Significant digits of `Order.average_fill_price` (IEEE decimal128's precision)."""

_ZERO = Decimal(0)
# Sums and products of bounded Decimals are exact at MAX_PREC; nothing divides in this context.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, Inexact])
_AVERAGE = Context(prec=AVERAGE_PRICE_PRECISION, rounding=ROUND_HALF_EVEN, Emax=MAX_EMAX, Emin=MIN_EMIN)
# Tick and lot checks divide bounded values by the step: 100 digits hold any such quotient.
_CHECKS = Context(prec=100, rounding=ROUND_HALF_EVEN, Emax=MAX_EMAX, Emin=MIN_EMIN)
_NO_OFFSET = timedelta(0)


# -- request ------------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRequest:
    """The terms of an order as the client asked for them.

    `limit_price` is set only for limit and stop-limit orders, `stop_price` only for stop and
    stop-limit orders. Construction checks types only (Decimals, enums, strings); whether the terms
    make a valid order is `validate`'s job, which returns the problems instead of raising.
    """

    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY

    def __post_init__(self) -> None:
        if (
            type(self.client_order_id) is str and type(self.account_id) is str and type(self.symbol) is str
            and type(self.side) is Side and type(self.type) is OrderType and type(self.time_in_force) is TimeInForce
        ):  # fmt: skip
            quantity, limit, stop = self.quantity, self.limit_price, self.stop_price
            if (
                type(quantity) is Decimal and quantity.is_finite() and in_range(quantity)
                and (limit is None or (type(limit) is Decimal and limit.is_finite() and in_range(limit)))
                and (stop is None or (type(stop) is Decimal and stop.is_finite() and in_range(stop)))
            ):  # fmt: skip
                return  # what the three checks below pass, without their calls
            require_decimal("quantity", self.quantity)
            require_decimal("limit_price", self.limit_price, optional=True)
            require_decimal("stop_price", self.stop_price, optional=True)
            return
        require_str("client_order_id", self.client_order_id)
        require_str("account_id", self.account_id)
        require_str("symbol", self.symbol)
        require_member("side", self.side, Side)
        require_member("type", self.type, OrderType)
        require_member("time_in_force", self.time_in_force, TimeInForce)
        require_decimal("quantity", self.quantity)
        require_decimal("limit_price", self.limit_price, optional=True)
        require_decimal("stop_price", self.stop_price, optional=True)

    def validate(self, instrument: Instrument) -> list[str]:
        """What is wrong with this request for `instrument`, one sentence per problem; empty when valid.

        Checks the ids, that the instrument is this symbol's and tradable, that every number fits
        where it is stored (`core.precision`), the quantity (positive, whole lots), the prices
        (present exactly when the type needs them, positive, on the tick)
        and the time in force (a market order cannot be gtc).
        """
        quantity, limit, stop, remainder = self.quantity, self.limit_price, self.stop_price, _CHECKS.remainder
        if (  # the common case, sound: every check below passes (each number fits, on the lot and the tick)
            self.symbol == instrument.symbol and instrument.tradable
            and not (self.type is _ORDER_TYPE_MARKET and self.time_in_force is _TIME_IN_FORCE_GTC)
            and AMOUNT.problem(quantity) is None and (limit is None or PRICE.problem(limit) is None)
            and (stop is None or PRICE.problem(stop) is None) and not self.structural_problems()
            and not remainder(quantity, instrument.lot_size)
            and (limit is None or not remainder(limit, instrument.tick_size))
            and (stop is None or not remainder(stop, instrument.tick_size))
        ):  # fmt: skip
            return []
        problems: list[str] = []
        if self.symbol != instrument.symbol:
            problems.append(f"the order is for {self.symbol!r} but the instrument is {instrument.symbol}")
        if not instrument.tradable:
            problems.append(f"{instrument.symbol} is not tradable")
        problems.extend(self.structural_problems())
        for label, value, limits in (
            ("quantity", self.quantity, AMOUNT),
            ("limit_price", self.limit_price, PRICE),
            ("stop_price", self.stop_price, PRICE),
        ):
            problem = None if value is None else limits.problem(value)
            if problem is not None:
                problems.append(f"{label} {problem}")
        with localcontext(_CHECKS):
            if self.quantity > 0 and not instrument.is_quantity_on_lot(self.quantity):
                problems.append(
                    f"quantity {plain(self.quantity)} is not a multiple of the lot size {plain(instrument.lot_size)}; "
                    f"use {nearest_on_step(self.quantity, instrument.lot_size)}"
                )
            for label, price in (("limit price", self.limit_price), ("stop price", self.stop_price)):
                if price is not None and price > 0 and not instrument.is_price_on_tick(price):
                    problems.append(
                        f"{label} {plain(price)} is not a multiple of the tick size {plain(instrument.tick_size)}; "
                        f"use {nearest_on_step(price, instrument.tick_size)}"
                    )
        if self.type is _ORDER_TYPE_MARKET and self.time_in_force is _TIME_IN_FORCE_GTC:
            problems.append("a market order cannot be good-till-canceled (gtc); use day, ioc or fok")
        return problems

    def session_problem(self, hours: Venue, now: datetime) -> str | None:
        """Why this order cannot be taken while `hours` is closed at `now`; None when it can (`order_terms`)."""
        return session_problem(self, hours, now)

    def stop_problem(self, market_price: Decimal) -> str | None:
        """Why the stop price is on the wrong side of `market_price` (it would trigger at once); None when fine."""
        return stop_problem(self, market_price)

    def structural_problems(self) -> list[str]:
        """Problems that make the request meaningless whatever the instrument; empty when none.

        Ids present, quantity positive, each price present exactly when the type needs it and
        positive. `OrderSubmitted` refuses a request with any of these.
        """
        global _sound
        if self is _sound:  # this very (immutable) request was found sound last: `validate`, then `OrderSubmitted`
            return []
        order_type, limit, stop = self.type, self.limit_price, self.stop_price
        if (
            self.quantity > _ZERO and (limit is None or limit > _ZERO) and (stop is None or stop > _ZERO)
            and (limit is not None) is (order_type in _LIMIT_TYPES) and (stop is not None) is (order_type in _STOP_TYPES)
            and not (self.client_order_id.isspace() or self.account_id.isspace() or self.symbol.isspace())
            and self.client_order_id and self.account_id and self.symbol
        ):  # fmt: skip
            _sound = self
            return []  # the common case, sound: the checks below say what is wrong otherwise
        problems: list[str] = []
        for name, value in (("client_order_id", self.client_order_id), ("account_id", self.account_id)):
            if not value.strip():
                problems.append(f"{name} must not be empty")
        if not self.symbol.strip():
            problems.append("symbol must not be empty")
        if self.quantity <= 0:
            problems.append(f"quantity must be positive, got {plain(self.quantity)}")
        for label, price, needed in (
            ("limit price", self.limit_price, self.type.needs_limit_price),
            ("stop price", self.stop_price, self.type.needs_stop_price),
        ):
            if needed and price is None:
                problems.append(f"{order_of_type(self.type)} needs a {label}")
            elif not needed and price is not None:
                problems.append(f"{order_of_type(self.type)} takes no {label}; remove it or change the order type")
            elif price is not None and price <= 0:
                problems.append(f"{label} must be positive, got {plain(price)}")
        return problems

    def amended(
        self, *, quantity: Decimal | None = None, limit_price: Decimal | None = None, stop_price: Decimal | None = None
    ) -> OrderRequest:
        """These terms with the given quantity and prices replaced; None keeps the current value."""
        return replace(
            self,
            quantity=self.quantity if quantity is None else quantity,
            limit_price=self.limit_price if limit_price is None else limit_price,
            stop_price=self.stop_price if stop_price is None else stop_price,
        )

    def to_dict(self) -> dict[str, Any]:
        """The request as JSON-ready data: Decimals as canonical strings, enums as their values.

        Every field in declaration order, spelled out: construction guarantees each one's type (an
        exact enum, a finite Decimal), so no field needs `_encode`'s questions (done for every order, often
        several times: its fingerprint, its first event, its audit detail).
        """
        limit, stop = self.limit_price, self.stop_price
        return {
            "client_order_id": self.client_order_id,
            "account_id": self.account_id,
            "symbol": self.symbol,
            "side": self.side._value_,
            "type": self.type._value_,
            "quantity": plain(self.quantity),
            "limit_price": None if limit is None else plain(limit),
            "stop_price": None if stop is None else plain(stop),
            "time_in_force": self.time_in_force._value_,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrderRequest:
        """The request written by `to_dict`; ValueError naming the field when the data is malformed."""
        from tradestack.domain.order_codec import decode_request

        return decode_request(data)

    def fingerprint(self) -> str:
        """Canonical text of the whole request (sorted-key JSON, canonical Decimals).

        Two requests have the same fingerprint exactly when their terms are equal, however their
        Decimals are written (``10.50`` and ``10.5`` agree): a retried submit with the same
        client_order_id is the same order when the fingerprints match, a conflict otherwise.
        Compare against the submitted terms (`Order.submitted_request`), not the replaced ones.
        """
        return _fingerprint_text(self.to_dict())


_sound: OrderRequest | None = None
"""The request `structural_problems` last found sound. A request is immutable and this holds it (its id cannot be
reused while held), so the same object asked again has the same answer: the submit path asks twice (`validate`,
then `OrderSubmitted`) and the second answer costs an identity test. Any other request is checked in full."""

_fingerprint_text = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
"""``json.dumps(data, sort_keys=True, separators=(",", ":"))`` with the encoder made once, not on every call."""


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderEvent:
    """Something that happened to order `order_id` at `ts` (UTC). Abstract: use a subclass.

    `kind` names the event type in storage (``"filled"``); `to_dict` and `event_from_dict`
    convert to and from JSON-ready data.
    """

    kind: ClassVar[str]

    order_id: str
    ts: datetime

    def __post_init__(self) -> None:
        if getattr(type(self), "kind", None) is None:
            raise TypeError(f"{type(self).__name__} is abstract; build one of {', '.join(sorted(EVENT_TYPES))}")
        if type(self.order_id) is not str or not self.order_id or self.order_id[0].isspace():
            require_str("order_id", self.order_id, non_empty=True)
        ts = self.ts
        if type(ts) is not datetime or ts.tzinfo is not UTC:
            require_utc("ts", ts)
        self._check()

    def _check(self) -> None:
        """Refuse values of the subclass's own fields that cannot have happened."""

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data: its `kind`, Decimals as strings, timestamps in ISO 8601."""
        data: dict[str, Any] = {"kind": self.kind}
        for name in _field_names(type(self)):
            data[name] = _encode(getattr(self, name))
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderSubmitted(OrderEvent):
    """The order was recorded with these terms; always an order's first event."""

    kind: ClassVar[str] = "submitted"

    request: OrderRequest

    def _check(self) -> None:
        if not isinstance(self.request, OrderRequest):
            raise TypeError(f"request must be an OrderRequest, got {self.request!r}")
        problems = self.request.structural_problems()
        if problems:
            raise ValueError(f"order {self.order_id}: cannot submit these terms: {'; '.join(problems)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAccepted(OrderEvent):
    """The order passed the risk checks and is working (at the venue, or in paper matching)."""

    kind: ClassVar[str] = "accepted"


@dataclass(frozen=True, slots=True, kw_only=True)
class _ReasonEvent(OrderEvent):
    """An event that ends the order for a `reason` a person can read. Abstract."""

    reason: str

    def _check(self) -> None:
        require_str("reason", self.reason, non_empty=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderDenied(_ReasonEvent):
    """A pre-trade risk check refused the order before it reached a venue; `reason` says why."""

    kind: ClassVar[str] = "denied"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderTriggered(OrderEvent):
    """The market reached a stop or stop-limit order's stop price; it now works as market or limit."""

    kind: ClassVar[str] = "triggered"


@dataclass(frozen=True, slots=True, kw_only=True)
class FillEvent(OrderEvent):
    """One execution: `quantity` at `price`. Abstract: `OrderPartiallyFilled` or `OrderFilled`.

    `fee` is in `fee_currency`; positive is a cost, negative a rebate. `fill_id` is unique within
    the order.
    """

    fill_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: Liquidity

    def _check(self) -> None:
        fill_id, quantity, price, fee = self.fill_id, self.quantity, self.price, self.fee
        if not (  # the common case: what the checks below pass, without their calls
            type(fill_id) is str and fill_id and not fill_id.isspace()
            and type(quantity) is Decimal and quantity.is_finite() and quantity > 0
            and type(price) is Decimal and price.is_finite() and price > 0
            and type(fee) is Decimal and fee.is_finite()
            and in_range(quantity) and in_range(price) and in_range(fee)
        ):  # fmt: skip
            require_str("fill_id", self.fill_id, non_empty=True)
            require_positive("fill quantity", self.quantity)
            require_positive("fill price", self.price)
            require_decimal("fee", self.fee)
        if not _is_currency(self.fee_currency):
            raise ValueError(f"fee_currency must be 2-10 characters A-Z and 0-9 (such as USD), got {self.fee_currency!r}")
        if type(self.liquidity) is not Liquidity:  # a member passes without the call
            require_member("liquidity", self.liquidity, Liquidity)

    @property
    def notional(self) -> Decimal:
        """quantity x price, exact."""
        return _EXACT.multiply(self.quantity, self.price)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderPartiallyFilled(FillEvent):
    """A fill that leaves part of the order unfilled."""

    kind: ClassVar[str] = "partially_filled"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFilled(FillEvent):
    """The fill that completes the order: the filled quantity reaches the order quantity exactly."""

    kind: ClassVar[str] = "filled"


def fill_event(order: Order, fill: Fill, fee_currency: str) -> FillEvent:
    """The event booking the engine's `fill` on `order`: `OrderFilled` when it fills what remains, else partial."""
    quantity, price, fee, ts, fill_id = fill.quantity, fill.price, fill.fee, fill.ts, fill.fill_id
    filled = quantity == _EXACT.subtract(order.request.quantity, order.filled_quantity)  # `remaining_quantity`
    if (  # The engine's fill: its numbers come from checked orders and quotes (whole lots of what the order has left,
        # a price on the tick, the fee model's fee), so the digit bounds `FillEvent` checks hold; the order id is the
        # order's own. What is left of the check is this: anything else goes through the checking builders.
        type(quantity) is Decimal and type(price) is Decimal and type(fee) is Decimal and quantity.is_finite()
        and price.is_finite() and fee.is_finite() and quantity > 0 and price > 0 and type(ts) is datetime
        and ts.tzinfo is UTC and type(fill_id) is str and fill_id and not fill_id.isspace()
        and type(fee_currency) is str and fee_currency in _KNOWN_CURRENCIES and type(fill.liquidity) is Liquidity
    ):  # fmt: skip
        build = _engine_filled if filled else _engine_partially_filled
    else:
        build = _new_filled if filled else _new_partially_filled
    return build(order.id, ts, fill_id, quantity, price, fee, fee_currency, fill.liquidity)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCanceled(_ReasonEvent):
    """The order stopped working on request (or an ioc remainder was canceled); fills so far stay."""

    kind: ClassVar[str] = "canceled"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderExpired(OrderEvent):
    """The order's time in force ran out; fills so far stay."""

    kind: ClassVar[str] = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderReplaced(OrderEvent):
    """The working order's terms changed; None leaves a term as it was, and at least one changes."""

    kind: ClassVar[str] = "replaced"

    new_quantity: Decimal | None = None
    new_limit_price: Decimal | None = None
    new_stop_price: Decimal | None = None

    def _check(self) -> None:
        values = {
            "new_quantity": self.new_quantity,
            "new_limit_price": self.new_limit_price,
            "new_stop_price": self.new_stop_price,
        }
        if all(value is None for value in values.values()):
            raise ValueError("a replace must change the quantity, the limit price or the stop price")
        for name, value in values.items():
            if value is not None:
                require_positive(name, value)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected(_ReasonEvent):
    """The venue refused the order after it was sent; `reason` is the venue's."""

    kind: ClassVar[str] = "rejected"


EVENT_TYPES: Mapping[str, type[OrderEvent]] = MappingProxyType({
    event_type.kind: event_type
    for event_type in (
        OrderSubmitted, OrderAccepted, OrderDenied, OrderTriggered, OrderPartiallyFilled, OrderFilled, OrderCanceled,
        OrderExpired, OrderReplaced, OrderRejected,
    )
})  # fmt: skip
"""Every concrete event type by its `kind`."""
for _event_type in EVENT_TYPES.values():
    fast_init(_event_type)


# -- serialization ------------------------------------------------------------------------------


_FIELD_NAMES: dict[type[OrderEvent], tuple[str, ...]] = {}


def _field_names(kind: type[OrderEvent]) -> tuple[str, ...]:
    """The names of an event type's fields, in declaration order (`dataclasses.fields` works them out on every call)."""
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(field.name for field in fields(kind))
    return names


def _encode(value: object) -> Any:
    if value is None:
        return None
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, OrderRequest):
        return value.to_dict()
    raise TypeError(f"cannot encode {type(value).__name__} {value!r}")  # pragma: no cover - every field type is above


def event_from_dict(data: Mapping[str, Any]) -> OrderEvent:
    """The event written by `OrderEvent.to_dict`; ValueError naming the problem when it is malformed."""
    from tradestack.domain.order_codec import decode_event

    return decode_event(data)


# -- transitions --------------------------------------------------------------------------------

_S = OrderStatus
TRANSITIONS: Mapping[tuple[OrderStatus | None, type[OrderEvent]], OrderStatus] = MappingProxyType(
    {
        (None, OrderSubmitted): _S.SUBMITTED,
        (_S.SUBMITTED, OrderAccepted): _S.ACCEPTED,
        (_S.SUBMITTED, OrderDenied): _S.DENIED,
        (_S.SUBMITTED, OrderRejected): _S.REJECTED,
        (_S.SUBMITTED, OrderCanceled): _S.CANCELED,
        (_S.ACCEPTED, OrderTriggered): _S.TRIGGERED,  # stop and stop-limit orders only
        (_S.ACCEPTED, OrderPartiallyFilled): _S.PARTIALLY_FILLED,
        (_S.ACCEPTED, OrderFilled): _S.FILLED,
        (_S.ACCEPTED, OrderCanceled): _S.CANCELED,
        (_S.ACCEPTED, OrderExpired): _S.EXPIRED,
        (_S.ACCEPTED, OrderReplaced): _S.ACCEPTED,
        (_S.ACCEPTED, OrderRejected): _S.REJECTED,
        (_S.TRIGGERED, OrderPartiallyFilled): _S.PARTIALLY_FILLED,
        (_S.TRIGGERED, OrderFilled): _S.FILLED,
        (_S.TRIGGERED, OrderCanceled): _S.CANCELED,
        (_S.TRIGGERED, OrderExpired): _S.EXPIRED,
        (_S.TRIGGERED, OrderReplaced): _S.TRIGGERED,  # quantity and limit price only
        (_S.TRIGGERED, OrderRejected): _S.REJECTED,
        (_S.PARTIALLY_FILLED, OrderPartiallyFilled): _S.PARTIALLY_FILLED,
        (_S.PARTIALLY_FILLED, OrderFilled): _S.FILLED,
        (_S.PARTIALLY_FILLED, OrderCanceled): _S.CANCELED,
        (_S.PARTIALLY_FILLED, OrderExpired): _S.EXPIRED,
        (_S.PARTIALLY_FILLED, OrderReplaced): _S.PARTIALLY_FILLED,  # new quantity above the filled quantity
    }
)
"""The status an event moves an order to, by (current status, event type); None is "no events yet".

A pair that is missing is an invalid transition. Terminal statuses have no entries. `Order.apply`
adds the checks a table cannot hold: stop types only trigger, fills never overfill, the last fill
is an `OrderFilled`, a replace keeps the quantity above what is filled.
"""
del _S
_TRANSITION_TABLE: dict[tuple[OrderStatus | None, type[OrderEvent]], OrderStatus] = dict(TRANSITIONS)
"""`TRANSITIONS` as a plain dict, for `Order.apply` (a lookup through the read-only proxy costs a call more)."""


class InvalidTransition(ConflictError, ValueError):  # noqa: N818 - named for what is refused, as callers read it
    """An event that cannot apply to the order in its current state.

    `status` is the order's status (None before its first event) and `event` the refused event.
    """

    def __init__(self, order_id: str, status: OrderStatus | None, event: OrderEvent, detail: str) -> None:
        where = f"order {order_id} has no events yet" if status is None else f"order {order_id} is {status.value}"
        super().__init__(f"{where}: {type(event).__name__} is not allowed ({detail})", order_id=order_id)
        self.order_id = order_id
        self.status = status
        self.event = event


def _allowed_after(status: OrderStatus | None) -> list[str]:
    return [event_type.__name__ for (source, event_type) in TRANSITIONS if source == status]


def _next_status(order_id: str, status: OrderStatus | None, event: OrderEvent) -> OrderStatus:
    target = TRANSITIONS.get((status, type(event)))
    if target is not None:
        return target
    if status is not None and status.is_terminal:
        detail = f"a {status.value} order is final"
    else:
        detail = f"allowed: {', '.join(_allowed_after(status))}"
    raise InvalidTransition(order_id, status, event, detail)


# -- aggregate ----------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """An order as its events made it. Build it with `from_events` and `apply`, never directly.

    `request` holds the current terms (after replaces), `submitted_request` the terms as submitted.
    `filled_notional` is the exact sum of quantity x price over the fills and `fees` the exact sum
    of fees per currency. `version` counts the events applied; `created_at` is the submit time and
    `updated_at` the time of the latest event. `reason` explains a denial, cancel or rejection.
    """

    id: str
    request: OrderRequest
    submitted_request: OrderRequest
    status: OrderStatus
    filled_quantity: Decimal
    filled_notional: Decimal
    fees: Mapping[str, Decimal]
    fill_ids: frozenset[str]
    version: int
    created_at: datetime
    updated_at: datetime
    reason: str | None

    @classmethod
    def from_events(cls, events: Iterable[OrderEvent]) -> Order:
        """Fold an order's events, oldest first; the first must be `OrderSubmitted`.

        Raises ValueError for no events and `InvalidTransition` for an event that cannot apply.
        """
        iterator = iter(events)
        first = next(iterator, None)
        if first is None:
            raise ValueError("an order needs at least its OrderSubmitted event")
        order = cls._submitted(first)
        for event in iterator:
            order = order.apply(event)
        return order

    @classmethod
    def _submitted(cls, event: OrderEvent) -> Order:
        if type(event) is OrderSubmitted and cls is Order:  # the fields in declaration order (see `Order`)
            ts, request = event.ts, event.request
            return _new_order(event.order_id, request, request, _FIRST, _ZERO, _ZERO, _NO_FEES, _NO_FILL_IDS, 1, ts, ts, None)
        status = _TRANSITION_TABLE.get((None, type(event))) or _next_status(event.order_id, None, event)
        if not isinstance(event, OrderSubmitted):  # pragma: no cover - only OrderSubmitted leaves None
            raise TypeError(f"TRANSITIONS lets {type(event).__name__} start an order")
        return cls(
            id=event.order_id, request=event.request, submitted_request=event.request, status=status,
            filled_quantity=_ZERO, filled_notional=_ZERO, fees=MappingProxyType({}), fill_ids=frozenset(),
            version=1, created_at=event.ts, updated_at=event.ts, reason=None,
        )  # fmt: skip

    def apply(self, event: OrderEvent) -> Order:
        """This order with `event` applied, as a new Order; this one is unchanged.

        Raises `InvalidTransition` when the event is for another order, is not in `TRANSITIONS`
        from the current status, or breaks a rule of the order (see `TRANSITIONS`).
        """
        if event.order_id != self.id:
            self._refuse(event, f"the event is for order {event.order_id}")
        kind = type(event)
        status = _TRANSITION_TABLE.get((self.status, kind)) or _next_status(self.id, self.status, event)
        return _TRANSITION_OF[kind](self, event, status)  # every type with an entry in TRANSITIONS has one here

    def _moved(self, event: OrderEvent, status: OrderStatus) -> Order:
        """`apply` of an event that changes only the status (accepted, triggered, expired): the rest copied."""
        return _new_order(  # the fields in declaration order (see `Order`)
            self.id, self.request, self.submitted_request, status, self.filled_quantity, self.filled_notional,
            self.fees, self.fill_ids, self.version + 1, self.created_at, event.ts, self.reason,
        )  # fmt: skip

    def _ended(self, event: _ReasonEvent, status: OrderStatus) -> Order:
        """`apply` of an event with a reason (denied, canceled, rejected)."""
        return _new_order(
            self.id, self.request, self.submitted_request, status, self.filled_quantity, self.filled_notional,
            self.fees, self.fill_ids, self.version + 1, self.created_at, event.ts, event.reason,
        )  # fmt: skip

    def _triggered(self, event: OrderTriggered, status: OrderStatus) -> Order:
        if not self.request.type.needs_stop_price:
            self._refuse(event, f"only stop and stop-limit orders trigger; this is a {self.request.type.value} order")
        return self._moved(event, status)

    def _replaced(self, event: OrderReplaced, status: OrderStatus) -> Order:
        return _new_order(
            self.id, self._replaced_terms(event), self.submitted_request, status, self.filled_quantity,
            self.filled_notional, self.fees, self.fill_ids, self.version + 1, self.created_at, event.ts, self.reason,
        )  # fmt: skip

    def _fill(self, event: FillEvent, status: OrderStatus) -> Order:
        """`apply` of a fill (`apply` dispatched on its exact type): no overfill, no fill id twice, the right kind."""
        fill_id, fill_ids = event.fill_id, self.fill_ids
        if fill_id in fill_ids:
            self._refuse(event, f"fill {fill_id} was already applied")
        quantity = self.request.quantity
        filled = _EXACT.add(self.filled_quantity, event.quantity)
        if filled < quantity:
            if type(event) is OrderFilled:
                left = _EXACT.subtract(quantity, filled)
                self._refuse(event, f"fill {fill_id} leaves {plain(left)} unfilled; report it as OrderPartiallyFilled")
        elif filled > quantity:
            self._refuse(
                event, f"fill {fill_id} of {plain(event.quantity)} would fill {plain(filled)} of {plain(quantity)}: overfill"
            )
        elif type(event) is OrderPartiallyFilled:
            self._refuse(event, f"fill {fill_id} completes the order; report it as OrderFilled")
        notional = _EXACT.add(self.filled_notional, _EXACT.multiply(event.quantity, event.price))
        if self.fees is _NO_FEES and not fill_ids:  # the first fill: no fees to copy, no fill ids to join
            fees: Mapping[str, Decimal] = MappingProxyType({event.fee_currency: _EXACT.add(_ZERO, event.fee)})
            fill_ids = frozenset((fill_id,))
        else:
            # dict() of a proxy goes key by key
            added = self.fees.copy() if type(self.fees) is MappingProxyType else dict(self.fees)
            added[event.fee_currency] = _EXACT.add(added.get(event.fee_currency, _ZERO), event.fee)
            fees, fill_ids = MappingProxyType(added), fill_ids | {fill_id}
        return _new_order(
            self.id, self.request, self.submitted_request, status, filled, notional, fees, fill_ids,
            self.version + 1, self.created_at, event.ts, self.reason,
        )  # fmt: skip

    def _refuse(self, event: OrderEvent, detail: str) -> NoReturn:
        raise InvalidTransition(self.id, self.status, event, detail)

    def _replaced_terms(self, event: OrderReplaced) -> OrderRequest:
        order_type = self.request.type
        if event.new_limit_price is not None and not order_type.needs_limit_price:
            self._refuse(event, f"a {order_type.value} order has no limit price")
        if event.new_stop_price is not None:
            if not order_type.needs_stop_price:
                self._refuse(event, f"a {order_type.value} order has no stop price")
            if self.status is not _ORDER_STATUS_ACCEPTED:
                self._refuse(event, "the stop price cannot change once the order has triggered")
        if event.new_quantity is not None and event.new_quantity <= self.filled_quantity:
            self._refuse(
                event,
                f"new quantity {plain(event.new_quantity)} must be above the filled quantity {plain(self.filled_quantity)}",
            )
        return self.request.amended(
            quantity=event.new_quantity, limit_price=event.new_limit_price, stop_price=event.new_stop_price
        )

    @property
    def remaining_quantity(self) -> Decimal:
        """Quantity still to fill: the order quantity less the filled quantity (kept even once closed)."""
        return _EXACT.subtract(self.request.quantity, self.filled_quantity)

    @property
    def average_fill_price(self) -> Decimal | None:
        """Filled notional / filled quantity to `AVERAGE_PRICE_PRECISION` digits; None before any fill."""
        if self.filled_quantity == 0:
            return None
        return _AVERAGE.divide(self.filled_notional, self.filled_quantity)

    @property
    def can_cancel(self) -> bool:
        """Whether `TRANSITIONS` allows an `OrderCanceled` now."""
        return (self.status, OrderCanceled) in TRANSITIONS

    @property
    def can_replace(self) -> bool:
        """Whether `TRANSITIONS` allows an `OrderReplaced` now (its terms are checked when applied)."""
        return (self.status, OrderReplaced) in TRANSITIONS


_new_order = builder(Order)
"""`Order` from its fields, positionally (binding its twelve keywords cost `apply` a third of its time)."""
_TRANSITION_OF: dict[type[OrderEvent], Callable[[Order, Any, OrderStatus], Order]] = {
    OrderAccepted: Order._moved, OrderTriggered: Order._triggered, OrderExpired: Order._moved,
    OrderDenied: Order._ended, OrderCanceled: Order._ended, OrderRejected: Order._ended,
    OrderPartiallyFilled: Order._fill, OrderFilled: Order._fill, OrderReplaced: Order._replaced,
}  # fmt: skip
"""What `Order.apply` does after `TRANSITIONS` allowed the event, by event type (one lookup, no isinstance chain)."""
if {kind for _, kind in TRANSITIONS} - {OrderSubmitted} != _TRANSITION_OF.keys():  # pragma: no cover - a new event type
    raise RuntimeError("every event type TRANSITIONS allows after the first needs its entry in _TRANSITION_OF")
_FIRST = TRANSITIONS[None, OrderSubmitted]
_NO_FILL_IDS: frozenset[str] = frozenset()
_NO_FEES: Mapping[str, Decimal] = MappingProxyType({})
"""The fees of an order before its first fill, shared: read-only over a dict nothing else holds."""
# `fill_event`'s two events from their fields, positionally: checked as their constructors check them, and not.
_new_filled, _new_partially_filled = builder(OrderFilled), builder(OrderPartiallyFilled)
_engine_filled, _engine_partially_filled = builder(OrderFilled, checked=False), builder(OrderPartiallyFilled, checked=False)

# Enum members as module constants: a member looked up on its class goes through EnumType's attribute
# hook on every use (about 80 ns in 3.11), a module global does not; the hot paths above use these.
_ORDER_STATUS_ACCEPTED = OrderStatus.ACCEPTED
_ORDER_TYPE_MARKET = OrderType.MARKET
_TIME_IN_FORCE_GTC = TimeInForce.GTC
