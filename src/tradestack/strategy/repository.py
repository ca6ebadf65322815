"""SQL of the stored backtest runs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.models.backtests import BacktestRunRow


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
