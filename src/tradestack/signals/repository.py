"""SQL of the signal model registry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.kit.repository import insert_new
from tradestack.models.signals import SignalModelRow, SignalOutcomeRow


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


class SignalOutcomeRepository:
    """Rows of `signal_outcomes`: served answers awaiting their outcome, and the judged ones."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def record(self, row: SignalOutcomeRow) -> bool:
        """Insert `row` unless its (model, subject) is there already (another worker served it too); True if inserted."""
        values = {c.key: getattr(row, c.key) for c in SignalOutcomeRow.__table__.columns if c.key != "id"}
        return await insert_new(self._session, SignalOutcomeRow, [values], ("model_version", "subject")) > 0

    async def due(self, kind: str, now: datetime, limit: int = 500) -> list[SignalOutcomeRow]:
        """Pending rows of `kind` whose horizon has passed by `now`, oldest due first."""
        query = (
            select(SignalOutcomeRow)
            .where(SignalOutcomeRow.kind == kind, SignalOutcomeRow.resolved_at.is_(None), SignalOutcomeRow.due_at <= now)
            .order_by(SignalOutcomeRow.due_at, SignalOutcomeRow.id)
            .limit(limit)
        )
        return list(await self._session.scalars(query))

    async def next_due(self, kind: str) -> datetime | None:
        """When the earliest pending row of `kind` falls due (None when nothing is pending)."""
        query = select(func.min(SignalOutcomeRow.due_at)).where(
            SignalOutcomeRow.kind == kind, SignalOutcomeRow.resolved_at.is_(None)
        )
        found: datetime | None = await self._session.scalar(query)
        return found

    async def resolve(self, row_id: int, now: datetime, hits: int, calls: int) -> bool:
        """Judge a pending row; False when another worker judged it first (it is then left as that one wrote it)."""
        result = await self._session.execute(
            update(SignalOutcomeRow)
            .where(SignalOutcomeRow.id == row_id, SignalOutcomeRow.resolved_at.is_(None))
            .values(resolved_at=now, hits=hits, calls=calls)
        )
        return bool(getattr(result, "rowcount", 0))

    async def tally(self) -> list[tuple[str, str, int, int, int]]:
        """(model, kind, hits, calls, pending) of every model version with a recorded call, judged or not."""
        judged = SignalOutcomeRow.resolved_at.is_not(None)
        query = (
            select(
                SignalOutcomeRow.model_version,
                SignalOutcomeRow.kind,
                func.sum(case((judged, SignalOutcomeRow.hits), else_=0)),
                func.sum(case((judged, SignalOutcomeRow.calls), else_=0)),
                func.sum(case((judged, 0), else_=1)),
            )
            .group_by(SignalOutcomeRow.model_version, SignalOutcomeRow.kind)
            .order_by(SignalOutcomeRow.model_version, SignalOutcomeRow.kind)
        )
        return [
            (str(model), str(kind), int(hits or 0), int(calls or 0), int(pending or 0))
            for model, kind, hits, calls, pending in await self._session.execute(query)
        ]

    async def accuracy(self) -> dict[str, tuple[int, int]]:
        """(hits, calls) of every model with judged calls."""
        query = (
            select(SignalOutcomeRow.model_version, func.sum(SignalOutcomeRow.hits), func.sum(SignalOutcomeRow.calls))
            .where(SignalOutcomeRow.resolved_at.is_not(None))
            .group_by(SignalOutcomeRow.model_version)
        )
        return {str(model): (int(hits or 0), int(calls or 0)) for model, hits, calls in await self._session.execute(query)}
