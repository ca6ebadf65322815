"""Start-up, shutdown and draining.

On SIGTERM (or SIGINT) the process first marks itself draining, so ``/api/ready`` answers
503 and a load balancer stops sending traffic; after ``drain_seconds`` it hands the signal to
uvicorn, which stops accepting connections, lets in-flight requests finish (up to
``graceful_timeout_seconds``) and exits.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI

from tradestack.kit import gcpolicy
from tradestack.kit.aio import stop_tasks
from tradestack.kit.logging import get_logger
from tradestack.kit.loopwatch import LoopWatch
from tradestack.kit.metrics import mark_worker_exited
from tradestack.kit.runtime import Runtime
from tradestack.kit.web import DrainState

log = get_logger(__name__)
DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_drain_handlers(drain: DrainState, delay_seconds: float) -> Callable[[], None]:
    """Wrap the server's signal handlers so a signal first starts draining; return an undo function."""
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}
    for sig in DRAIN_SIGNALS:
        handler = signal.getsignal(sig)
        if not callable(handler):
            continue  # not under a server that handles the signal (tests, scripts)
        previous[sig] = handler

        def on_signal(signum: int, frame: FrameType | None, handler: Callable[[int, FrameType | None], Any] = handler) -> None:
            if drain.draining or delay_seconds <= 0:
                drain.begin()
                handler(signum, frame)
                return
            drain.begin()
            loop.call_soon_threadsafe(loop.call_later, delay_seconds, handler, signum, frame)

        signal.signal(sig, on_signal)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


async def start_checkpoints(runtime: Runtime) -> None:
    """On SQLite (a file), checkpoint the write-ahead log in the background (`Database.checkpoints`) until the runtime
    closes: the process's writer connection never does (its commits hold the process's writer lock)."""
    if runtime.database.checkpoint_wal_needed:
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.database.checkpoints(stop), name="sqlite-checkpoints")

        async def stop_checkpoints() -> None:
            stop.set()
            await stop_tasks([task], "sqlite checkpoints")

        runtime.closers.append(stop_checkpoints)


def lifespan_for(
    runtime_factory: Callable[[], Runtime], on_start: Sequence[Callable[[Runtime], Awaitable[None]]] = ()
) -> Callable[[FastAPI], Any]:
    """A lifespan that opens the runtime, runs the modules' start hooks (background tasks register
    their own stop in `Runtime.closers`), installs drain handlers and closes everything at exit."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = runtime_factory()
        drain = DrainState()
        app.state.runtime = runtime
        app.state.drain = drain
        for hook in on_start:
            await hook(runtime)
        # Everything loaded at start-up (modules, catalogues, replayed history) lives as long as the
        # process: keep it out of the cyclic collector, whose full passes otherwise stall the loop; and
        # (by default) what survives a full pass later, such as the objects of each WebSocket connection.
        try:
            async with gcpolicy.governed(freeze_survivors=runtime.settings.gc_freeze_survivors):
                watch = None
                if runtime.settings.loop_stall_ms > 0:
                    stall = runtime.settings.loop_stall_ms / 1000
                    watch = LoopWatch(tick=min(0.02, stall / 2), stall=stall)
                    watch.start(asyncio.get_running_loop())
                restore = install_drain_handlers(drain, runtime.settings.drain_seconds)
                log.info("started", environment=runtime.settings.environment, database=runtime.database.dialect)
                try:
                    yield
                finally:
                    drain.begin()
                    restore()
                    if watch is not None:
                        watch.stop()
        finally:
            await runtime.close()
            mark_worker_exited()
            log.info("stopped")

    return lifespan
