"""Pre-trade risk checks: pure functions that say why an order is refused, or None when it passes.

A check never raises for a business outcome; it returns a `RiskDenial` naming the check and a
reason a user can act on, with the numbers involved. `evaluate` runs every check in this order and
returns the first denial:

1. trading state - HALTED refuses everything; REDUCING allows only orders that shrink a position
   without flipping it. The stricter of the global and the account state applies, so the global
   kill switch overrides whatever the account says.
2. order rate - orders submitted in the last minute, per account.
3. reference price - a market order needs a last price to be priced.
4. price collar - a limit price too far through the market is a fat finger.
5. max order notional.
6. short selling - only accounts with `allow_short` may end up short.
7. max position - per instrument, on the resulting |position|.
8. daily loss - once today's realized loss reaches the limit, only reducing orders pass.
9. max gross exposure.
10. buying power - a buy needs its notional plus the estimated fee within cash less what open
    orders reserve.

Currencies: an order's prices are in the instrument's quote currency; every money amount of the
account (`AccountRiskState`) and every money limit (`RiskLimits`) is in the account's base
currency, `RiskLimits.currency`. The caller passes `to_base`, which converts a quote-currency
amount into the base currency (identity by default, for accounts that trade in their own currency).

Pricing an order (`order_price`): a limit or stop-limit order at its limit price; a market order at
the last price and a stop order at its stop price, buys of either plus the collar (the most the
collar lets a buy pay). Positions in `AccountRiskState` are signed quantities (short below zero);
the checks look at the position this order would leave if it filled completely and do not add what
other open orders might still do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from tradestack.core.money import canonical
from tradestack.domain.frozen import builder, fast_init
from tradestack.domain.marketdata import Side
from tradestack.domain.matching import FeeModel
from tradestack.domain.orders import Order, OrderType

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)

ToBase = Callable[[Decimal], Decimal]
"""Converts an amount in the instrument's quote currency into the account's base currency."""


def same_currency(amount: Decimal) -> Decimal:
    """The identity conversion, for instruments quoted in the account's base currency."""
    return amount


class TradingState(StrEnum):
    """What an account (or the whole platform) may do; the kill switch sets it."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class RiskCheck(StrEnum):
    """The name of a pre-trade check, as carried by a denial."""

    TRADING_STATE = "trading_state"
    ORDER_RATE = "order_rate"
    REFERENCE_PRICE = "reference_price"
    PRICE_COLLAR = "price_collar"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    SHORT_SELLING = "short_selling"
    MAX_POSITION = "max_position"
    DAILY_LOSS = "daily_loss"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"
    BUYING_POWER = "buying_power"


@fast_init
@dataclass(frozen=True, slots=True)
class RiskDenial:
    """Why an order was refused: the check that refused it and a reason naming the numbers."""

    check: RiskCheck
    reason: str

    def __str__(self) -> str:
        return f"{self.check.value}: {self.reason}"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _finite(value: Decimal) -> bool:
    return isinstance(value, Decimal) and value.is_finite()


@fast_init
@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order as the risk checks see it: quantity in units, prices in the quote currency.

    `limit_price` is required for limit and stop-limit orders, `stop_price` for stop and
    stop-limit orders; other types leave them None.
    """

    account_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None

    def __post_init__(self) -> None:
        order_type, quantity, limit = self.type, self.quantity, self.limit_price
        if (  # the common case, sound: a market order without prices, or a limit order with a positive limit price
            type(self.side) is Side and type(order_type) is OrderType and self.stop_price is None
            and type(quantity) is Decimal and quantity.is_finite() and quantity > 0
            and (
                limit is None if order_type is _ORDER_TYPE_MARKET
                else order_type is _ORDER_TYPE_LIMIT and type(limit) is Decimal and limit.is_finite() and limit > 0
            )
        ):  # fmt: skip
            return
        if type(self.side) is not Side:
            object.__setattr__(self, "side", Side(self.side))
        if type(self.type) is not OrderType:
            object.__setattr__(self, "type", OrderType(self.type))
        if not (_finite(self.quantity) and self.quantity > 0):
            raise ValueError(f"quantity must be a positive Decimal, got {self.quantity!r}")
        if self.type is _ORDER_TYPE_MARKET and self.limit_price is None and self.stop_price is None:
            return  # a market order carries no prices, and needs none
        _check_intent_price(self.type, "limit_price", self.limit_price, self.type.needs_limit_price)
        _check_intent_price(self.type, "stop_price", self.stop_price, self.type.needs_stop_price)

    @property
    def signed_quantity(self) -> Decimal:
        """The quantity with the sign of its effect on the position: + for a buy, - for a sell."""
        return self.quantity if self.side is _SIDE_BUY else -self.quantity


