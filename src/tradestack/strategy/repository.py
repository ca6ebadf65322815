"""SQL of the stored backtest runs and of the strategy deployments."""

from __future__ import annotations

import builtins

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.models.backtests import BacktestRunRow
from tradestack.models.strategies import StrategyDeploymentRow


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
