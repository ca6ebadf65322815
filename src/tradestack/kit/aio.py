"""Small asyncio helpers shared by the background loops (and the threads that run loops of their own)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from tradestack.kit.logging import get_logger

log = get_logger(__name__)


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; True when it is set.

    Not ``asyncio.wait_for(event.wait(), timeout)``: on Python 3.11, a cancellation that arrives in
    the same loop iteration as the event is swallowed by `wait_for` (it returns the result instead),
    so a background loop that was told to stop goes round again. Seen: the audit chainer's stop
    hanging for its whole close budget after a wake-up raced the cancellation.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A loop for a thread of its own: uvloop where it is installed (as uvicorn's request loop), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def stop_loop_thread(
    thread: threading.Thread | None, loop: asyncio.AbstractEventLoop | None, stopping: asyncio.Event | None, seconds: float
) -> bool:
    """From another loop: set `stopping` (an event of the thread's own `loop`), then wait up to `seconds` for the
    thread to end without blocking the caller's loop; False when it still runs."""
    if loop is not None and stopping is not None:
        with contextlib.suppress(RuntimeError):  # the thread's loop already ended
            loop.call_soon_threadsafe(stopping.set)
    if thread is None:
        return True
    await asyncio.to_thread(thread.join, seconds)
    return not thread.is_alive()


class ThreadSafeLock:
    """An asyncio lock that coroutines of any event loop of this process can share (one per thread).

    `asyncio.Lock` belongs to one loop. This one queues its waiters first come first served, each on
    its own loop, and hands the lock straight to the next one when released, so a waiter on another
    thread's loop starts the moment the holder is done. Not re-entrant; use ``async with``.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    async def acquire(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            with self._mutex:
                queued = waiter in self._waiters
                if queued:
                    self._waiters.remove(waiter)
            if not queued and waiter.done() and not waiter.cancelled():
                self.release()  # handed over just as the wait was cancelled: pass it on
            # (handed over but not delivered yet: `_grant` finds the waiter cancelled and passes it on)
            raise

    def release(self) -> None:
        """Give the lock to the oldest waiter (on its own loop), or free it."""
        while True:
            with self._mutex:
                if not self._waiters:
                    self._held = False
                    return
                waiter = self._waiters.popleft()
            try:
                waiter.get_loop().call_soon_threadsafe(self._grant, waiter)
                return
            except RuntimeError:  # the waiter's loop is closed: nobody will take it there
                continue

    def _grant(self, waiter: asyncio.Future[None]) -> None:
        """On the waiter's loop: the lock is its own now, unless it stopped waiting."""
        if waiter.done():
            self.release()
        else:
            waiter.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *_: object) -> None:
        self.release()


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], *, seconds: float = 2.0, attempts: int = 3
) -> set[asyncio.Task[Any]]:
    """Cancel `tasks` and wait for them to end; a task still running `seconds` later is cancelled again, at most
    `attempts` times in all. Returns the tasks that still run (the caller names them in a warning).

    Not a single ``task.cancel(); await task``: on Python 3.11 a cancellation that meets a library's own timeout
    or wait in the same loop iteration can be swallowed (seen with redis-py), and the task then runs on - awaiting
    it hung the process's stop. Pair this with a flag or event the task's loop checks, so it also ends on its own.
    """
    running = {task for task in tasks if not task.done()}
    for _ in range(attempts):
        if not running:
            break
        for task in running:
            task.cancel()
        _, running = await asyncio.wait(running, timeout=seconds)
    return running


async def stop_tasks(tasks: Iterable[asyncio.Task[Any] | None], what: str, *, seconds: float = 2.0, attempts: int = 3) -> None:
    """End background `tasks` with `cancel_and_wait`: warn about any that still run, and log the error of one
    that raised while it was being stopped (one already done is the caller's to look at).

    The one way this code base stops its tasks: ``task.cancel(); await task`` hangs for good when the
    cancellation is swallowed (see `cancel_and_wait`), as a test's quote pump did on CI.
    """
    running = [task for task in tasks if task is not None and not task.done()]
    left = await cancel_and_wait(running, seconds=seconds, attempts=attempts)
    if left:
        log.warning(f"{what} did not stop; left behind", tasks=sorted(task.get_name() for task in left))
    for task in running:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            log.warning(f"{what} ended with an error", task=task.get_name(), error=f"{type(error).__name__}: {error}")
