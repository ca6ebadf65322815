"""SQL of the audit module."""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, delete, func, insert, or_, select, text, update

from tradestack.kit.db import Alongside, execute_core, on_postgresql, unnest_insert
from tradestack.kit.repository import Repository
from tradestack.models.audit import AuditChainerLease, AuditEntry, AuditOutbox, AuditPersonal

CHAIN_LEASE = "audit"
_STAGE = insert(cast(Table, AuditOutbox.__table__))  # built once: every order group stages (Core, no ORM bulk path)
# Many entries on PostgreSQL: one execution of one statement (the outbox's ids follow the array's order), not one a row.
_STAGE_MANY = unnest_insert(cast(Table, AuditOutbox.__table__), ["fields"])
# The same, run inside another module's INSERT statement (`stage_alongside`).
_STAGE_ALONGSIDE = _STAGE_MANY.cte("staged_audit")
# The chainer's inserts, likewise built once and Core (the ORM bulk-insert path cost more CPU per row than the hashing).
_APPEND = insert(cast(Table, AuditEntry.__table__))
_APPEND_RETURNING_IDS = _APPEND.returning(AuditEntry.__table__.c.hash, AuditEntry.__table__.c.id)
_APPEND_PERSONAL = insert(cast(Table, AuditPersonal.__table__))
# On PostgreSQL one statement of column arrays each (`unnest_insert`): one text whatever the batch's size, where the
# executemany rendered and the server prepared a multi-row VALUES statement per batch size. The chain's ids follow the
# array's order, as the outbox's do.
# What the chainer writes of a version-2 row (the personal columns stay NULL: they go to audit_personal).
_CHAIN_COLUMNS = (
    "ts", "actor_user_id", "actor_api_key_id", "action", "outcome", "target", "detail", "prev_hash", "hash", "version",
    "personal_digest",
)  # fmt: skip
# The chain rows end what a batch reads (the personal rows, which follow, are written alike): the personal rows' key
# checks, one a row, are index probes planned once per connection rather than at every check (`probes_after`).
_APPEND_MANY = unnest_insert(cast(Table, AuditEntry.__table__), _CHAIN_COLUMNS, probes_after=True).returning(
    AuditEntry.__table__.c.hash, AuditEntry.__table__.c.id
)
_PERSONAL_COLUMNS = tuple(column.name for column in AuditPersonal.__table__.c)
_APPEND_PERSONAL_MANY = unnest_insert(cast(Table, AuditPersonal.__table__), _PERSONAL_COLUMNS)


