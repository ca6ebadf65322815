"""Candle answers reused for a moment: until their deadline, never after bars were stored, bounded."""

from __future__ import annotations

from tradestack.marketdata.recent import RecentAnswers, bars_stored


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_reused_until_its_deadline_within_the_bound() -> None:
    clock = FakeMonotonic()
    answers = RecentAnswers(reuse_seconds=1.0, max_entries=2, monotonic=clock)
    for key in ("a", "b", "c"):
        answers.put(key, key.encode(), answers.generation())
    assert [answers.get(key) for key in ("a", "b", "c")] == [None, b"b", b"c"]
    clock.now += 1.0
    assert answers.get("b") is None


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
