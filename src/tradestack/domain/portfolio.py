"""Positions at average cost, FX conversion and portfolio valuation.

A `PositionState` keeps its cost basis exactly (`cost`, signed like the quantity: a long of 10
bought at 100 has cost 1000, a short of 10 sold at 50 has cost -500) and derives the average price
from it. Reducing a position releases the cost of the units closed, pro rata at the average cost;
that quotient is the one place a rounding can happen (see `divide`). The cost left behind is what
remains of the exact basis, so nothing leaks: closing a position releases exactly all of its cost
and the P&L of a round trip is exact.

Fees are not part of the cost basis: the ledger books them to their own account, in whatever
currency they were charged.

`FxRates` converts between currencies from quotes ``{("EUR", "USD"): rate}`` meaning
1 EUR = rate USD, directly, inversely or through one pivot currency. `PortfolioValuation` values
cash and positions in their own currencies and totals equity in a base currency.

All arithmetic other than `divide` is exact: sums and products run in a context that never rounds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_05UP,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from functools import lru_cache
from types import MappingProxyType
from typing import TypeGuard

from tradestack.core.errors import ValidationFailedError
from tradestack.core.money import D
from tradestack.domain.frozen import builder, fast_init
from tradestack.domain.marketdata import Side

QUOTIENT_PLACES = 12
_QUOTIENT_STEP = Decimal(1).scaleb(-QUOTIENT_PLACES)
"""Decimal places kept when a quotient (average price, released cost, inverse FX) does not terminate."""

_ZERO = Decimal(0)
# Sums and products of finite Decimals are exact at MAX_PREC; division is never done in it.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_EXACT_ROUNDING = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, Overflow])
_CURRENCY = re.compile(r"[A-Z0-9]{2,10}")
_SYMBOL = re.compile(r"[A-Z0-9._/-]{1,32}")
_NO_OFFSET = timedelta(0)
_KNOWN_LIMIT = 4096
_KNOWN_CURRENCIES: set[str] = set()
_KNOWN_SYMBOLS: set[str] = set()


def divide(numerator: Decimal, denominator: Decimal) -> Decimal:
    """Exact quotient when it terminates; otherwise rounded half-even to `QUOTIENT_PLACES` places.

    The working precision is wide enough to hold any terminating quotient of the operands, and the
    first rounding is ROUND_05UP so that the final half-even rounding is not a double rounding.
    """
    if denominator == 0:
        raise ZeroDivisionError(f"cannot divide {numerator} by zero")
    top, bottom = numerator.as_tuple(), denominator.as_tuple()
    magnitude = max(0, numerator.adjusted() - denominator.adjusted() + 2)
    precision = len(top.digits) + 4 * len(bottom.digits) + magnitude + QUOTIENT_PLACES + 4
    context = _quotient_context(precision)  # shared: its flags are never read (exactness is checked below)
    quotient = context.divide(numerator, denominator)
    if _EXACT.multiply(quotient, denominator) == numerator:  # the quotient terminated within the precision
        return quotient
    return quotient.quantize(Decimal(1).scaleb(-QUOTIENT_PLACES), rounding=ROUND_HALF_EVEN, context=context)


@lru_cache(maxsize=256)
def _quotient_context(precision: int) -> Context:
    return Context(prec=precision, rounding=ROUND_05UP, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation])


def _is_finite_decimal(value: object) -> bool:
    """Whether `_decimal` would return `value` itself (the check without building its message)."""
    return isinstance(value, Decimal) and value.is_finite()


def _decimal(what: str, value: object) -> Decimal:
    if not isinstance(value, Decimal | int) or isinstance(value, bool):
        raise TypeError(f"{what} must be a Decimal, got {type(value).__name__} {value!r}")
    try:
        return D(value)
    except ValueError:
        raise ValueError(f"{what} must be a finite Decimal, got {value!r}") from None


def _is_utc(ts: object) -> bool:
    if type(ts) is datetime and ts.tzinfo is UTC:
        return True
    return isinstance(ts, datetime) and ts.tzinfo is not None and ts.utcoffset() == _NO_OFFSET


def _require_utc(what: str, ts: datetime) -> None:
    if not _is_utc(ts):
        raise ValueError(f"{what} must be a timezone-aware UTC datetime, got {ts!r}")


def _is_currency(code: object) -> TypeGuard[str]:
    if type(code) is str and code in _KNOWN_CURRENCIES:
        return True
    if isinstance(code, str) and _CURRENCY.fullmatch(code) is not None:
        _remember(_KNOWN_CURRENCIES, code)
        return True
    return False


def _remember(known: set[str], text: str) -> None:
    """Keep a code that passed its check, so the next check of it is a set lookup (bounded: a few thousand)."""
    if type(text) is str and len(known) < _KNOWN_LIMIT:
        known.add(text)


def _require_currency(what: str, code: object) -> str:
    if not _is_currency(code):
        raise ValueError(f"{what} must be a currency code of 2-10 characters A-Z and 0-9 (such as USD or USDT), got {code!r}")
    return code


def _require_symbol(what: str, symbol: object) -> str:
    if type(symbol) is str and symbol in _KNOWN_SYMBOLS:
        return symbol
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
        raise ValueError(f"{what} must be 1-32 characters of A-Z, 0-9 and . - _ /, got {symbol!r}")
    _remember(_KNOWN_SYMBOLS, symbol)
    return symbol


def parse_side(side: Side | str) -> Side:
    """The `Side` named by `side` ("buy" or "sell", or any string enum with those values)."""
    try:
        return side if type(side) is Side else Side(side)
    except ValueError:
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}") from None


# -- positions ----------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class FillEffect:
    """What one fill does to a position, split into the part that closes and the part that opens.

    Quantities and costs are signed changes to the position (a sell that closes 5 of a long has
    `closed_quantity` -5 and `closed_cost` minus the cost released). A fill that flips the position
    through zero both closes and opens. `realized` = `closed_cost` - `closed_quantity` * price: the
    proceeds of the units closed less their cost basis (positive is a gain).
    """

    closed_quantity: Decimal
    closed_cost: Decimal
    opened_quantity: Decimal
    opened_cost: Decimal
    realized: Decimal
    position: PositionState


@fast_init
@dataclass(frozen=True, slots=True)
class PositionState:
    """A position in one instrument at average cost.

    `quantity` is signed (negative is short). `cost` is the exact cost basis, signed like the
    quantity (quantity x average price); it is zero when flat. `realized_pnl` accumulates the P&L of
    every unit closed, in the instrument's quote currency, before fees.
    """

    symbol: str
    quantity: Decimal = _ZERO
    cost: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO

    def __post_init__(self) -> None:
        quantity, cost, realized = self.quantity, self.cost, self.realized_pnl
        if (  # the common case, sound: a symbol seen before and three finite Decimals
            type(self.symbol) is str and self.symbol in _KNOWN_SYMBOLS
            and type(quantity) is Decimal and type(cost) is Decimal and type(realized) is Decimal
            and quantity.is_finite() and cost.is_finite() and realized.is_finite() and (quantity or not cost)
        ):  # fmt: skip
            return
        _require_symbol("position symbol", self.symbol)
        if not (_is_finite_decimal(self.quantity) and _is_finite_decimal(self.cost) and _is_finite_decimal(self.realized_pnl)):
            for name in ("quantity", "cost", "realized_pnl"):
                value = getattr(self, name)
                if not _is_finite_decimal(value):
                    object.__setattr__(self, name, _decimal(f"{self.symbol}: {name}", value))
        if self.quantity == 0 and self.cost != 0:
            raise ValueError(f"{self.symbol}: a flat position has no cost basis, got cost {self.cost}")

    @property
    def is_flat(self) -> bool:
        """True when no units are held long or short."""
        return self.quantity == 0

    @property
    def average_price(self) -> Decimal:
        """Cost basis per unit (positive for a long or a short at positive prices); zero when flat.

        Exact when the quotient terminates, else rounded to `QUOTIENT_PLACES` places (see `divide`).
        """
        if self.quantity == 0:
            return _ZERO
        return divide(self.cost, self.quantity)

    def fill_effect(self, side: Side | str, quantity: Decimal, price: Decimal) -> FillEffect:
        """The effect of a fill of `quantity` units (positive) at `price` on this position.

        A fill on the side of the position (or on a flat one) adds to it at `price`. A fill against
        it closes units at the average cost and realizes their P&L; what exceeds the position
        opens a new one on the other side at `price`.
        """
        if type(quantity) is Decimal and quantity.is_finite() and quantity > 0 and (side is _SIDE_BUY or side is _SIDE_SELL):
            signed = quantity if side is _SIDE_BUY else -quantity  # as `_signed_quantity` signs it
        else:
            signed = _signed_quantity(self.symbol, side, quantity)
        if type(price) is not Decimal or not price.is_finite():
            price = _decimal(f"{self.symbol}: fill price", price)
        # every operation through the exact context (not `localcontext`, whose enter and exit cost more than the sums)
        add, subtract, multiply, minus = _EXACT.add, _EXACT.subtract, _EXACT.multiply, _EXACT.minus
        held, cost = self.quantity, self.cost
        # Sound by construction, so `PositionState`'s check is skipped: this position's own symbol (checked when it was
        # built), finite Decimals from the exact context, and no cost once flat (closing every unit held releases
        # the whole cost, and a fill that only closes opens nothing).
        if held == 0 or (held > 0) == (signed > 0):  # opens or adds: nothing closes, nothing is realized
            opened_cost = multiply(signed, price)
            position = _position_of_sound(self.symbol, add(held, signed), add(cost, opened_cost), self.realized_pnl)
            return _new_fill_effect(_ZERO, _ZERO, signed, opened_cost, _ZERO, position)
        units, held_units = _EXACT.abs(signed), _EXACT.abs(held)
        if units <= held_units:  # closes part or all of the position and opens nothing
            closed_cost = minus(cost if units == held_units else _released_cost(cost, units, held_units))
            realized = subtract(closed_cost, multiply(signed, price))
            position = _position_of_sound(
                self.symbol, add(held, signed), add(cost, closed_cost), add(self.realized_pnl, realized)
            )
            return _new_fill_effect(signed, closed_cost, _ZERO, _ZERO, realized, position)
        # through zero: closes every unit held, at the whole cost, and opens the rest on the other side
        closed_quantity, closed_cost = minus(held), minus(cost)
        opened_quantity = add(signed, held)
        opened_cost = multiply(opened_quantity, price)
        realized = subtract(closed_cost, multiply(closed_quantity, price))
        position = _position_of_sound(self.symbol, opened_quantity, opened_cost, add(self.realized_pnl, realized))
        return _new_fill_effect(closed_quantity, closed_cost, opened_quantity, opened_cost, realized, position)

    def apply_fill(self, side: Side | str, quantity: Decimal, price: Decimal) -> tuple[PositionState, Decimal]:
        """The position after a fill and the P&L the fill realized (see `fill_effect`)."""
        effect = self.fill_effect(side, quantity, price)
        return effect.position, effect.realized


_position_of_sound = builder(PositionState, checked=False)
"""`PositionState` from its fields, positionally, without its check: for `fill_effect`, which establishes it."""
_new_fill_effect = builder(FillEffect)
"""`FillEffect` from its fields, positionally (it has no check)."""


def _released_cost(cost: Decimal, closing: Decimal, held: Decimal) -> Decimal:
    """The cost basis of `closing` of `held` units: pro rata, to at most `QUOTIENT_PLACES` places (half-even).

    Even a terminating quotient is rounded: otherwise every partial close could add decimal places
    to the cost left behind, without bound (12 places after one close, 13 after the next...), and
    no stored column could hold it. The units left keep the remainder, so each entry still
    balances and closing the rest releases exactly what is left.
    """
    numerator = _EXACT.multiply(cost, closing)
    # `divide`'s quotient, then rounded to QUOTIENT_PLACES places unless it has no more: so only the digits down to
    # those places matter, and three more for the ROUND_05UP guard (not the digits of every terminating quotient).
    # An exact quotient that needs no more places comes out as `divide` writes it (the exponent nearest the ideal).
    magnitude = max(0, numerator.adjusted() - held.adjusted() + 2)
    released = _quotient_context(magnitude + QUOTIENT_PLACES + 3).divide(numerator, held)
    # Places below QUOTIENT_PLACES, asked without `as_tuple` (which copies out every digit): moved up by that many
    # places, the quotient is its own integral value exactly when its exponent is not negative.
    scaled = _EXACT.scaleb(released, QUOTIENT_PLACES)
    if not scaled.same_quantum(_EXACT.to_integral_value(scaled)):
        return released.quantize(_QUOTIENT_STEP, rounding=ROUND_HALF_EVEN, context=_EXACT_ROUNDING)
    return released


def _signed_quantity(symbol: str, side: Side | str, quantity: Decimal) -> Decimal:
    units = quantity if _is_finite_decimal(quantity) else _decimal(f"{symbol}: fill quantity", quantity)
    if units <= 0:
        raise ValueError(f"{symbol}: fill quantity must be positive, got {units}")
    return units if parse_side(side) is _SIDE_BUY else -units


@dataclass(frozen=True, slots=True)
class FillRecord:
    """One execution: `quantity` units (positive) of `symbol` at `price`, and the fee it cost.

    `price` is in the instrument's quote currency; `fee` is in `fee_currency` (negative for a
    rebate). `ts` is when the fill happened, in UTC.
    """

    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    ts: datetime

    def __post_init__(self) -> None:
        _require_symbol("fill symbol", self.symbol)
        object.__setattr__(self, "side", parse_side(self.side))
        _signed_quantity(self.symbol, self.side, self.quantity)
        for name in ("quantity", "price", "fee"):
            object.__setattr__(self, name, _decimal(f"{self.symbol}: fill {name}", getattr(self, name)))
        _require_currency(f"{self.symbol}: fee currency", self.fee_currency)
        _require_utc(f"{self.symbol}: fill ts", self.ts)


def fold_fills(fills: Iterable[FillRecord]) -> dict[str, PositionState]:
    """Positions by symbol after applying `fills` in order, starting flat."""
    positions: dict[str, PositionState] = {}
    for fill in fills:
        before = positions.get(fill.symbol) or PositionState(fill.symbol)
        positions[fill.symbol], _ = before.apply_fill(fill.side, fill.quantity, fill.price)
    return positions


def market_value(position: PositionState, mark: Decimal) -> Decimal:
    """Signed value of the position at `mark`, in its quote currency (negative for a short)."""
    mark = _decimal(f"{position.symbol}: mark price", mark)
    with localcontext(_EXACT):
        return position.quantity * mark


def unrealized_pnl(position: PositionState, mark_price: Decimal) -> Decimal:
    """P&L of closing the whole position at `mark_price`: market value less cost basis, before fees."""
    value = market_value(position, mark_price)
    with localcontext(_EXACT):
        return value - position.cost


# -- FX -----------------------------------------------------------------------------------------


class MissingFxRate(ValidationFailedError):  # noqa: N818 - named for what is missing, as callers read it
    """No quote converts `base` into `quote`, directly, inversely or through the pivot."""

    def __init__(self, base: str, quote: str, pivot: str) -> None:
        super().__init__(
            f"no FX rate for {base}/{quote}: quote {base}/{quote} or {quote}/{base}, or both {base} and {quote} against {pivot}",
            base=base,
            quote=quote,
        )
        self.base = base
        self.quote = quote


@dataclass(frozen=True, slots=True)
class FxRates:
    """Exchange rates: ``quotes[("EUR", "USD")] = rate`` means 1 EUR = rate USD.

    A pair converts directly when quoted, inversely when the opposite pair is quoted, and otherwise
    through `pivot` (one leg each side, each direct or inverse). A direct quote wins over the
    inverse of the opposite pair. Multiplications are exact; divisions follow `divide`.
    """

    quotes: Mapping[tuple[str, str], Decimal] = field(default_factory=dict, hash=False)
    pivot: str = "USD"

    def __post_init__(self) -> None:
        _require_currency("pivot currency", self.pivot)
        checked: dict[tuple[str, str], Decimal] = {}
        for pair, rate in self.quotes.items():
            base, quote = pair
            _require_currency("FX base currency", base)
            _require_currency("FX quote currency", quote)
            if base == quote:
                raise ValueError(f"FX quote {base}/{quote} converts a currency into itself")
            value = _decimal(f"FX rate {base}/{quote}", rate)
            if value <= 0:
                raise ValueError(f"FX rate {base}/{quote} must be positive, got {value}")
            checked[(base, quote)] = value
        object.__setattr__(self, "quotes", MappingProxyType(checked))

    def _leg(self, amount: Decimal, source: str, target: str) -> Decimal | None:
        if source == target:
            return amount
        direct = self.quotes.get((source, target))
        if direct is not None:
            with localcontext(_EXACT):
                return amount * direct
        inverse = self.quotes.get((target, source))
        if inverse is not None:
            return divide(amount, inverse)
        return None

    def convert(self, amount: Decimal, from_currency: str, to_currency: str) -> Decimal:
        """`amount` of `from_currency` in `to_currency`; `MissingFxRate` when no route exists."""
        amount = _decimal("amount to convert", amount)
        _require_currency("currency to convert from", from_currency)
        _require_currency("currency to convert to", to_currency)
        converted = self._leg(amount, from_currency, to_currency)
        if converted is not None:
            return converted
        in_pivot = self._leg(amount, from_currency, self.pivot)
        if in_pivot is not None:
            converted = self._leg(in_pivot, self.pivot, to_currency)
            if converted is not None:
                return converted
        raise MissingFxRate(from_currency, to_currency, self.pivot)

    def rate(self, base: str, quote: str) -> Decimal:
        """How many `quote` one `base` is worth; `MissingFxRate` when no route exists."""
        return self.convert(Decimal(1), base, quote)


# -- valuation ----------------------------------------------------------------------------------


class MissingMarkPrice(ValidationFailedError):  # noqa: N818 - named for what is missing, as callers read it
    """A held position has no mark price (or no quote currency) to value it with."""

    def __init__(self, symbol: str, what: str = "mark price") -> None:
        super().__init__(f"no {what} for {symbol}: supply one to value the position", symbol=symbol)
        self.symbol = symbol


@dataclass(frozen=True, slots=True)
class PositionValuation:
    """One open position marked to market, in its quote currency and in the base currency."""

    symbol: str
    quote_currency: str
    quantity: Decimal
    average_price: Decimal
    mark_price: Decimal
    market_value: Decimal
    """Signed quantity x mark, in `quote_currency`."""
    unrealized_pnl: Decimal
    """Market value less cost basis, in `quote_currency`."""
    market_value_base: Decimal
    unrealized_pnl_base: Decimal


@dataclass(frozen=True, slots=True)
class PortfolioValuation:
    """Cash per currency, open positions marked to market, and equity in `base_currency`.

    `equity` = cash converted to the base currency + market values converted to the base
    currency. Build it with `PortfolioValuation.compute`.
    """

    base_currency: str
    cash: Mapping[str, Decimal] = field(hash=False)
    """Cash balance per currency, as given."""
    cash_base: Decimal
    positions: tuple[PositionValuation, ...]
    """Open positions, by symbol; flat ones are left out."""
    market_value_base: Decimal
    unrealized_pnl_base: Decimal
    equity: Decimal

    @classmethod
    def compute(
        cls,
        *,
        base_currency: str,
        cash: Mapping[str, Decimal],
        positions: Mapping[str, PositionState],
        quote_currencies: Mapping[str, str],
        marks: Mapping[str, Decimal],
        rates: FxRates,
    ) -> PortfolioValuation:
        """Value `cash` (per currency) and `positions` (by symbol) at `marks`, totalled in `base_currency`.

        `quote_currencies` and `marks` give each open position's quote currency and mark price.
        Raises `MissingMarkPrice` for an open position without either, and `MissingFxRate` when a
        currency cannot be converted to the base currency.
        """
        _require_currency("base currency", base_currency)
        cash_checked = {
            _require_currency("cash currency", currency): _decimal(f"cash {currency}", amount)
            for currency, amount in sorted(cash.items())
        }
        valued: list[PositionValuation] = []
        for symbol, position in sorted(positions.items()):
            if symbol != position.symbol:
                raise ValueError(f"position under {symbol!r} is for {position.symbol!r}")
            if position.is_flat:
                continue
            if symbol not in marks:
                raise MissingMarkPrice(symbol)
            if symbol not in quote_currencies:
                raise MissingMarkPrice(symbol, "quote currency")
            valued.append(_value_position(position, quote_currencies[symbol], marks[symbol], base_currency, rates))
        with localcontext(_EXACT):
            cash_base = sum((rates.convert(a, c, base_currency) for c, a in cash_checked.items()), _ZERO)
            value_base = sum((p.market_value_base for p in valued), _ZERO)
            unrealized_base = sum((p.unrealized_pnl_base for p in valued), _ZERO)
            equity = cash_base + value_base
        return cls(base_currency, MappingProxyType(cash_checked), cash_base, tuple(valued), value_base, unrealized_base, equity)


def _value_position(position: PositionState, currency: str, mark: Decimal, base: str, rates: FxRates) -> PositionValuation:
    _require_currency(f"{position.symbol}: quote currency", currency)
    mark = _decimal(f"{position.symbol}: mark price", mark)
    value = market_value(position, mark)
    pnl = unrealized_pnl(position, mark)
    return PositionValuation(
        position.symbol,
        currency,
        position.quantity,
        position.average_price,
        mark,
        value,
        pnl,
        rates.convert(value, currency, base),
        rates.convert(pnl, currency, base),
    )


# Enum members as module constants: a member looked up on its class goes through EnumType's attribute
# hook on every use (about 80 ns in 3.11), a module global does not; the hot paths above use these.
_SIDE_BUY = Side.BUY
_SIDE_SELL = Side.SELL
