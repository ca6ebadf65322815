"""`tradestack serve signals` (run_signals): keeps the promoted model's signals fresh in the cache, survives having none."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import httpx

from tradestack.kit.aio import stop_tasks
from tradestack.kit.runtime import Runtime
from tradestack.marketdata import datasets
from tradestack.marketdata.flows import import_datasets
from tradestack.signals.schemas import SignalList
from tradestack.signals.service import SignalService
from tradestack.signals.tasks import run_signals

from ..conftest import MakeUser
from .test_signals_api import _subset


async def _cached(runtime: Runtime, version: str) -> SignalList | None:
    raw = await runtime.cache.get(f"signals:{version}:latest")
    return SignalList.model_validate_json(raw) if raw is not None else None


async def _until(condition: object, seconds: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "serve signals did not refresh in time"
        await asyncio.sleep(0.05)


async def test_serve_signals_refreshes_the_cache_as_models_and_bars_arrive(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    user = await make_user()
    cut = datetime(2013, 2, 15, tzinfo=UTC)
    full = _subset()
    early = datasets.LoadedDataSet(
        full.dataset, {k: dataclasses.replace(v, bars=[b for b in v.bars if b.ts <= cut]) for k, v in full.series.items()}
    )
    await import_datasets(runtime, [early])
    task = asyncio.create_task(run_signals(runtime, interval=0.1))
    try:
        await asyncio.sleep(0.3)
        assert not task.done()  # no promoted model yet: it says so and keeps going
        service = SignalService(runtime)
        trained = await service.train(evaluate=False, rounds=10)
        await service.promote(trained.model.version)
        version = trained.model.version

        async def refreshed_to(day: str) -> bool:
            cached = await _cached(runtime, version)
            return cached is not None and cached.as_of.isoformat() == day

        await _until(lambda: refreshed_to("2013-02-15"))
        served = (await client.get("/api/trading/signals", headers=user.headers)).json()
        cached = await _cached(runtime, version)
        assert cached is not None
        assert served["model_version"] == version
        assert [s["score"] for s in served["signals"]] == [s.score for s in cached.signals]
        await import_datasets(runtime, [full])  # the next days' bars arrive: the next refresh serves the latest day
        latest = max(b.ts for series in full.series.values() for b in series.bars).date().isoformat()
        await _until(lambda: refreshed_to(latest))
        assert (await client.get("/api/trading/signals", headers=user.headers)).json()["as_of"] == latest
    finally:
        await stop_tasks([task], "serve signals")
