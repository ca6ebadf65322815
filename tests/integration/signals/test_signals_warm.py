"""Signals before the first model (being trained, or none), warmed in the background, one computation for many."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import httpx
import lightgbm as lgb
import numpy as np
import pytest

from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.signals import alpha, artifacts, tasks
from tradestack.signals.schemas import SignalList
from tradestack.signals.service import FIRST_TRAINING_RETRY_SECONDS, SignalService

from ...conftest import metric_sample  # type: ignore[import-not-found]
from ..conftest import MakeUser
from .test_signals_api import _promoted, _store, _subset, _tamper


async def test_signals_say_the_first_model_is_being_trained_with_retry_after_else_how_to_train_one(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    user = await make_user()
    await _store(runtime)
    data_dir = runtime.settings.data_dir
    artifacts.mark_first_training(data_dir, os.getpid())  # what `tradestack up` does before its first start trains
    try:
        for answer in (
            await client.get("/api/trading/signals", headers=user.headers),
            await client.post("/api/trading/signals", json={"symbol": "AAPL", "model": "lightgbm"}, headers=user.headers),
        ):
            assert answer.status_code == 409, answer.text
            assert "first alpha model is being trained" in answer.json()["detail"]
            assert "retry in a few seconds" in answer.json()["detail"]
            assert answer.headers["Retry-After"] == str(FIRST_TRAINING_RETRY_SECONDS)
        ended = subprocess.Popen([sys.executable, "-c", "pass"])
        ended.wait()
        artifacts.mark_first_training(data_dir, ended.pid)  # the trainer was killed: nothing is coming
        stale = await client.get("/api/trading/signals", headers=user.headers)
    finally:
        artifacts.clear_first_training(data_dir)
    none = await client.post("/api/trading/signals", json={"symbol": "AAPL"}, headers=user.headers)
    for answer in (stale, none):
        assert answer.status_code == 409, answer.text
        detail = answer.json()["detail"]
        assert "no promoted alpha model" in detail
        assert "tradestack signals train" in detail
        assert "tradestack signals promote" in detail
        assert "Retry-After" not in answer.headers


async def _cached(runtime: Runtime, version: str) -> SignalList | None:
    raw = await runtime.cache.get(f"signals:{version}:latest")
    return SignalList.model_validate_json(raw) if raw is not None else None


async def test_the_promoted_models_signals_are_warmed_and_equal_a_fresh_computation_from_the_whole_history(
    runtime: Runtime,
) -> None:
    service, trained = await _promoted(runtime)
    version = trained.model.version
    if runtime.settings.redis_url is None:
        # The API's warmer computes them after the promotion, without a request (bounded wait, not a timing).
        deadline = asyncio.get_running_loop().time() + 60
        while await _cached(runtime, version) is None:
            assert asyncio.get_running_loop().time() < deadline, "the promoted model's signals were not warmed"
            await asyncio.sleep(0.05)
    else:
        # A shared cache is `serve signals`' to fill; `warm` fills it when empty.
        assert await service.warm() is not None
    warmed = await _cached(runtime, version)
    assert warmed is not None
    assert await service.warm() is None  # already there: nothing to do
    assert await service.refresh() == warmed  # computed afresh: the same answer for (version, as-of day)
    assert warmed.as_of == date(2013, 3, 1)
    # The scores equal the model applied to the features of the whole stored history on that day.
    booster = lgb.Booster(model_file=str(trained.directory / "model.txt"))
    panel = alpha.panel_from_bars({s: series.bars for (s, _), series in _subset().series.items()})
    t = panel.dates.index(warmed.as_of)
    expected = dict(zip(panel.symbols, booster.predict(panel.features()[1][t]), strict=True))
    assert {s.symbol: s.score for s in warmed.signals} == expected
    assert [s.rank for s in warmed.signals] == [1, 2, 3, 4]


async def test_concurrent_first_requests_share_one_computation(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user()
    await _store(runtime)
    service = SignalService(runtime)
    trained = await service.train(evaluate=False, rounds=10)
    built: list[int] = []
    build = alpha.panel_from_bars

    def counting_build(*args: object, **kwargs: object) -> alpha.Panel:
        built.append(1)
        return build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(alpha, "panel_from_bars", counting_build)
    await service.promote(trained.model.version)
    answers = await asyncio.gather(
        *[client.get("/api/trading/signals", headers=user.headers) for _ in range(4)],
        *[client.post("/api/trading/signals", json={"symbol": s}, headers=user.headers) for s in ("AAPL", "IBM")],
        service.ranked(),
    )
    responses: list[httpx.Response] = answers[:6]  # type: ignore[assignment]
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert len({r.content for r in responses[:4]}) == 1
    # One panel for all of them (the warmer, when it started first, shares the same computation).
    assert built == [1]
    assert np.isfinite([s["score"] for s in responses[0].json()["signals"]]).all()


async def test_a_model_that_fails_to_warm_is_not_retried_every_few_seconds_and_requests_still_say_why(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    from tradestack.core.errors import ServiceUnavailableError

    user = await make_user()
    service, trained = await _promoted(runtime)
    _tamper(trained)
    with contextlib.suppress(ServiceUnavailableError):  # unless the API's warmer met the failure first
        await service.warm()
    assert await service.warm() is None  # failed a moment ago: left until the cached answer's lifetime has passed
    refused = await client.get("/api/trading/signals", headers=user.headers)
    assert refused.status_code == 503
    assert "fingerprint" in refused.json()["detail"]


async def test_a_warm_that_fails_on_a_bug_is_counted_and_the_warmer_warms_the_signals_at_its_next_look(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's warmer (embedded only: with Redis `serve signals` fills the cache): a bug in warming is counted in
    background_task_failures_total{task="signals_warmer"}, a database outage as an outage (not a bug), and the warmer
    goes on: its next look computes the promoted model's signals into the cache."""
    monkeypatch.setattr(tasks, "WARM_INTERVAL_SECONDS", 0.01)  # how soon it looks again
    runtime = Runtime.open(Settings(database_url=sqlite_url, data_dir=tmp_path))
    try:
        await migrations.upgrade(runtime.database.engine)
        _, trained = await _promoted(runtime)
        warm = SignalService.warm
        outcomes: list[Exception] = [KeyError("a bug in the warmer"), ConnectionRefusedError("database away")]
        warmed = asyncio.Event()

        async def failing_twice(self: SignalService) -> SignalList | None:
            if outcomes:
                raise outcomes.pop(0)
            answer = await warm(self)
            warmed.set()
            return answer

        monkeypatch.setattr(SignalService, "warm", failing_twice)
        failures = metric_sample("background_task_failures_total", task="signals_warmer")
        outages = metric_sample("backend_unavailable_total", backend="database", operation="signals_warmer")
        await tasks.start_signals_warmer(runtime)
        await asyncio.wait_for(warmed.wait(), 30)
        assert await _cached(runtime, trained.model.version) is not None
    finally:
        await runtime.close()
    assert metric_sample("background_task_failures_total", task="signals_warmer") == failures + 1
    assert metric_sample("backend_unavailable_total", backend="database", operation="signals_warmer") == outages + 1
