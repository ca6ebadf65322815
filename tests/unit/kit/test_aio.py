"""`wait_event` never swallows a cancellation, even one that races the event; `ThreadSafeLock` across loops."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from structlog.testing import capture_logs

from tradestack.kit.aio import ThreadSafeLock, cancel_and_wait, stop_tasks, wait_event


async def test_a_cancellation_racing_the_event_still_stops_the_loop() -> None:
    event = asyncio.Event()
    rounds = 0

    async def background() -> None:
        nonlocal rounds
        while True:
            await wait_event(event, 30)
            event.clear()
            rounds += 1

    task = asyncio.create_task(background())
    await asyncio.sleep(0)  # the loop now waits for the event
    event.set()
    task.cancel()  # in the same iteration as the event: wait_for would return the event's result instead
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done
    assert task.cancelled()


async def test_the_event_or_the_timeout_ends_the_wait() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 5) is True


def _loop_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return loop, thread


async def test_the_thread_safe_lock_queues_holders_of_two_loops_one_at_a_time() -> None:
    lock = ThreadSafeLock()
    other, thread = _loop_thread()
    inside = 0
    most = 0
    order: list[str] = []

    async def hold(name: str) -> None:
        nonlocal inside, most
        for _ in range(20):
            async with lock:
                inside += 1
                most = max(most, inside)
                order.append(name)
                time.sleep(0.001)  # a transaction's work, holding the thread
                await asyncio.sleep(0)
                inside -= 1

    try:
        there = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(hold("other"), other))
        await asyncio.wait_for(asyncio.gather(hold("here"), there), 10)
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(5)
        other.close()
    assert most == 1
    assert order.count("here") == order.count("other") == 20
    assert not lock.locked()


async def test_a_cancelled_waiter_never_keeps_the_thread_safe_lock() -> None:
    lock = ThreadSafeLock()
    await lock.acquire()
    waiting = asyncio.create_task(lock.acquire())
    await asyncio.sleep(0)
    lock.release()  # handed to the waiter ...
    waiting.cancel()  # ... which is cancelled before it runs: it passes the lock on
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wait_for(lock.acquire(), 1)
    lock.release()
    assert not lock.locked()


class _Swallower:
    """A loop that, like redis-py was seen doing, swallows the first `swallow` cancellations and runs on."""

    def __init__(self, swallow: int) -> None:
        self.swallow = swallow
        self.swallowed = 0

    async def run(self) -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if self.swallowed >= self.swallow:
                    raise
                self.swallowed += 1


async def test_cancel_and_wait_cancels_again_a_task_that_swallowed_its_cancellation() -> None:
    swallower = _Swallower(swallow=1)
    task = asyncio.create_task(swallower.run())
    await asyncio.sleep(0.05)
    assert await cancel_and_wait([task], seconds=0.2) == set()
    assert task.cancelled()
    assert swallower.swallowed == 1


async def test_cancel_and_wait_returns_what_still_runs_after_its_attempts() -> None:
    swallower = _Swallower(swallow=5)
    task = asyncio.create_task(swallower.run())
    await asyncio.sleep(0.05)
    assert await cancel_and_wait([task], seconds=0.05, attempts=2) == {task}
    assert swallower.swallowed == 2
    await cancel_and_wait([task], seconds=0.5, attempts=5)
    assert task.done()


async def test_stop_tasks_ends_a_swallower_and_reports_what_it_could_not_end() -> None:
    ended, stubborn = _Swallower(swallow=1), _Swallower(swallow=10)
    ended_task = asyncio.create_task(ended.run(), name="ended")
    stubborn_task = asyncio.create_task(stubborn.run(), name="stubborn")
    await asyncio.sleep(0.05)
    with capture_logs() as logs:
        await stop_tasks([ended_task, None, stubborn_task], "pump", seconds=0.05, attempts=2)
    assert ended_task.cancelled()
    assert not stubborn_task.done()
    assert [(entry["event"], entry["tasks"]) for entry in logs] == [("pump did not stop; left behind", ["stubborn"])]
    await cancel_and_wait([stubborn_task], seconds=0.5, attempts=20)


async def test_stop_tasks_logs_the_error_a_task_raised_while_stopping_but_not_one_already_seen() -> None:
    async def fails_when_cancelled() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise RuntimeError("flush failed") from None

    async def already_failed() -> None:
        raise ValueError("handled by the caller")

    done = asyncio.create_task(already_failed(), name="done")
    stopping = asyncio.create_task(fails_when_cancelled(), name="stopping")
    await asyncio.sleep(0.01)
    assert isinstance(done.exception(), ValueError)
    with capture_logs() as logs:
        await stop_tasks([done, stopping], "recorder")
    assert [(entry["event"], entry["task"], entry["error"]) for entry in logs] == [
        ("recorder ended with an error", "stopping", "RuntimeError: flush failed")
    ]
