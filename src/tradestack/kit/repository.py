"""Base classes for repositories: all SQL lives in a module's repository."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Insert
from sqlalchemy.ext.asyncio import AsyncSession


class Repository:
    """A repository bound to a read-write session on the primary. It flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session


class ReadRepository:
    """A repository for reads only, bound to a replica session when a replica is configured."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session


async def insert_together(session: AsyncSession, statements: Sequence[Insert]) -> None:
    """Run INSERTs (multi-row ones: ``insert(table).values([...])``) in one round trip on PostgreSQL: all but the last
    as data-modifying CTEs of the last, one statement (PostgreSQL checks foreign keys at its end, so a row may refer
    to one inserted beside it). Elsewhere one after the other, in order. Mind the parameter limit (32,767)."""
    if not statements:
        return
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        *first, last = statements
        await session.execute(last.add_cte(*(statement.cte(f"insert_{n}") for n, statement in enumerate(first))))
        return
    for statement in statements:
        await session.execute(statement)
