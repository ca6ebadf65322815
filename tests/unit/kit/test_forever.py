"""`kit.outages.forever`: a background task that fails is run again; an outage is counted as one, a bug as a bug."""

from __future__ import annotations

import asyncio

import redis.exceptions
from prometheus_client import REGISTRY

from tradestack.kit.outages import forever


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_bug_counts_as_a_task_failure_and_an_outage_as_an_outage_and_both_are_retried() -> None:
    task_name = "test_forever_task"
    outcomes: list[BaseException | None] = [KeyError("no such instrument"), redis.exceptions.ConnectionError("gone"), None]
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

    failures = _sample("background_task_failures_total", task=task_name)
    cache = _sample("backend_unavailable_total", backend="cache", operation=task_name)
    database = _sample("backend_unavailable_total", backend="database", operation=task_name)
    task = asyncio.create_task(forever(task_name, work, initial=0.001, cap=0.001))
    try:
        await asyncio.wait_for(ended.wait(), 5)
    finally:
        task.cancel()
    assert calls == len(outcomes) + 1  # the bug, the outage and a normal end were each followed by another run
    assert _sample("background_task_failures_total", task=task_name) == failures + 1
    assert _sample("backend_unavailable_total", backend="cache", operation=task_name) == cache + 1
    assert _sample("backend_unavailable_total", backend="database", operation=task_name) == database
