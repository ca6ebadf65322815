"""SQL of the stored backtest runs, the strategy deployments and the bars their runners built."""

from __future__ import annotations

import builtins

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.domain.marketdata import Bar
from tradestack.kit.repository import insert_new
from tradestack.models.backtests import BacktestRunRow
from tradestack.models.strategies import StrategyBarRow, StrategyDeploymentRow


class BacktestRepository:
    """Rows of `backtest_runs`."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, row: BacktestRunRow) -> None:
        """Insert a run."""
        self._session.add(row)
        await self._session.flush()

    async def list(self, limit: int, offset: int) -> list[BacktestRunRow]:
        """Runs, newest first."""
        query = (
            select(BacktestRunRow)
            .order_by(BacktestRunRow.created_at.desc(), BacktestRunRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return list(await self._session.scalars(query))

    async def get(self, run_id: str) -> BacktestRunRow | None:
        """One run."""
        return await self._session.get(BacktestRunRow, run_id)


class DeploymentRepository:
    """Rows of `strategy_deployments`. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, row: StrategyDeploymentRow) -> None:
        self._session.add(row)
        await self._session.flush()

    async def get(self, deployment_id: str) -> StrategyDeploymentRow | None:
        return await self._session.get(StrategyDeploymentRow, deployment_id)

    async def list(self, owner_id: str | None, limit: int) -> list[StrategyDeploymentRow]:
        """Deployments (of `owner_id`, or everyone's when None), newest first."""
        query = select(StrategyDeploymentRow)
        if owner_id is not None:
            query = query.where(StrategyDeploymentRow.owner_id == owner_id)
        query = query.order_by(StrategyDeploymentRow.created_at.desc(), StrategyDeploymentRow.id.desc()).limit(limit)
        return list(await self._session.scalars(query))

    async def in_state(self, state: str) -> builtins.list[StrategyDeploymentRow]:
        query = select(StrategyDeploymentRow).where(StrategyDeploymentRow.state == state)
        return list(await self._session.scalars(query.order_by(StrategyDeploymentRow.created_at)))


class StrategyBarRepository:
    """Rows of `strategy_bars`. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, deployment_id: str, bar: Bar, number: int) -> None:
        """Keep a bar the deployment's host was given as its `number`-th (once: a bar already kept is left as it is)."""
        row = {
            "deployment_id": deployment_id,
            "symbol": bar.symbol,
            "ts": bar.ts,
            "number": number,
            "open": bar.open,
            "high": bar.high,
            "low": bar.low,
            "close": bar.close,
            "volume": bar.volume,
        }
        await insert_new(self._session, StrategyBarRow, [row], ("deployment_id", "symbol", "ts"))

    async def last(self, deployment_id: str, symbol: str, limit: int) -> tuple[list[Bar], int]:
        """The newest `limit` bars kept of `symbol`, oldest first, and the number of the first (0 when none)."""
        mine = (StrategyBarRow.deployment_id == deployment_id) & (StrategyBarRow.symbol == symbol)
        rows = list(
            await self._session.scalars(select(StrategyBarRow).where(mine).order_by(StrategyBarRow.ts.desc()).limit(limit))
        )
        bars = [Bar(r.symbol, r.ts, r.open, r.high, r.low, r.close, r.volume) for r in reversed(rows)]
        return bars, rows[-1].number if rows else 0

    async def prune(self, deployment_id: str, symbol: str, below: int) -> None:
        """Forget the bars of `symbol` numbered below `below`."""
        mine = (StrategyBarRow.deployment_id == deployment_id) & (StrategyBarRow.symbol == symbol)
        await self._session.execute(delete(StrategyBarRow).where(mine & (StrategyBarRow.number < below)))
