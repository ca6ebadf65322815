"""Decimal helpers. Money, prices and quantities are never floats."""

from __future__ import annotations

import re
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation

# What a decimal may look like on the wire: ASCII digits only (Python's Decimal() would also read
# Arabic-Indic or full-width digits as 1), an optional sign, point and exponent. The pattern is published in the API schema.
DECIMAL_TEXT = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?$"
_DECIMAL_TEXT = re.compile(DECIMAL_TEXT)


def D(value: str | int | Decimal) -> Decimal:  # noqa: N802 - short constructor, like beancount's D()
    """Build an exact Decimal from a string, an int or a Decimal; floats are refused."""
    if isinstance(value, bool | float):
        raise TypeError(f"refusing {type(value).__name__} {value!r}: money and quantities must be exact")
    if isinstance(value, Decimal):
        result = value
    else:
        try:
            result = Decimal(value)
        except InvalidOperation as exc:
            raise ValueError(f"not a decimal number: {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"not a finite decimal number: {value!r}")
    return result


def ascii_decimal_text(value: object) -> object:
    """Refuse decimal text that is not plain ASCII (before parsing); other values pass through unchanged."""
    if isinstance(value, str) and not _DECIMAL_TEXT.match(value):
        raise ValueError("must be a decimal number written with ASCII digits, such as 12.5")
    return value


EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
"""The widest context (every digit an operation's result needs, the default traps: invalid operation, division by zero,
overflow): `normalize`, `quantize` and `to_integral_value` never round in it (the result's digits are what they cost, not
the precision), nor do sums and products of the amounts the platform keeps. One for every module and call, instead of a
context sized to each value. Shared: use its methods or `localcontext(EXACT)` (a copy); never change its settings."""
UNROUNDED = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact])
"""`EXACT` that refuses to round: an operation whose result would need rounding raises `decimal.Inexact` (the only
signal it traps). For sums and products that must be exact, where a rounded figure would be a wrong one. Shared, as
`EXACT`."""
_ONE = Decimal(1)


def canonical(value: Decimal) -> Decimal:
    """The same value without trailing zeros (``1.500`` -> ``1.5``, ``1E+2`` -> ``100``), never rounded.

    Works at whatever precision the value needs, unlike `Decimal.normalize` under the default
    28-digit context.
    """
    if not value.is_finite():
        raise ValueError(f"not a finite decimal number: {value!r}")
    if value == value.to_integral_value(context=EXACT):
        return value.quantize(_ONE, context=EXACT)
    return value.normalize(context=EXACT)


def plain(value: Decimal) -> str:
    """Canonical text without exponent notation (``1E-18`` -> ``0.000000000000000001``), as JSON carries money."""
    return format(canonical(value), "f")


AVERAGE_PLACES = 8
"""Decimal places an average price is shown with on the wire (rounded half-even)."""

_HALF_EVEN = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])


def to_places(value: Decimal, places: int) -> Decimal:
    """`value` rounded half-even to `places` decimal places, at whatever precision it needs."""
    return _HALF_EVEN.quantize(value, place_step(places))


_PLACE_STEPS: dict[int, Decimal] = {}
_PLACE_STEPS_KEPT = 64


def place_step(places: int) -> Decimal:
    """``1E-{places}``: the last decimal place `places` allow (what `quantize` rounds to), kept once built."""
    step = _PLACE_STEPS.get(places)
    if step is None:
        step = Decimal(1).scaleb(-places)
        if type(places) is int and len(_PLACE_STEPS) < _PLACE_STEPS_KEPT:
            _PLACE_STEPS[places] = step
    return step


def average_text(value: Decimal) -> str:
    """An average price as the wire carries it: rounded half-even to `AVERAGE_PLACES`, then `plain`."""
    return plain(to_places(value, AVERAGE_PLACES))


def decimal_places(value: Decimal) -> int:
    """Number of digits after the decimal point in the value as written (``1.50`` -> 2)."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise ValueError(f"not a finite decimal number: {value!r}")
    return max(0, -exponent)
