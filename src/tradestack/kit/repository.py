"""Base classes for repositories: all SQL lives in a module's repository."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


async def insert_new(session: AsyncSession, model: Any, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> int:
    """Insert `rows` into `model`'s table, leaving any row whose `keys` are there already as it is (one
    statement, ON CONFLICT DO NOTHING on both backends). Returns how many were new."""
    if not rows:
        return 0
    bind = session.get_bind()
    dialect = postgresql if bind.dialect.name == "postgresql" else sqlite
    result = await session.execute(dialect.insert(model).values(list(rows)).on_conflict_do_nothing(index_elements=list(keys)))
    return int(getattr(result, "rowcount", 0) or 0)


class Repository:
    """A repository bound to a read-write session on the primary. It flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session


class ReadRepository:
    """A repository for reads only, bound to a replica session when a replica is configured."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