class AuditRepository(Repository):
    """Reads and appends audit entries, and moves outbox rows. Nothing here updates or deletes a chain row
    (`erase_personal` deletes personal rows, which the chain covers only by digest)."""

    async def head_hash(self) -> str | None:
        """Hash of the newest entry (highest id), the current head of the chain; None when the chain is empty."""
        result = await self.session.execute(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
        return result.scalar_one_or_none()

    async def last(self) -> AuditEntry | None:
        """The newest entry (highest id), the current head of the chain."""
        result = await self.session.execute(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1))
        return result.scalar_one_or_none()

    async def add(self, entry: AuditEntry) -> AuditEntry:
        """Insert an entry and flush, so its id is assigned and constraint violations surface here."""
        self.session.add(entry)
        await self.session.flush()
        return entry

    async def append(self, rows: Sequence[Mapping[str, Any]], personal: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> None:
        """Insert chain rows (every column but id) in one executemany, then their personal rows.

        `personal` holds (entry hash, personal row without ``entry_id``): the entries' ids are read
        back by hash (unique) from the insert.
        """
        if not rows:
            return
        if on_postgresql(self.session):
            await self._append_arrays(rows, personal)
            return
        if not personal:
            await execute_core(self.session, _APPEND, builtins.list(rows))
            return
        inserted = await execute_core(self.session, _APPEND_RETURNING_IDS, builtins.list(rows))
        ids = {row_hash: entry_id for row_hash, entry_id in inserted}
        await execute_core(
            self.session, _APPEND_PERSONAL, [{**fields, "entry_id": ids[row_hash]} for row_hash, fields in personal]
        )

    async def _append_arrays(self, rows: Sequence[Mapping[str, Any]], personal: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """`append` on PostgreSQL: the chain rows in one statement of column arrays (`_APPEND_MANY`), then the personal
        rows likewise. The rows carry exactly `_CHAIN_COLUMNS` (else ValueError: no column is left out silently)."""
        if any(len(row) != len(_CHAIN_COLUMNS) for row in rows):
            raise ValueError(f"chain rows carry exactly the columns {_CHAIN_COLUMNS}")
        inserted = await execute_core(
            self.session, _APPEND_MANY, {f"audit_entries_{name}": [row[name] for row in rows] for name in _CHAIN_COLUMNS}
        )
        if not personal:
            return
        ids = {row_hash: entry_id for row_hash, entry_id in inserted}
        personal_rows = [{**fields, "entry_id": ids[row_hash]} for row_hash, fields in personal]
        await execute_core(
            self.session,
            _APPEND_PERSONAL_MANY,
            {f"audit_personal_{name}": [row[name] for row in personal_rows] for name in _PERSONAL_COLUMNS},
        )

    async def erase_personal(self, actor_user_id: str, emails: Sequence[str]) -> int:
        """Delete the personal rows of entries by `actor_user_id` or naming one of `emails`; returns how many."""
        lowered = [email.lower() for email in emails]
        by_actor = select(AuditEntry.id).where(AuditEntry.actor_user_id == actor_user_id)
        statement = delete(AuditPersonal).where(
            or_(AuditPersonal.entry_id.in_(by_actor), func.lower(AuditPersonal.actor_email).in_(lowered))
        )
        result: CursorResult[Any] = await self.session.execute(statement)  # type: ignore[assignment]
        return int(result.rowcount or 0)

    async def stage(self, fields: Sequence[str]) -> None:
        """Queue entries (their columns as JSON) in the outbox, in the caller's transaction."""
        if len(fields) == 1:
            await execute_core(self.session, _STAGE, {"fields": fields[0]})
        elif fields and on_postgresql(self.session):
            await execute_core(self.session, _STAGE_MANY, {"audit_outbox_fields": list(fields)})
        elif fields:
            await execute_core(self.session, _STAGE, [{"fields": value} for value in fields])

    @staticmethod
    def stage_alongside(fields: Sequence[str]) -> Alongside:
        """PostgreSQL: `stage`'s rows as a CTE of another INSERT statement (one round trip for both)."""
        return Alongside(_STAGE_ALONGSIDE, {"audit_outbox_fields": list(fields)})

    async def oldest_staged(self, limit: int) -> builtins.list[tuple[int, str]]:
        """The oldest `limit` outbox rows (id, fields), oldest first, without claiming them (see `claim`)."""
        rows = await self.session.execute(select(AuditOutbox.id, AuditOutbox.fields).order_by(AuditOutbox.id).limit(limit))
        return [(row[0], row[1]) for row in rows]

    async def claim(self, ids: Sequence[int]) -> bool:
        """Delete the outbox rows `ids`, in the transaction that chains them; False (nothing to chain in this
        transaction: roll it back) when some of them are gone.

        Claiming by deleting is what makes chaining exactly once: a concurrent claimer blocks on these
        rows and then finds them gone, and a rollback puts them back.
        """
        result: CursorResult[Any] = await self.session.execute(  # type: ignore[assignment]
            delete(AuditOutbox).where(AuditOutbox.id.in_(ids))
        )
        return result.rowcount == len(ids)

    async def backlog(self) -> tuple[int, str | None]:
        """How many outbox rows wait, and the fields of the oldest (None when none waits)."""
        count = (await self.session.execute(select(func.count()).select_from(AuditOutbox))).scalar_one()
        if not count:
            return 0, None
        oldest = await self.session.execute(select(AuditOutbox.fields).order_by(AuditOutbox.id).limit(1))
        return int(count), oldest.scalar_one_or_none()

    async def newest_staged_id(self) -> int | None:
        """Id of the newest outbox row, None when the outbox is empty."""
        return (await self.session.execute(select(func.max(AuditOutbox.id)))).scalar_one_or_none()

    async def any_staged_up_to(self, newest: int) -> bool:
        """Whether an outbox row with id up to `newest` still waits."""
        found = await self.session.execute(select(AuditOutbox.id).where(AuditOutbox.id <= newest).limit(1))
        return found.first() is not None

    # --- the chainer lease ----------------------------------------------------------------------

    async def ensure_lease_row(self, now: datetime) -> None:
        """Create the (lapsed, unheld) lease row if it does not exist yet."""
        exists = await self.session.execute(select(AuditChainerLease.name).where(AuditChainerLease.name == CHAIN_LEASE))
        if exists.first() is None:
            await self.session.execute(insert(AuditChainerLease).values(name=CHAIN_LEASE, holder=None, expires_at=now))

    async def take_lease(self, holder: str, now: datetime, until: datetime) -> bool:
        """Take (or extend) the lease when `holder` has it, nobody has it, or it lapsed; True when taken."""
        statement = (
            update(AuditChainerLease)
            .where(
                AuditChainerLease.name == CHAIN_LEASE,
                or_(
                    AuditChainerLease.holder == holder,
                    AuditChainerLease.holder.is_(None),
                    AuditChainerLease.expires_at <= now,
                ),
            )
            .values(holder=holder, expires_at=until)
        )
        result: CursorResult[Any] = await self.session.execute(statement)  # type: ignore[assignment]
        return result.rowcount == 1

    async def renew_lease(self, holder: str, until: datetime) -> bool:
        """Extend the lease if `holder` still has it; the row stays locked until the transaction ends.

        This is the fence of a batch: run first in the batch's transaction, it fails (False) when
        another chainer took the lease, and it blocks anyone from taking it until the batch ends.
        """
        statement = (
            update(AuditChainerLease)
            .where(AuditChainerLease.name == CHAIN_LEASE, AuditChainerLease.holder == holder)
            .values(expires_at=until)
        )
        result: CursorResult[Any] = await self.session.execute(statement)  # type: ignore[assignment]
        return result.rowcount == 1

    async def release_lease(self, holder: str, now: datetime) -> None:
        """Give the lease up so another chainer can take it at once."""
        await self.session.execute(
            update(AuditChainerLease)
            .where(AuditChainerLease.name == CHAIN_LEASE, AuditChainerLease.holder == holder)
            .values(holder=None, expires_at=now)
        )

    async def lease(self) -> AuditChainerLease | None:
        """The lease row (who leads and until when)."""
        result = await self.session.execute(select(AuditChainerLease).where(AuditChainerLease.name == CHAIN_LEASE))
        return result.scalar_one_or_none()

    async def bound_batch_waits(self, lock_timeout_ms: int, idle_timeout_ms: int) -> None:
        """PostgreSQL only: this transaction waits at most `lock_timeout_ms` for a lock, and is ended by the
        server if it sits idle for `idle_timeout_ms` (a chainer stopped mid-batch frees its rows and lease)."""
        await self.session.execute(
            text(
                "SELECT set_config('lock_timeout', :lock, true), set_config('idle_in_transaction_session_timeout', :idle, true)"
            ),
            {"lock": str(lock_timeout_ms), "idle": str(idle_timeout_ms)},
        )

    async def list(
        self,
        *,
        limit: int,
        before_id: int | None = None,
        action: str | None = None,
        actor_user_id: str | None = None,
    ) -> builtins.list[tuple[AuditEntry, AuditPersonal | None]]:
        """Entries (with their personal row, if any) newest first, optionally only those older than `before_id`
        (for paging) and filtered."""
        query = select(AuditEntry, AuditPersonal).outerjoin(AuditPersonal, AuditPersonal.entry_id == AuditEntry.id)
        if before_id is not None:
            query = query.where(AuditEntry.id < before_id)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        if actor_user_id is not None:
            query = query.where(AuditEntry.actor_user_id == actor_user_id)
        result = await self.session.execute(query.order_by(AuditEntry.id.desc()).limit(limit))
        return [(row[0], row[1]) for row in result]

    async def iterate_in_order(self, batch_size: int = 500) -> AsyncGenerator[tuple[AuditEntry, AuditPersonal | None], None]:
        """Every entry with its personal row (None when it has none) by ascending id, read `batch_size` rows at a time.

        Each batch is detached from the session once it has been yielded, so walking a large log
        does not keep every row in memory.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        after: int | None = None
        while True:
            query = (
                select(AuditEntry, AuditPersonal)
                .outerjoin(AuditPersonal, AuditPersonal.entry_id == AuditEntry.id)
                .order_by(AuditEntry.id)
                .limit(batch_size)
            )
            if after is not None:
                query = query.where(AuditEntry.id > after)
            batch = [(row[0], row[1]) for row in await self.session.execute(query)]
            for pair in batch:
                yield pair
            for entry, personal in batch:
                self.session.expunge(entry)
                if personal is not None:
                    self.session.expunge(personal)
            if len(batch) < batch_size:
                return
            after = batch[-1][0].id
