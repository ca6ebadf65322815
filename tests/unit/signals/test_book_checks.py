"""The checks /predict applies to a provided or live book equal a straightforward reading of them, refusals included."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradestack.core.errors import ValidationFailedError
from tradestack.signals.service import _book_arrays


def reference(bids: list[Any], asks: list[Any], levels: int, what: str) -> list[list[float]]:
    """The checks written out one by one (the earlier implementation)."""
    if len(bids) < levels or len(asks) < levels:
        raise ValidationFailedError(f"{what}: the model needs {levels} levels a side, got {len(bids)} bids and {len(asks)} asks")
    try:
        columns = [[float(level[i]) for level in side[:levels]] for side in (bids, asks) for i in (0, 1)]
    except (TypeError, ValueError, IndexError):
        raise ValidationFailedError(f"{what}: every level must be [price, size] numbers") from None
    bid_price, ask_price = columns[0], columns[2]
    if not all(math.isfinite(v) and v > 0 for column in columns for v in column):
        raise ValidationFailedError(f"{what}: prices and sizes must be positive finite numbers")
    if any(a <= b for a, b in itertools.pairwise(bid_price)) or any(a >= b for a, b in itertools.pairwise(ask_price)):
        raise ValidationFailedError(f"{what}: bids must fall and asks rise, best level first")
    if bid_price[0] >= ask_price[0]:
        raise ValidationFailedError(f"{what}: the book is crossed (best bid {bid_price[0]} >= best ask {ask_price[0]})")
    return columns


def outcome(check: Any, bids: list[Any], asks: list[Any], levels: int) -> Any:
    try:
        return check(bids, asks, levels, "book")
    except ValidationFailedError as exc:
        return str(exc)


values = st.one_of(
    st.floats(min_value=-5, max_value=1e6),
    st.sampled_from([100.0, 100.5, 101.0, 99.5, 99.0, 1.0, 0.0, "100.25", "abc", None, math.nan, math.inf]),
)
level = st.one_of(st.tuples(values, values).map(list), st.lists(values, max_size=3))


@settings(max_examples=600, deadline=None)
@given(bids=st.lists(level, min_size=0, max_size=5), asks=st.lists(level, min_size=0, max_size=5), levels=st.integers(1, 4))
def test_random_books_get_the_same_answer_as_the_reference(bids: list[Any], asks: list[Any], levels: int) -> None:
    assert outcome(_book_arrays, bids, asks, levels) == outcome(reference, bids, asks, levels)


@pytest.mark.parametrize(
    ("bids", "asks", "message"),
    [
        ([[100, 1], [99, 2]], [[101, 1], [102, 2]], None),
        ([[100, 1], [100, 2]], [[101, 1], [102, 2]], "bids must fall"),
        ([[100, 1], [99, 2]], [[101, 1], [101, 2]], "bids must fall"),
        ([[100, 1], [99, 2]], [[102, 1], [101, 2]], "bids must fall"),
        ([[100, 1], [99, math.nan]], [[101, 1], [102, 2]], "positive finite"),
        ([[100, 1], [99, 2]], [[101, math.inf], [102, 2]], "positive finite"),
        ([[100, 1], [99, 0]], [[101, 1], [102, 2]], "positive finite"),
        ([[101, 1], [99, 2]], [[101, 1], [102, 2]], "crossed"),
        ([[100, "x"], [99, 2]], [[101, 1], [102, 2]], "[price, size] numbers"),
        ([[100, 1]], [[101, 1], [102, 2]], "needs 2 levels"),
    ],
)
def test_each_refusal(bids: list[Any], asks: list[Any], message: str | None) -> None:
    answer = outcome(_book_arrays, bids, asks, 2)
    assert answer == outcome(reference, bids, asks, 2)
    if message is None:
        assert isinstance(answer, list)
    else:
        assert message in answer
