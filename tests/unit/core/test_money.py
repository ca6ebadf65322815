from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradestack.core.money import D, canonical, decimal_places, plain


def test_float_is_refused() -> None:
    with pytest.raises(TypeError, match="exact"):
        D(0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["abc", "NaN", "Infinity", ""])
def test_non_finite_or_garbage_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="decimal"):
        D(bad)


@pytest.mark.parametrize(
    ("raw", "expected"), [("1.500", "1.5"), ("100", "100"), ("1E+2", "100"), ("0.000", "0"), ("-2.50", "-2.5")]
)
def test_canonical_strips_zeros_without_exponent(raw: str, expected: str) -> None:
    assert str(canonical(Decimal(raw))) == expected


@given(st.decimals(allow_nan=False, allow_infinity=False, places=8, min_value=-(10**12), max_value=10**12))
def test_canonical_keeps_the_value(value: Decimal) -> None:
    result = canonical(value)
    assert result == value
    assert "E" not in plain(result)
    assert Decimal(plain(result)) == value


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10000000000.000000000000000001", "10000000000.000000000000000001"),
        ("99999999999999999999.999999999999999999000", "99999999999999999999.999999999999999999"),
        ("1E+40", "10000000000000000000000000000000000000000"),
        ("0.000000000000000001", "0.000000000000000001"),
    ],
)
def test_canonical_never_rounds_long_values(raw: str, expected: str) -> None:
    assert plain(Decimal(raw)) == expected
    assert canonical(Decimal(raw)) == Decimal(raw)


def test_decimal_places_counts_written_digits() -> None:
    assert decimal_places(Decimal("1.50")) == 2
    assert decimal_places(Decimal("7")) == 0
