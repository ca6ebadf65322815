"""SQL of the audit module."""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator

from sqlalchemy import delete, select, text

from tradestack.kit.repository import Repository
from tradestack.models.audit import AuditEntry, AuditOutbox

# Key of the PostgreSQL advisory lock that serialises appends: "tsaudit" in ASCII.
CHAIN_LOCK_KEY = 0x74_73_61_75_64_69_74


class AuditRepository(Repository):
    """Reads and appends audit entries. Nothing here updates or deletes a row."""

    async def lock_chain(self) -> None:
        """Take the PostgreSQL transaction-level advisory lock that serialises appends (PostgreSQL only).

        The lock is released when the transaction commits or rolls back.
        """
        await self.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})

    async def last(self) -> AuditEntry | None:
        """The newest entry (highest id), the current head of the chain."""
        result = await self.session.execute(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1))
        return result.scalar_one_or_none()

    async def add(self, entry: AuditEntry) -> AuditEntry:
        """Insert an entry and flush, so its id is assigned and constraint violations surface here."""
        self.session.add(entry)
        await self.session.flush()
        return entry

    async def stage(self, fields: str) -> None:
        """Queue an entry (its columns as JSON) in the outbox, in the caller's transaction."""
        self.session.add(AuditOutbox(fields=fields))
        await self.session.flush()

    async def waiting(self, limit: int, *, skip_locked: bool) -> builtins.list[AuditOutbox]:
        """The oldest queued entries, locked (others' drains skip them on PostgreSQL)."""
        query = select(AuditOutbox).order_by(AuditOutbox.id).limit(limit)
        if skip_locked:
            query = query.with_for_update(skip_locked=True)
        return builtins.list((await self.session.execute(query)).scalars())

    async def unstage(self, ids: builtins.list[int]) -> None:
        await self.session.execute(delete(AuditOutbox).where(AuditOutbox.id.in_(ids)))

    async def list(
        self,
        *,
        limit: int,
        before_id: int | None = None,
        action: str | None = None,
        actor_user_id: str | None = None,
    ) -> builtins.list[AuditEntry]:
        """Entries newest first, optionally only those older than `before_id` (for paging) and filtered."""
        query = select(AuditEntry)
        if before_id is not None:
            query = query.where(AuditEntry.id < before_id)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        if actor_user_id is not None:
            query = query.where(AuditEntry.actor_user_id == actor_user_id)
        result = await self.session.execute(query.order_by(AuditEntry.id.desc()).limit(limit))
        return builtins.list(result.scalars())

    async def iterate_in_order(self, batch_size: int = 500) -> AsyncGenerator[AuditEntry, None]:
        """Every entry by ascending id, read `batch_size` rows at a time.

        Each batch is detached from the session once it has been yielded, so walking a large log
        does not keep every row in memory.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        after: int | None = None
        while True:
            query = select(AuditEntry).order_by(AuditEntry.id).limit(batch_size)
            if after is not None:
                query = query.where(AuditEntry.id > after)
            batch = builtins.list((await self.session.execute(query)).scalars())
            for entry in batch:
                yield entry
            for entry in batch:
                self.session.expunge(entry)
            if len(batch) < batch_size:
                return
            after = batch[-1].id
