"""RecentValues: each value until its deadline, the one put longest ago dropped first, every drop reported."""

from __future__ import annotations

import pytest

from tradestack.kit.recent import RecentValues


class Clock:
    now = 100.0


def test_a_value_is_reused_until_its_deadline() -> None:
    clock = Clock()
    values: RecentValues[str, bytes] = RecentValues(1.0, 10, lambda: clock.now)
    values.put("k", b"body")
    clock.now += 0.99
    assert values.get("k") == b"body"
    clock.now += 0.01
    assert values.get("k") is None
    assert values.get("other") is None
    assert len(values) == 0  # the expired value was forgotten when asked for


def test_the_value_put_longest_ago_goes_first_beyond_the_bound() -> None:
    values: RecentValues[str, bytes] = RecentValues(1.0, 2, lambda: Clock.now)
    for key in ("a", "b", "c"):
        values.put(key, key.encode())
    assert [values.get(key) for key in ("a", "b", "c")] == [None, b"b", b"c"]
    values.put("b", b"again")  # put again: now the newest
    values.put("d", b"d")
    assert [values.get(key) for key in ("b", "c", "d")] == [b"again", None, b"d"]


def test_every_drop_is_reported_however_the_value_leaves() -> None:
    clock = Clock()
    dropped: list[tuple[str, int]] = []
    values: RecentValues[str, int] = RecentValues(1.0, 2, lambda: clock.now, lambda key, value: dropped.append((key, value)))
    values.put("a", 1)
    values.put("a", 2)  # replaced
    values.put("b", 3)
    values.put("c", 4)  # evicts a
    values.forget("b")
    values.forget("missing")
    clock.now += 1.0
    assert values.get("c") is None  # expired
    assert dropped == [("a", 1), ("a", 2), ("b", 3), ("c", 4)]


def test_the_bound_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        RecentValues(1.0, 0)
