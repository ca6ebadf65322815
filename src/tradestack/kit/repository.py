"""Base classes for repositories: all SQL lives in a module's repository."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession


class Repository:
    """A repository bound to a read-write session on the primary. It flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session


class ReadRepository:
    """A repository for reads only, bound to a replica session when a replica is configured."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