def _check_intent_price(order_type: OrderType, name: str, price: Decimal | None, needed: bool) -> None:
    """Require `price` exactly when `needed`, and positive when present."""
    if price is None:
        if needed:
            raise ValueError(f"a {order_type.value} order needs a {name}")
        return
    if not needed:
        raise ValueError(f"a {order_type.value} order must not carry a {name}")
    if not (_finite(price) and price > 0):
        raise ValueError(f"{name} must be a positive Decimal, got {price!r}")


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """An account's limits. Money amounts are in `currency`, the account's base currency.

    `max_position_quantity` applies to each instrument separately, in units. `price_collar_pct` is
    in percent (5 means 5 %). `daily_loss_limit` is a positive amount: trading is restricted once
    today's realized P&L is at or below minus this amount.
    """

    max_order_notional: Decimal
    max_position_quantity: Decimal
    max_gross_exposure: Decimal
    price_collar_pct: Decimal
    max_orders_per_minute: int
    daily_loss_limit: Decimal
    currency: str

    def __post_init__(self) -> None:
        for name in ("max_order_notional", "max_position_quantity", "max_gross_exposure", "price_collar_pct", "daily_loss_limit"):
            value = getattr(self, name)
            _require(_finite(value) and value >= 0, f"{name} must be a non-negative Decimal, got {value!r}")
        _require(self.price_collar_pct < _HUNDRED, f"price_collar_pct must be below 100, got {self.price_collar_pct}")
        _require(self.max_orders_per_minute >= 0, f"max_orders_per_minute must not be negative, got {self.max_orders_per_minute}")

    @property
    def collar(self) -> Decimal:
        """The price collar as a fraction (0.05 for 5 %)."""
        return self.price_collar_pct / _HUNDRED


@fast_init
@dataclass(frozen=True, slots=True)
class AccountRiskState:
    """What the checks need to know about the account now; money in its base currency.

    `cash_available` is the account's cash a purchase may spend (`cash_counted` says which, by the
    account's FX policy); `reserved_by_open_orders` is what its open buy orders have reserved out of
    it (see `reserve_for`). `positions` maps symbols to signed quantities.
    `gross_exposure` is the sum of |position| x mark price over all instruments.
    `realized_pnl_today` is negative for a loss. `orders_in_last_minute` counts orders already
    submitted in the 60 seconds before this one.
    """

    cash_available: Decimal
    reserved_by_open_orders: Decimal
    positions: Mapping[str, Decimal]
    gross_exposure: Decimal
    realized_pnl_today: Decimal
    orders_in_last_minute: int
    allow_short: bool
    trading_state: TradingState
    cash_counted: str = ""
    """Which of the account's cash `cash_available` counts (the FX policy's rule), said in a denial."""

    def __post_init__(self) -> None:
        if type(self.trading_state) is not TradingState:
            object.__setattr__(self, "trading_state", TradingState(self.trading_state))
        if self.orders_in_last_minute < 0:
            raise ValueError(f"orders_in_last_minute must not be negative, got {self.orders_in_last_minute}")

    def position(self, symbol: str) -> Decimal:
        """The signed position in `symbol`; zero when there is none."""
        return self.positions.get(symbol, _ZERO)


# -- helpers --------------------------------------------------------------------------------------


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def _number(value: Decimal) -> str:
    return f"{canonical(value):,f}"


def _usable_last(last_price: Decimal | None) -> Decimal | None:
    return last_price if last_price is not None and _finite(last_price) and last_price > 0 else None


def resulting_position(intent: OrderIntent, state: AccountRiskState) -> Decimal:
    """The position in the intent's symbol if the order filled completely."""
    return state.position(intent.symbol) + intent.signed_quantity


def reduces_position(current: Decimal, resulting: Decimal) -> bool:
    """Whether going from `current` to `resulting` shrinks |position| without crossing zero."""
    if current == 0 or abs(resulting) >= abs(current):
        return False
    return resulting == 0 or (resulting > 0) == (current > 0)


