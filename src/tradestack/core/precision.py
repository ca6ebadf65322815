"""How many digits each kind of stored number may have: the one source of truth per field.

A column is declared from a `Precision` (`kit.types.ExactDecimal.of`) and the request schema
that accepts the field checks the same `Precision` (`fits`), so every number accepted at the
boundary fits where it is stored: a value too large or too fine is refused up front with a
message naming its limits, and storing an order (a denied one included) cannot fail on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from tradestack.core.money import EXACT, canonical, decimal_places, place_step, plain


@dataclass(frozen=True, slots=True)
class Precision:
    """At most `precision` significant digits in all, `scale` of them after the decimal point."""

    precision: int
    scale: int
    _integers: int = field(init=False, repr=False, compare=False)  # `integer_digits`, for `problem`
    _last_place: Decimal = field(init=False, repr=False, compare=False)  # ``1E-{scale}``, for `problem`

    def __post_init__(self) -> None:
        if not 0 <= self.scale <= self.precision:
            raise ValueError("need 0 <= scale <= precision")
        object.__setattr__(self, "_integers", self.precision - self.scale)
        object.__setattr__(self, "_last_place", place_step(self.scale))

    @property
    def integer_digits(self) -> int:
        """How many digits may stand before the decimal point."""
        return self.precision - self.scale

    @property
    def largest(self) -> Decimal:
        """The largest value that fits (``99…9.9…9``)."""
        return Decimal(10) ** self.integer_digits - Decimal(1).scaleb(-self.scale)

    def describe(self) -> str:
        """The limits in words, for error messages."""
        return f"up to {self.integer_digits} integer digits and {self.scale} decimal places"

    def problem(self, value: Decimal) -> str | None:
        """Why `value` does not fit, or None when it does (NaN and infinities never fit)."""
        if not value.is_finite():
            return f"{value} is not a finite number"
        # exact: the integer part of the remainder's quotient never nears EXACT's precision (value below 10**38, step at
        # least 10**-scale), and the remainder itself is exact
        if (not value or value.adjusted() < self._integers) and not EXACT.remainder(value, self._last_place):
            return None  # fits: what `digits_problem` passes (a whole number of steps of the last place, few enough digits)
        return self.digits_problem(value)

    def digits_problem(self, value: Decimal) -> str | None:
        """`problem` of a finite `value` worked out in full, on its digits without trailing zeros (no quick pass)."""
        number = canonical(value)
        if decimal_places(number) > self.scale:
            return f"{plain(number)} has more than {self.scale} decimal places (allowed: {self.describe()})"
        if number and number.adjusted() + 1 > self.integer_digits:
            return f"{plain(number)} has more than {self.integer_digits} integer digits (allowed: {self.describe()})"
        return None


PRICE = Precision(24, 10)
"""Prices, tick and lot sizes: 14 integer digits, 10 decimals."""

AMOUNT = Precision(38, 18)
"""Quantities and money amounts (cash, fees, balances, average prices): 20 integer digits, 18 decimals."""

VOLUME = Precision(28, 8)
"""Traded volume of a bar."""
