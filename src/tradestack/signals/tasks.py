"""`tradestack serve signals`: keep the promoted model's signals fresh in the shared cache."""

from __future__ import annotations

import asyncio

from tradestack.core.errors import TradestackError
from tradestack.kit.logging import get_logger
from tradestack.kit.runtime import Runtime
from tradestack.signals.service import SignalService

log = get_logger(__name__)


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
