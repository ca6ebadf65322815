"""Stored backtest runs on both stacks: `BacktestService.store`, `GET /api/backtests`, `GET /api/backtests/{id}`."""

from __future__ import annotations

from decimal import Decimal

import httpx
import numpy as np

from tradestack.backtest.data import BarSeries
from tradestack.backtest.engine import BacktestConfig, run_backtest
from tradestack.backtest.metrics import compute_metrics
from tradestack.backtest.report import data_fingerprint
from tradestack.domain.matching import FeeModel
from tradestack.kit.runtime import Runtime
from tradestack.strategy.examples import SmaCross
from tradestack.strategy.service import BacktestService

from ..conftest import MakeUser

DAY_US = 86_400_000_000


def _series() -> BarSeries:
    rng = np.random.default_rng(3)
    close = (10_000 + np.cumsum(rng.integers(-150, 151, 300))).astype(np.int64)
    open_ = np.r_[close[0], close[:-1]]
    return BarSeries(
        "AAPL",
        1_704_067_200_000_000 + DAY_US * np.arange(300, dtype=np.int64),
        open_,
        np.maximum(open_, close) + 50,
        np.minimum(open_, close) - 50,
        close,
        np.full(300, 1_000_000, dtype=np.int64),
        2,
    )


async def test_stored_runs_are_listed_and_read_back_whole(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    series = _series()
    config = BacktestConfig(fee=FeeModel(bps=Decimal(10), places=2))
    result = run_backtest(SmaCross(["AAPL"], fast=5, slow=20), [series], config)
    metrics = compute_metrics(result)
    service = BacktestService(runtime)
    first = await service.store(result, metrics, [series], {"fast": "5", "slow": "20"})
    second = await service.store(result, metrics, [series.head(200)], {"fast": "5", "slow": "20"})
    user = await make_user()

    assert (await client.get("/api/backtests")).status_code == 401
    listed = await client.get("/api/backtests", headers=user.headers)
    assert listed.status_code == 200, listed.text
    runs = listed.json()["backtests"]
    assert {run["id"] for run in runs} == {first, second}
    assert all(run["strategy"] == "sma_cross" and run["symbols"] == ["AAPL"] for run in runs)

    detail = await client.get(f"/api/backtests/{first}", headers=user.headers)
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert Decimal(body["final_equity"]) == result.final_equity
    assert body["bars"] == 300
    assert body["data_fingerprint"] == data_fingerprint([series])
    assert body["data_fingerprint"] != next(run for run in runs if run["id"] == second)["data_fingerprint"]
    assert body["spec"]["params"] == {"fast": "5", "slow": "20"}
    assert body["spec"]["fee_bps"] == "10"
    assert [Decimal(f["price"]) for f in body["result"]["fills"]] == [t.price for t in result.trades]
    assert len(body["result"]["equity"]) == 300
    assert body["metrics"]["trades"] == len(result.trades)

    missing = await client.get("/api/backtests/nope", headers=user.headers)
    assert missing.status_code == 404
    assert "GET /api/backtests" in missing.json()["detail"]
    assert (await client.get("/api/backtests", params={"limit": 0}, headers=user.headers)).status_code == 422
