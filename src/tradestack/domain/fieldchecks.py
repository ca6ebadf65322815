"""Type and range checks of the fields of order requests and order events (`domain.orders`).

Each raises TypeError or ValueError naming the field; the common case (the right type, in range)
returns after a few identity tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Clamped, Context, Decimal, DecimalException, InvalidOperation, Overflow, Rounded
from enum import StrEnum

from tradestack.core.money import plain

MAX_DECIMAL_DIGITS = 40
"""Largest number of digits, and largest absolute exponent, of a Decimal in a request or event."""

_NO_OFFSET = timedelta(0)
# `plus` in this context raises exactly when a finite Decimal is out of range: more than MAX_DECIMAL_DIGITS
# digits, or an exponent below -MAX_DECIMAL_DIGITS (both round: Rounded) or above it (Clamped). One C call
# instead of building `as_tuple()` (tests/unit/domain/test_orders.py checks the two agree).
_BOUNDED = Context(
    prec=MAX_DECIMAL_DIGITS,
    Emin=-1,
    Emax=2 * MAX_DECIMAL_DIGITS - 1,
    clamp=1,
    traps=[Rounded, Clamped, Overflow, InvalidOperation],
)


def in_range(value: Decimal) -> bool:
    """Whether finite `value` has at most `MAX_DECIMAL_DIGITS` digits and an exponent within +/- that many."""
    try:
        _BOUNDED.plus(value)
    except DecimalException:
        return False
    return True


def require_decimal(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if type(value) is not Decimal and not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__} {value!r}")
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite Decimal, got {value!r}")
    if not in_range(value):
        raise ValueError(
            f"{name} {value} is out of range: at most {MAX_DECIMAL_DIGITS} digits and an exponent within +/-{MAX_DECIMAL_DIGITS}"
        )


def require_positive(name: str, value: Decimal) -> None:
    require_decimal(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {plain(value)}")


def require_str(name: str, value: object, *, non_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__} {value!r}")
    if non_empty and not value.strip():
        raise ValueError(f"{name} must not be empty")


def require_member(name: str, value: object, enum: type[StrEnum]) -> None:
    if not isinstance(value, enum):
        valid = ", ".join(member.value for member in enum)
        raise TypeError(f"{name} must be a member of {enum.__name__} ({valid}), got {type(value).__name__} {value!r}")


def require_utc(name: str, value: object) -> None:
    if type(value) is datetime and value.tzinfo is UTC:
        return
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() != _NO_OFFSET:
        raise ValueError(f"{name} must be a timezone-aware UTC datetime, got {value!r}")
