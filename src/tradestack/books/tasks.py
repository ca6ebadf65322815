"""The equity recorder: every `equity_record_seconds`, each account's equity in its base currency is stored.

It runs where the engine runs, once per installation: inside `tradestack up` (and an API process that
runs the engine in process), and beside `tradestack serve engine --shard 0` in production. Two
recorders valuing the same instant do no harm (one point per account and instant).
"""

from __future__ import annotations

import asyncio

from tradestack.books.service import record_equity
from tradestack.kit.aio import stop_tasks
from tradestack.kit.logging import get_logger
from tradestack.kit.outages import count_failure
from tradestack.kit.runtime import Runtime

log = get_logger(__name__)


async def record_equity_forever(runtime: Runtime) -> None:
    """Record now, then every `equity_record_seconds`; an outage skips a round, never stops the loop."""
    interval = runtime.settings.equity_record_seconds
    while True:
        try:
            await record_equity(runtime)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a lost database or cache, or a bug (logged), must not stop the recorder
            count_failure("equity_recorder", exc, "equity recording failed")
        await asyncio.sleep(interval)


async def start_equity_recorder(runtime: Runtime) -> None:
    """An API start hook: record equity in the background when this process runs the engine."""
    if not runtime.settings.effective_engine_in_process:
        return
    task = asyncio.create_task(record_equity_forever(runtime), name="equity-recorder")

    async def stop() -> None:
        await stop_tasks([task], "equity recorder")

    runtime.closers.append(stop)