def order_price(intent: OrderIntent, last_price: Decimal | None, price_collar_pct: Decimal) -> Decimal | None:
    """The price the checks value the order at, or None for a market order without a last price.

    Limit and stop-limit orders: the limit price. Market orders: the last price; stop orders: the
    stop price; buys of both plus the collar.
    """
    return _price(intent, _usable_last(last_price), price_collar_pct)


def _price(intent: OrderIntent, last: Decimal | None, price_collar_pct: Decimal) -> Decimal | None:
    """`order_price` with the usable last price."""
    if intent.limit_price is not None:
        return intent.limit_price
    reference = intent.stop_price if intent.stop_price is not None else last
    if reference is None:
        return None
    if intent.side is _SIDE_BUY:
        return reference * (1 + price_collar_pct / _HUNDRED)
    return reference


def reserve_for(
    intent: OrderIntent,
    limits: RiskLimits,
    last_price: Decimal | None,
    *,
    fee_model: FeeModel | None = None,
    to_base: ToBase = same_currency,
) -> Decimal:
    """Cash an open order reserves, in the base currency: notional plus estimated fee for a buy, 0 for a sell.

    Raises ValueError for a market buy without a last price (`evaluate` denies those first). For a
    partly filled order pass an intent for the remaining quantity.
    """
    if intent.side is _SIDE_SELL:
        return _ZERO
    price = order_price(intent, last_price, limits.price_collar_pct)
    if price is None:
        raise ValueError(f"no last price for {intent.symbol}: cannot price a market buy")
    return _reserve(intent.quantity * price, fee_model, to_base)


def reserve_at(notional: Decimal, fee_model: FeeModel | None = None) -> Decimal:
    """What a buy reserves once priced: `notional` (quantity x `order_price`) plus the estimated fee, in its currency.

    `reserve_for` of an order whose price is known, such as a limit buy's: its limit price."""
    return _reserve(notional, fee_model, same_currency)


def _reserve(notional: Decimal, fee_model: FeeModel | None, to_base: ToBase) -> Decimal:
    """What a buy of `notional` (quote currency, at its `order_price`) reserves: notional plus estimated fee, in base currency."""
    fee = fee_model.fee(notional) if fee_model is not None else _ZERO
    return notional + fee if to_base is same_currency else to_base(notional + fee)


# -- the checks -----------------------------------------------------------------------------------
#
# Each check is one rule function below, written once: it compares values worked out beforehand
# (the usable last price, the order's notional, the current and resulting positions) and builds the
# denial only when the comparison fails. `evaluate` works those values out once and runs every rule
# in order; a public `check_*` works out what its rule needs and runs that one rule.


def check_trading_state(intent: OrderIntent, state: AccountRiskState, global_state: TradingState) -> RiskDenial | None:
    """HALTED denies everything; REDUCING denies orders that grow a position or flip it."""
    return _trading_state(intent, state, global_state, state.position(intent.symbol), resulting_position(intent, state))


def _trading_state(
    intent: OrderIntent, state: AccountRiskState, global_state: TradingState, current: Decimal, resulting: Decimal
) -> RiskDenial | None:
    """`check_trading_state` with the current and resulting positions."""
    if global_state is _TRADING_STATE_ACTIVE and state.trading_state is _TRADING_STATE_ACTIVE:
        return None
    if type(global_state) is not TradingState:
        global_state = TradingState(global_state)
    scope = "all accounts" if _STRICTNESS[global_state] >= _STRICTNESS[state.trading_state] else f"account {intent.account_id}"
    effective = max(global_state, state.trading_state, key=_STRICTNESS.__getitem__)
    if effective is _TRADING_STATE_HALTED:
        return RiskDenial(RiskCheck.TRADING_STATE, f"trading is halted for {scope}")
    if effective is _TRADING_STATE_REDUCING and not reduces_position(current, resulting):
        return RiskDenial(
            RiskCheck.TRADING_STATE,
            f"trading is reduce-only for {scope}: {intent.side.value} {_number(intent.quantity)} {intent.symbol} "
            f"would take the position from {_number(current)} to {_number(resulting)}; "
            "only orders that shrink a position without flipping it are allowed",
        )
    return None


