"""The alpha end to end on both stacks: train on stored real bars, register, promote (audited), serve signals."""

from __future__ import annotations

import dataclasses
import functools
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import lightgbm as lgb
import numpy as np
import pytest

from tradestack.audit.service import AuditService
from tradestack.kit.runtime import Runtime
from tradestack.marketdata import datasets
from tradestack.marketdata.flows import import_datasets
from tradestack.signals import alpha
from tradestack.signals.service import SignalService, Trained

from ..conftest import MakeUser

SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT")
SINCE = datetime(2009, 1, 1, tzinfo=UTC)


@functools.cache
def _subset() -> datasets.LoadedDataSet:
    loaded = datasets.load("us-equities-daily")
    series = {
        key: dataclasses.replace(value, bars=[b for b in value.bars if b.ts >= SINCE and b.ts.year <= 2013], rejected=[])
        for key, value in loaded.series.items()
        if key[0] in SYMBOLS
    }
    return datasets.LoadedDataSet(loaded.dataset, series)


async def _store(runtime: Runtime) -> None:
    await import_datasets(runtime, [_subset()])


async def _promoted(runtime: Runtime) -> tuple[SignalService, Trained]:
    """The subset stored, a quick model trained on it (no evaluation) and promoted."""
    await _store(runtime)
    service = SignalService(runtime)
    trained = await service.train(evaluate=False, rounds=10)
    await service.promote(trained.model.version)
    return service, trained


def _tamper(trained: Trained) -> None:
    """Change the model file after training (its digest no longer matches)."""
    model_file: Path = trained.directory / "model.txt"
    model_file.write_text(model_file.read_text().replace("num_leaves=15", "num_leaves=16", 1))


