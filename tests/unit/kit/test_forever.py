"""`kit.outages.forever` and `count_failure`: a background task that fails goes on; an outage is counted as one, a bug
as a bug."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import redis.exceptions

from tradestack.kit.outages import forever

from ...conftest import metric_sample  # type: ignore[import-not-found]


class _LockTimeout(Exception):  # noqa: N818 - as asyncpg's LockNotAvailableError is seen: by its SQLSTATE
    sqlstate = "55P03"


async def test_a_bug_counts_as_a_task_failure_and_an_outage_as_an_outage_and_both_are_retried() -> None:
    task_name = "test_forever_task"
    outcomes: list[BaseException | None] = [
        KeyError("no such instrument"),
        redis.exceptions.ConnectionError("gone"),
        _LockTimeout("canceling statement due to lock timeout"),  # contention: neither counted
        None,
    ]
    calls = 0
    ended = asyncio.Event()

    async def work() -> None:
        nonlocal calls
        calls += 1
        if calls > len(outcomes):
            ended.set()
            await asyncio.Event().wait()  # parked, as a live subscription is
        outcome = outcomes[calls - 1]
        if outcome is not None:
            raise outcome

    failures = metric_sample("background_task_failures_total", task=task_name)
    cache = metric_sample("backend_unavailable_total", backend="cache", operation=task_name)
    database = metric_sample("backend_unavailable_total", backend="database", operation=task_name)
    task = asyncio.create_task(forever(task_name, work, initial=0.001, cap=0.001))
    try:
        await asyncio.wait_for(ended.wait(), 5)
    finally:
        task.cancel()
    assert calls == len(outcomes) + 1  # the bug, the outage, the contention and a normal end: each followed by a run
    assert metric_sample("background_task_failures_total", task=task_name) == failures + 1
    assert metric_sample("backend_unavailable_total", backend="cache", operation=task_name) == cache + 1
    assert metric_sample("backend_unavailable_total", backend="database", operation=task_name) == database


async def test_the_equity_recorder_counts_a_bug_as_a_task_failure_and_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """One of `count_failure`'s callers: a recording that raises a bug is counted as `equity_recorder`'s failure, and
    the next round records."""
    from tradestack.books import tasks

    rounds: list[str] = []
    recorded = asyncio.Event()

    async def record_equity(_runtime: object) -> None:
        rounds.append("round")
        if len(rounds) == 1:
            raise ZeroDivisionError("a valuation divided by zero")
        recorded.set()

    monkeypatch.setattr(tasks, "record_equity", record_equity)
    runtime = SimpleNamespace(settings=SimpleNamespace(equity_record_seconds=0.001))
    failures = metric_sample("background_task_failures_total", task="equity_recorder")
    recorder = asyncio.create_task(tasks.record_equity_forever(runtime))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(recorded.wait(), 5)
    finally:
        recorder.cancel()
    assert len(rounds) == 2
    assert metric_sample("background_task_failures_total", task="equity_recorder") == failures + 1