def check_order_rate(limits: RiskLimits, state: AccountRiskState) -> RiskDenial | None:
    """Deny once the account has submitted `max_orders_per_minute` orders in the last minute."""
    if state.orders_in_last_minute >= limits.max_orders_per_minute:
        return RiskDenial(
            RiskCheck.ORDER_RATE,
            f"{state.orders_in_last_minute} orders in the last minute reach the limit of "
            f"{limits.max_orders_per_minute} per minute; wait before submitting more",
        )
    return None


def check_reference_price(intent: OrderIntent, last_price: Decimal | None) -> RiskDenial | None:
    """Deny a market order when there is no last price to value it at."""
    return _reference_price(intent, _usable_last(last_price))


def _reference_price(intent: OrderIntent, last: Decimal | None) -> RiskDenial | None:
    """`check_reference_price` with the usable last price."""
    if last is None and intent.type is _ORDER_TYPE_MARKET:
        return RiskDenial(
            RiskCheck.REFERENCE_PRICE,
            f"no last price for {intent.symbol}: a market order cannot be priced; send a limit order",
        )
    return None


def check_price_collar(intent: OrderIntent, limits: RiskLimits, last_price: Decimal | None) -> RiskDenial | None:
    """Deny a limit price more than the collar through the reference price (a fat finger).

    The reference is the last price for a limit order and the stop price for a stop-limit order.
    A limit buy above reference x (1 + collar) or a limit sell below reference x (1 - collar) is
    denied; a limit order without a last price is not checked.
    """
    return _collar(intent, limits, _usable_last(last_price))


def _collar(intent: OrderIntent, limits: RiskLimits, last: Decimal | None) -> RiskDenial | None:
    """`check_price_collar` with the usable last price."""
    limit = intent.limit_price
    reference = intent.stop_price if intent.stop_price is not None else last
    if limit is None or reference is None:
        return None
    name = "stop price" if intent.stop_price is not None else "last price"
    if intent.side is _SIDE_BUY:
        bound = reference * (1 + limits.collar)
        if limit > bound:
            return RiskDenial(
                RiskCheck.PRICE_COLLAR,
                f"limit price {_number(limit)} is more than {_number(limits.price_collar_pct)}% above the {name} "
                f"{_number(reference)} (highest allowed {_number(bound)})",
            )
    else:
        bound = reference * (1 - limits.collar)
        if limit < bound:
            return RiskDenial(
                RiskCheck.PRICE_COLLAR,
                f"limit price {_number(limit)} is more than {_number(limits.price_collar_pct)}% below the {name} "
                f"{_number(reference)} (lowest allowed {_number(bound)})",
            )
    return None


def check_order_notional(
    intent: OrderIntent, limits: RiskLimits, last_price: Decimal | None, to_base: ToBase = same_currency
) -> RiskDenial | None:
    """Deny an order whose notional (quantity x `order_price`, in base currency) exceeds the limit."""
    return _order_notional(limits, _notional(intent, order_price(intent, last_price, limits.price_collar_pct)), to_base)


def _notional(intent: OrderIntent, price: Decimal | None) -> Decimal | None:
    """Quantity x `order_price` in the quote currency; None when the order cannot be priced."""
    return None if price is None else intent.quantity * price


def _order_notional(limits: RiskLimits, notional: Decimal | None, to_base: ToBase) -> RiskDenial | None:
    """`check_order_notional` with the order's notional in the quote currency."""
    if notional is None:
        return None
    if to_base is not same_currency:  # the identity needs no call
        notional = to_base(notional)
    if notional > limits.max_order_notional:
        return RiskDenial(
            RiskCheck.MAX_ORDER_NOTIONAL,
            f"order notional {_money(notional, limits.currency)} exceeds the limit "
            f"{_money(limits.max_order_notional, limits.currency)}",
        )
    return None


def check_short_selling(intent: OrderIntent, state: AccountRiskState) -> RiskDenial | None:
    """Deny a sell that would leave a short position unless the account may sell short."""
    return _short_selling(intent, state, resulting_position(intent, state))


def _short_selling(intent: OrderIntent, state: AccountRiskState, resulting: Decimal) -> RiskDenial | None:
    """`check_short_selling` with the `resulting_position`."""
    if resulting < 0 and intent.side is _SIDE_SELL and not state.allow_short:
        return RiskDenial(
            RiskCheck.SHORT_SELLING,
            f"selling {_number(intent.quantity)} {intent.symbol} would leave a short position of {_number(resulting)}; "
            "this account may not sell short",
        )
    return None


