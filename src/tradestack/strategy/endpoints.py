"""Stored backtest runs (`GET /api/backtests[/{id}]`) and strategies on paper (`/api/strategy`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from tradestack.identity.deps import caller_of, require
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Principal
from tradestack.kit.web import RuntimeDep
from tradestack.strategy.schemas import BacktestDetail, BacktestList, StrategyDeploy, StrategyList, StrategyOut
from tradestack.strategy.service import MAX_PAGE, BacktestService, StrategyService

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


strategies = APIRouter(prefix="/api/strategy", tags=["strategies"])
Trader = Annotated[Principal, require(Permission.TRADE_OWN)]
AccountReader = Annotated[Principal, require(Permission.ACCOUNTS_READ_OWN)]


@strategies.post(
    "",
    response_model=StrategyOut,
    status_code=201,
    summary="Deploy a strategy on paper on one of your accounts",
    responses={
        404: {"description": "No such account of yours"},
        422: {"description": "Unknown strategy or symbol, or bad parameters (the field is named)"},
    },
)
async def deploy_strategy(runtime: RuntimeDep, principal: Trader, body: StrategyDeploy, request: Request) -> StrategyOut:
    return await StrategyService(runtime).deploy(principal, body, caller_of(request))


@strategies.get("", response_model=StrategyList, summary="Your deployed strategies, newest first, with their status")
async def list_strategies(
    runtime: RuntimeDep, principal: AccountReader, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100
) -> StrategyList:
    return await StrategyService(runtime).list(principal, limit)


@strategies.get(
    "/{deployment_id}",
    response_model=StrategyOut,
    summary="A deployed strategy: state, last error, orders, positions and P&L from its own fills",
    responses={404: {"description": "No such strategy of yours"}},
)
async def get_strategy(runtime: RuntimeDep, principal: AccountReader, deployment_id: str) -> StrategyOut:
    return await StrategyService(runtime).get(principal, deployment_id)


@strategies.post(
    "/{deployment_id}/stop",
    response_model=StrategyOut,
    summary="Stop a running strategy (its working orders stay)",
    responses={404: {"description": "No such strategy of yours"}, 409: {"description": "It is not running"}},
)
async def stop_strategy(runtime: RuntimeDep, principal: Trader, deployment_id: str, request: Request) -> StrategyOut:
    return await StrategyService(runtime).stop(principal, deployment_id, caller_of(request))
