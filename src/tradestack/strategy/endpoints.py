"""Stored backtest runs: `GET /api/backtests`, `GET /api/backtests/{id}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tradestack.identity.deps import require
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Principal
from tradestack.kit.web import RuntimeDep
from tradestack.strategy.schemas import BacktestDetail, BacktestList
from tradestack.strategy.service import MAX_PAGE, BacktestService

backtests = APIRouter(prefix="/api/backtests", tags=["backtests"])
Reader = Annotated[Principal, require(Permission.MARKET_DATA_READ)]


@backtests.get("", response_model=BacktestList, summary="Stored backtest runs, newest first")
async def list_backtests(
    runtime: RuntimeDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> BacktestList:
    return await BacktestService(runtime).list(limit, offset)


@backtests.get(
    "/{run_id}",
    response_model=BacktestDetail,
    summary="One stored run: spec, metrics, orders, events, fills, journal and equity curve",
    responses={404: {"description": "No stored run with this id"}},
)
async def get_backtest(runtime: RuntimeDep, _: Reader, run_id: str) -> BacktestDetail:
    return await BacktestService(runtime).get(run_id)