def check_position_limit(intent: OrderIntent, limits: RiskLimits, state: AccountRiskState) -> RiskDenial | None:
    """Deny an order that leaves |position| above the per-instrument limit, unless it reduces the position."""
    return _position_limit(intent, limits, state.position(intent.symbol), resulting_position(intent, state))


def _position_limit(intent: OrderIntent, limits: RiskLimits, current: Decimal, resulting: Decimal) -> RiskDenial | None:
    """`check_position_limit` with the current and resulting positions."""
    if abs(resulting) > limits.max_position_quantity and not reduces_position(current, resulting):
        return RiskDenial(
            RiskCheck.MAX_POSITION,
            f"resulting {intent.symbol} position {_number(resulting)} exceeds the limit of "
            f"{_number(limits.max_position_quantity)} per instrument",
        )
    return None


def check_daily_loss(intent: OrderIntent, limits: RiskLimits, state: AccountRiskState) -> RiskDenial | None:
    """Once today's realized loss reaches the limit, deny every order that does not reduce a position."""
    return _daily_loss(limits, state, state.position(intent.symbol), resulting_position(intent, state))


def _daily_loss(limits: RiskLimits, state: AccountRiskState, current: Decimal, resulting: Decimal) -> RiskDenial | None:
    """`check_daily_loss` with the current and resulting positions."""
    if state.realized_pnl_today > -limits.daily_loss_limit or reduces_position(current, resulting):
        return None
    return RiskDenial(
        RiskCheck.DAILY_LOSS,
        f"realized loss today {_money(-state.realized_pnl_today, limits.currency)} has reached the daily loss limit "
        f"{_money(limits.daily_loss_limit, limits.currency)}; only orders that reduce a position are allowed",
    )


def check_gross_exposure(
    intent: OrderIntent,
    limits: RiskLimits,
    state: AccountRiskState,
    last_price: Decimal | None,
    to_base: ToBase = same_currency,
) -> RiskDenial | None:
    """Deny an order that raises gross exposure above the limit.

    The change is (|resulting position| - |position|) x price, priced at the last price (the
    order's price when there is none). Orders that lower exposure always pass.
    """
    price = _usable_last(last_price) or order_price(intent, last_price, limits.price_collar_pct)
    return _gross_exposure(limits, state, price, state.position(intent.symbol), resulting_position(intent, state), to_base)


def _gross_exposure(
    limits: RiskLimits, state: AccountRiskState, price: Decimal | None, current: Decimal, resulting: Decimal, to_base: ToBase
) -> RiskDenial | None:
    """`check_gross_exposure` with the price it values the change at and the current and resulting positions."""
    if price is None:
        return None
    change = (abs(resulting) - abs(current)) * price
    if to_base is not same_currency:  # the identity needs no call
        change = to_base(change)
    if change <= 0:
        return None
    after = state.gross_exposure + change
    if after > limits.max_gross_exposure:
        return RiskDenial(
            RiskCheck.MAX_GROSS_EXPOSURE,
            f"gross exposure would rise from {_money(state.gross_exposure, limits.currency)} to "
            f"{_money(after, limits.currency)}, above the limit {_money(limits.max_gross_exposure, limits.currency)}",
        )
    return None


def check_buying_power(
    intent: OrderIntent,
    limits: RiskLimits,
    state: AccountRiskState,
    last_price: Decimal | None,
    *,
    fee_model: FeeModel | None = None,
    to_base: ToBase = same_currency,
) -> RiskDenial | None:
    """Deny a buy whose `reserve_for` (notional plus estimated fee) exceeds cash less open-order reservations."""
    notional = _notional(intent, order_price(intent, last_price, limits.price_collar_pct))
    return _buying_power(limits, state, _needed(intent, notional, fee_model, to_base))


def _needed(intent: OrderIntent, notional: Decimal | None, fee_model: FeeModel | None, to_base: ToBase) -> Decimal | None:
    """What a buy of `notional` (quote currency, at its `order_price`) reserves (`reserve_for`, in the base currency);
    None for a sell or an order that cannot be priced."""
    if intent.side is _SIDE_SELL or notional is None:
        return None
    return _reserve(notional, fee_model, to_base)


