"""Candle answers reused for a moment: until their deadline, never after bars were stored, bounded."""

from __future__ import annotations

from tradestack.marketdata.recent import RecentAnswers, bars_stored


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_reused_until_its_deadline() -> None:
    clock = FakeMonotonic()
    answers = RecentAnswers(reuse_seconds=1.0, monotonic=clock)
    answers.put("k", b"body", answers.generation())
    clock.now += 0.99
    assert answers.get("k") == b"body"
    clock.now += 0.01
    assert answers.get("k") is None
    assert answers.get("other") is None


def test_bars_stored_forget_every_answer_and_refuse_one_built_meanwhile() -> None:
    answers = RecentAnswers(monotonic=FakeMonotonic())
    answers.put("k", b"old", answers.generation())
    building = answers.generation()
    bars_stored()
    assert answers.get("k") is None
    answers.put("k", b"built from bars read before the write", building)
    assert answers.get("k") is None
    answers.put("k", b"new", answers.generation())
    assert answers.get("k") == b"new"


def test_the_oldest_answer_goes_first_beyond_the_bound() -> None:
    answers = RecentAnswers(max_entries=2, monotonic=FakeMonotonic())
    for key in ("a", "b", "c"):
        answers.put(key, key.encode(), answers.generation())
    assert [answers.get(key) for key in ("a", "b", "c")] == [None, b"b", b"c"]