async def test_signals_are_refused_until_a_model_is_promoted_then_served_ranked(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user()
    await _store(runtime)
    refused = await client.post("/api/trading/signals", json={"symbol": "AAPL"}, headers=user.headers)
    assert refused.status_code == 409, refused.text
    assert "signals train" in refused.json()["detail"]

    service = SignalService(runtime)
    stages: list[str] = []
    trained = await service.train(rounds=20, progress=lambda stage, done, total: stages.append(stage))
    assert trained.evaluation is not None
    assert len(trained.evaluation.folds) >= 1
    assert "fold" in stages
    assert "final model" in stages
    assert (trained.directory / "report.png").stat().st_size > 0
    listed = (await client.get("/api/models", headers=user.headers)).json()["models"]
    assert [m["version"] for m in listed] == [trained.model.version]
    assert listed[0]["promoted"] is False
    assert set(listed[0]["metrics"]) == {"model", "momentum", "shuffled"}
    assert listed[0]["universe"] == list(SYMBOLS)

    # The features and the model run off the event loop (they would stall every request and stream), whether the
    # first request or the API's background warmer (it starts on the promotion) computes them.
    computed_on: list[threading.Thread] = []
    build = alpha.panel_from_bars

    def recording_build(*args: object, **kwargs: object) -> alpha.Panel:
        computed_on.append(threading.current_thread())
        return build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(alpha, "panel_from_bars", recording_build)
    await service.promote(trained.model.version, actor_email="lead@example.com")
    audit = await AuditService(runtime.database, runtime.clock).list(action="signals.model.promote")
    assert [(e.target, e.outcome) for e in audit] == [(trained.model.version, "success")]
    one = await client.post("/api/trading/signals", json={"symbol": "ibm", "model": "lightgbm"}, headers=user.headers)
    assert computed_on
    assert threading.main_thread() not in computed_on
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["symbol"] == "IBM"
    assert body["model_version"] == trained.model.version
    assert body["horizon_days"] == 5
    ranked = (await client.get("/api/trading/signals", headers=user.headers)).json()
    assert [s["rank"] for s in ranked["signals"]] == [1, 2, 3, 4]
    assert ranked["as_of"] == body["as_of"] == "2013-03-01"
    assert [s["direction"] for s in ranked["signals"]] == ["long", "flat", "flat", "short"]
    scores = [s["score"] for s in ranked["signals"]]
    assert scores == sorted(scores, reverse=True)

    # The scores equal the stored model applied to features computed here from the same bars.
    booster = lgb.Booster(model_file=str(trained.directory / "model.txt"))
    panel = alpha.panel_from_bars({s: series.bars for (s, _), series in _subset().series.items()})
    _names, x = panel.features()
    t = panel.dates.index(date(2013, 3, 1))
    expected = dict(zip(panel.symbols, booster.predict(x[t]), strict=True))
    for s in ranked["signals"]:
        assert s["score"] == pytest.approx(expected[s["symbol"]], rel=1e-12)

    filtered = (await client.get("/api/trading/signals", params={"universe": "MSFT,AAPL"}, headers=user.headers)).json()
    assert sorted(s["symbol"] for s in filtered["signals"]) == ["AAPL", "MSFT"]
    stale = await client.post("/api/trading/signals", json={"symbol": "AAPL", "max_age_days": 30}, headers=user.headers)
    assert stale.status_code == 409
    assert "2013-03-01" in stale.json()["detail"]


async def test_bad_requests_and_a_tampered_model_are_refused_with_reasons(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    user = await make_user()
    service, first = await _promoted(runtime)
    unknown = await client.post("/api/trading/signals", json={"symbol": "NOPE"}, headers=user.headers)
    assert unknown.status_code == 422
    assert "NOPE" in unknown.json()["detail"]
    outside = await client.post("/api/trading/signals", json={"symbol": "NVDA"}, headers=user.headers)
    assert outside.status_code == 422
    assert "universe" in outside.json()["detail"]
    model = await client.post("/api/trading/signals", json={"symbol": "AAPL", "model": "xgboost"}, headers=user.headers)
    assert model.status_code == 422
    assert (await client.get("/api/models", params={"kind": "nope"}, headers=user.headers)).status_code == 422

    runtime.clock = _later(runtime)
    second = await service.train(evaluate=False, rounds=10)
    _tamper(second)
    from tradestack.core.errors import ServiceUnavailableError

    with pytest.raises(ServiceUnavailableError, match="fingerprint"):
        await service.promote(second.model.version)
    promoted = [m.version for m in await service.models() if m.promoted]
    assert promoted == [first.model.version]


def _later(runtime: Runtime) -> object:
    from tradestack.core.clock import SimClock

    clock = SimClock(runtime.clock.now())
    clock.advance(5)
    return clock


def test_daily_features_of_the_stored_subset_are_finite_somewhere() -> None:
    panel = alpha.panel_from_bars({s: series.bars for (s, _), series in _subset().series.items()})
    _, x = panel.features()
    assert panel.has_ohlcv
    assert np.isfinite(x[-1]).all(axis=-1).any()


async def test_ml_model_accuracy_of_the_alpha_is_judged_from_stored_prices_once_the_horizon_passes(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    from prometheus_client import REGISTRY

    from tradestack.core.clock import SimClock

    user = await make_user()
    cut = datetime(2013, 2, 15, tzinfo=UTC)
    full = _subset()
    early = datasets.LoadedDataSet(
        full.dataset, {k: dataclasses.replace(v, bars=[b for b in v.bars if b.ts <= cut]) for k, v in full.series.items()}
    )
    await import_datasets(runtime, [early])
    service = SignalService(runtime)
    trained = await service.train(evaluate=False, rounds=10)
    await service.promote(trained.model.version)
    clock = SimClock(runtime.clock.now())
    runtime.clock = clock

    def accuracy() -> float | None:
        return REGISTRY.get_sample_value("ml_model_accuracy", {"model": trained.model.version})

    async def listed() -> list[dict[str, object]]:
        answer = await client.get("/api/trading/signals/accuracy", headers=user.headers)
        assert answer.status_code == 200, answer.text
        return [m for m in answer.json()["models"] if m["model_version"] == trained.model.version]

    assert await listed() == []
    first = (await client.get("/api/trading/signals", headers=user.headers)).json()
    assert first["as_of"] == "2013-02-15"
    assert accuracy() is None
    waiting = {"model_version": trained.model.version, "kind": "alpha", "hits": 0, "calls": 0, "accuracy": None}
    assert await listed() == [{**waiting, "pending": 1}]
    await import_datasets(runtime, [full])  # the next days' bars arrive
    clock.advance(61)
    await client.get("/api/trading/signals", headers=user.headers)
    # Independent: 5 bars after 2013-02-15, each symbol's return; hits on the same side of the median.
    scores, realised = {}, {}
    for (symbol, _), series in full.series.items():
        closes = [(b.ts.date(), float(b.close)) for b in series.bars if b.ts >= cut]
        realised[symbol] = closes[5][1] / closes[0][1] - 1
    scores = {s["symbol"]: s["score"] for s in first["signals"]}
    symbols = sorted(scores)
    score_median = float(np.median([scores[s] for s in symbols]))
    return_median = float(np.median([realised[s] for s in symbols]))
    agree = [(scores[s] > score_median) == (realised[s] > return_median) for s in symbols
             if scores[s] != score_median and realised[s] != return_median]  # fmt: skip
    assert accuracy() == pytest.approx(sum(agree) / len(agree))
    (row,) = await listed()
    assert (row["hits"], row["calls"], row["pending"]) == (sum(agree), len(agree), 0)
    assert row["accuracy"] == pytest.approx(accuracy())


async def test_daily_bars_reads_every_bar_of_a_series_longer_than_one_candles_page(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candles query returns at most MAX_CANDLES: a longer history is read page by page, none lost at either end."""
    await _store(runtime)
    service = SignalService(runtime)
    whole = (await service.daily_bars(["MSFT"]))["MSFT"]
    assert len(whole) > 50
    monkeypatch.setattr("tradestack.signals.service.MAX_CANDLES", 7)  # pages of 7 over the stored history
    paged = (await service.daily_bars(["MSFT"]))["MSFT"]
    assert [bar.ts for bar in paged] == [bar.ts for bar in whole]
    assert paged == whole
    window = (await service.daily_bars(["MSFT"], start=whole[10].ts.date(), end=whole[30].ts.date()))["MSFT"]
    assert window == whole[10:31]
