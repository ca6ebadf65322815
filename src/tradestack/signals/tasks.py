"""Keeping the promoted model's signals computed: `tradestack serve signals`, and the API's own warmer when its cache
is its own (no Redis: nothing else fills it)."""

from __future__ import annotations

import asyncio
import importlib
import sys

from tradestack.core.errors import TradestackError
from tradestack.kit.aio import stop_tasks, wait_event
from tradestack.kit.logging import get_logger
from tradestack.kit.outages import count_failure
from tradestack.kit.runtime import Runtime
from tradestack.signals import artifacts
from tradestack.signals.service import COMPUTING, SignalService

log = get_logger(__name__)

WARM_INTERVAL_SECONDS = 2.0
"""How often the API's warmer looks for a newly promoted model or an expired answer (one indexed read and a cache
look-up when there is nothing to do)."""
FIRST_TRAINING_POLL_SECONDS = 0.5
"""How often it looks while `up`'s first start trains the first model (users are waiting for it)."""


async def run_signals(runtime: Runtime, interval: float) -> None:
    """Load the promoted model once and recompute its signals into the cache every `interval` seconds."""
    service = SignalService(runtime)
    while True:
        try:
            answer = await service.refresh()
            log.info("signals_refreshed", model=answer.model_version, as_of=answer.as_of.isoformat(), symbols=len(answer.signals))
        except TradestackError as exc:
            log.warning("signals_not_refreshed", reason=exc.detail)
        await asyncio.sleep(interval)


async def start_signals_warmer(runtime: Runtime) -> None:
    """An API start hook: with a process-local cache, compute the promoted model's signals in the background at
    start-up, after every promotion (a first start's trainer promotes from a process of its own) and when the
    cached answer expires, so that requests find them computed. Readiness does not wait for it."""
    if runtime.settings.redis_url is not None:
        return  # a shared cache: `tradestack serve signals` keeps it filled for every API process
    stopping = asyncio.Event()
    service = SignalService(runtime)

    async def loop() -> None:
        while not stopping.is_set():
            try:
                answer = await service.warm()
                if answer is not None:
                    log.info("signals_warmed", model=answer.model_version, as_of=answer.as_of.isoformat())
            except TradestackError as exc:
                log.warning("signals_not_warmed", reason=exc.detail)
            except Exception as exc:  # noqa: BLE001 - the warmer must never kill the process; requests compute themselves
                count_failure("signals_warmer", exc, "signals warmer failed")
            training = artifacts.first_training_in_progress(runtime.settings.data_dir)
            if training and "lightgbm" not in sys.modules:
                # Imported now, off the event loop, rather than when the first model arrives (1.6-2.1 s here).
                await asyncio.to_thread(importlib.import_module, "lightgbm")
            await wait_event(stopping, FIRST_TRAINING_POLL_SECONDS if training else WARM_INTERVAL_SECONDS)

    task = asyncio.create_task(loop(), name="signals-warmer")

    async def stop() -> None:
        stopping.set()
        await stop_tasks([task, *runtime.components.get_or_create(COMPUTING, dict).values()], "signals warmer")

    runtime.closers.append(stop)
