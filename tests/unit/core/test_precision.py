"""`Precision.problem`: its quick pass agrees with the full check on every value, as written in any form."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradestack.core.precision import AMOUNT, PRICE, VOLUME, Precision


def full_check(limits: Precision, value: Decimal) -> str | None:
    """What `problem` answers, worked out the long way (on the value without trailing zeros)."""
    return limits.digits_problem(value) if value.is_finite() else f"{value} is not a finite number"


written = st.builds(
    lambda sign, digits, exponent: Decimal((sign, tuple(int(c) for c in str(digits)), exponent)),
    st.integers(0, 1),
    st.integers(0, 10**45),
    st.integers(-60, 40),
)


@given(written, st.sampled_from([PRICE, AMOUNT, VOLUME, Precision(4, 0), Precision(3, 3)]))
def test_problem_agrees_with_the_full_check(value: Decimal, limits: Precision) -> None:
    assert limits.problem(value) == full_check(limits, value)


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        ("190.01", True),
        ("1.50000000000000000000000000", True),  # finer as written than allowed, but only by trailing zeros
        ("0E-30", True),
        ("-0.0000000001", True),
        ("0.00000000001", False),  # 11 places for a price
        ("99999999999999.9999999999", True),
        ("100000000000000", False),  # 15 integer digits for a price
        ("1E+14", False),
        ("1E+13", True),
        ("1E-999999", False),
        ("1E+999999", False),
    ],
)
def test_a_price_fits_exactly_when_its_digits_do(value: str, fits: bool) -> None:
    assert (PRICE.problem(Decimal(value)) is None) is fits
    assert PRICE.problem(Decimal(value)) == full_check(PRICE, Decimal(value))


def test_not_a_number_never_fits() -> None:
    assert PRICE.problem(Decimal("NaN")) == "NaN is not a finite number"
    assert AMOUNT.problem(Decimal("-Infinity")) == "-Infinity is not a finite number"
