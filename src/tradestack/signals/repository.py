"""SQL of the signal model registry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.models.signals import SignalModelRow


class SignalModelRepository:
    """Rows of `signal_models`."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, row: SignalModelRow) -> None:
        """Insert a new version."""
        self._session.add(row)
        await self._session.flush()

    async def list(self, kind: str | None = None) -> list[SignalModelRow]:
        """Versions, newest first."""
        query = select(SignalModelRow).order_by(SignalModelRow.created_at.desc(), SignalModelRow.version.desc())
        if kind is not None:
            query = query.where(SignalModelRow.kind == kind)
        return list(await self._session.scalars(query))

    async def get(self, version: str) -> SignalModelRow | None:
        """One version."""
        return await self._session.get(SignalModelRow, version)

    async def promoted(self, kind: str) -> SignalModelRow | None:
        """The promoted version of `kind`."""
        query = select(SignalModelRow).where(SignalModelRow.kind == kind, SignalModelRow.promoted.is_(True))
        return (await self._session.scalars(query)).first()

    async def promote(self, row: SignalModelRow, now: datetime) -> None:
        """Make `row` the one promoted version of its kind (demoting the current one first)."""
        await self._session.execute(
            update(SignalModelRow)
            .where(SignalModelRow.kind == row.kind, SignalModelRow.promoted.is_(True))
            .values(promoted=False)
        )
        await self._session.flush()
        row.promoted = True
        row.promoted_at = now
        await self._session.flush()