def _buying_power(limits: RiskLimits, state: AccountRiskState, needed: Decimal | None) -> RiskDenial | None:
    """`check_buying_power` with what the order needs (`_needed`; None: nothing to check)."""
    if needed is None:
        return None
    available = state.cash_available - state.reserved_by_open_orders
    if needed > available:
        currency = limits.currency
        return RiskDenial(
            RiskCheck.BUYING_POWER,
            f"order needs {_money(needed, currency)} (notional plus estimated fee) but only "
            f"{_money(available, currency)} is available (cash {_money(state.cash_available, currency)} "
            f"less {_money(state.reserved_by_open_orders, currency)} reserved by open orders)"
            + (f"; counted: {state.cash_counted}" if state.cash_counted else ""),
        )
    return None


def evaluate(
    intent: OrderIntent,
    limits: RiskLimits,
    state: AccountRiskState,
    global_state: TradingState,
    last_price: Decimal | None,
    *,
    fee_model: FeeModel | None = None,
    to_base: ToBase = same_currency,
) -> RiskDenial | None:
    """Run every check in the documented order; the first denial, or None when the order passes.

    One pass, for orders that pass and orders that are denied alike: the values several checks
    compare (the usable last price, the order's price and notional, the current and resulting
    positions) are worked out once, then each check's rule - the function its `check_*` runs -
    compares on them. There is no second statement of the rules to fall out of step with them.
    """
    return evaluate_reserving(intent, limits, state, global_state, last_price, fee_model=fee_model, to_base=to_base)[0]


def evaluate_reserving(
    intent: OrderIntent,
    limits: RiskLimits,
    state: AccountRiskState,
    global_state: TradingState,
    last_price: Decimal | None,
    *,
    fee_model: FeeModel | None = None,
    to_base: ToBase = same_currency,
) -> tuple[RiskDenial | None, Decimal]:
    """`evaluate`, and what the order reserves once accepted: `reserve_for` of it (with the same `fee_model` and
    `to_base`), from the notional plus fee the buying-power check priced (zero for a sell or a denied order)."""
    quantity, limit = intent.quantity, intent.limit_price
    current = state.positions.get(intent.symbol, _ZERO)
    resulting = current + quantity if intent.side is _SIDE_BUY else current - quantity
    # `_usable_last` (None is no Decimal) and, for an order with a limit price, `_price`, without their calls
    last = last_price if isinstance(last_price, Decimal) and last_price.is_finite() and last_price > 0 else None
    price = limit if limit is not None else _price(intent, last, limits.price_collar_pct)
    notional = None if price is None else quantity * price
    denial = (
        _trading_state(intent, state, global_state, current, resulting)
        or check_order_rate(limits, state)
        or _reference_price(intent, last)
        or _collar(intent, limits, last)
        or _order_notional(limits, notional, to_base)
        or _short_selling(intent, state, resulting)
        or _position_limit(intent, limits, current, resulting)
        or _daily_loss(limits, state, current, resulting)
        or _gross_exposure(limits, state, last or price, current, resulting, to_base)
    )
    if denial is not None:
        return denial, _ZERO
    needed = _needed(intent, notional, fee_model, to_base)
    denial = _buying_power(limits, state, needed)
    return denial, _ZERO if denial is not None or needed is None else needed


def intent_of(order: Order) -> OrderIntent:
    """`order` as the risk checks see it, without `OrderIntent`'s checks: its request passed the same ones when
    `OrderSubmitted` took it (a positive quantity, each price present exactly when the type needs it, positive)."""
    request = order.request
    return _new_intent(
        request.account_id, request.symbol, request.side, request.type, request.quantity, request.limit_price,
        request.stop_price,
    )  # fmt: skip


_new_intent = builder(OrderIntent, checked=False)


# Enum members as module constants: a member looked up on its class goes through EnumType's attribute
# hook on every use (about 80 ns in 3.11), a module global does not; the hot paths above use these.
_ORDER_TYPE_LIMIT = OrderType.LIMIT
_ORDER_TYPE_MARKET = OrderType.MARKET
_SIDE_BUY = Side.BUY
_SIDE_SELL = Side.SELL
_TRADING_STATE_ACTIVE = TradingState.ACTIVE
_TRADING_STATE_HALTED = TradingState.HALTED
_TRADING_STATE_REDUCING = TradingState.REDUCING
