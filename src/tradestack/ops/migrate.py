"""`tradestack migrate to-postgres`: move an embedded (SQLite) installation to an empty PostgreSQL.

1. Schema by Alembic on the target (idempotent).
2. Every table, parents first, copied in batches in primary-key order; each batch commits together
   with the progress marker (table ``tradestack_migration_progress`` on the target), so a run that
   is killed resumes after the last committed batch and never copies a row twice. A batch of
   ``postings`` is extended to the end of its journal entry (the target checks at commit that each
   entry balances). Encrypted columns are copied as stored ciphertext.
3. Sequences of autoincrement keys are moved past the copied ids.
4. Reconciliation: row counts and per-table checksums, journal sums per currency, the audit chain
   (verifies, same head hash), and `check integrity` on the target. Only then is the marker dropped.

A target that holds data without an unfinished marker is refused: it is not ours to overwrite.
Stop the API (or at least trading) on the source while it runs: rows written after a table was
copied would be missing and reconciliation would fail, naming the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, Text, column, func, select, table, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tradestack.audit.service import AuditService
from tradestack.core.clock import LiveClock
from tradestack.core.errors import ConflictError
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.crypto import EncryptedString
from tradestack.kit.db import Database
from tradestack.ops.fingerprint import data_tables, fingerprint, primary_key, raw_columns
from tradestack.ops.integrity import check_integrity

MARKER = "tradestack_migration_progress"
GROUPED_BY = {"postings": "entry_id"}  # tables whose batches must not split a group
Progress = Callable[[str, int, int], None]


class MigrationError(ConflictError):
    """The migration cannot start or did not reconcile; the detail says why."""


@dataclass
class MigrationReport:
    planned: dict[str, int] = field(default_factory=dict)
    copied: dict[str, int] = field(default_factory=dict)
    resumed: bool = False
    problems: list[str] = field(default_factory=list)
    audit_head: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _noop(_table: str, _done: int, _total: int) -> None:
    return None


def _writable(source: Table) -> Any:
    """A lightweight copy of the table whose encrypted columns take the stored text as is."""
    columns = [column(c.name, Text() if isinstance(c.type, EncryptedString) else c.type) for c in source.columns]
    return table(source.name, *columns)


async def _counts(connection: AsyncConnection) -> dict[str, int]:
    return {t.name: int((await connection.execute(select(func.count()).select_from(t))).scalar_one()) for t in data_tables()}


async def _marker(connection: AsyncConnection) -> dict[str, int] | None:
    exists = (await connection.execute(text("SELECT to_regclass(:name)"), {"name": MARKER})).scalar_one()
    if exists is None:
        return None
    rows = await connection.execute(text(f"SELECT table_name, copied FROM {MARKER}"))  # noqa: S608 - constant name
    return {name: int(copied) for name, copied in rows}


async def _copy_table(
    source: AsyncConnection, target: AsyncEngine, tbl: Table, done: int, total: int, batch: int, progress: Progress
) -> int:
    order = primary_key(tbl)
    group = GROUPED_BY.get(tbl.name)
    writable = _writable(tbl)
    names = [c.name for c in tbl.columns]
    while done < total:
        rows = list((await source.execute(select(*raw_columns(tbl)).order_by(*order).offset(done).limit(batch))).all())
        if not rows:
            break
        if group is not None:
            index = names.index(group)
            last = rows[-1][index]
            more = (await source.execute(select(*raw_columns(tbl)).order_by(*order).offset(done + len(rows)).limit(batch))).all()
            for row in more:
                if row[index] != last:
                    break
                rows.append(row)
        async with target.begin() as connection:
            await connection.execute(writable.insert(), [dict(zip(names, row, strict=True)) for row in rows])
            await connection.execute(
                text(
                    f"INSERT INTO {MARKER} (table_name, copied) VALUES (:t, :n) "  # noqa: S608 - constant name
                    "ON CONFLICT (table_name) DO UPDATE SET copied = EXCLUDED.copied"
                ),
                {"t": tbl.name, "n": done + len(rows)},
            )
        done += len(rows)
        progress(tbl.name, done, total)
    return done


async def _reset_sequences(target: AsyncEngine) -> None:
    async with target.begin() as connection:
        for tbl in data_tables():
            for col in tbl.primary_key.columns:
                if col.autoincrement is True:
                    await connection.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{tbl.name}', '{col.name}'), "  # noqa: S608 - metadata names
                            f"COALESCE((SELECT max({col.name}) FROM {tbl.name}), 0) + 1, false)"
                        )
                    )


async def migrate_to_postgres(
    settings: Settings, target_url: str, *, dry_run: bool = False, batch: int = 5000, progress: Progress = _noop
) -> MigrationReport:
    """Copy the configured SQLite database to the empty PostgreSQL database at `target_url`."""
    if make_url(settings.effective_database_url).get_backend_name() != "sqlite":
        raise MigrationError("the configured database is not SQLite: migrate to-postgres moves an embedded installation")
    if make_url(target_url).get_backend_name() != "postgresql":
        raise MigrationError(f"the target must be a PostgreSQL URL (postgresql+asyncpg://...), got {make_url(target_url)!r}")
    report = MigrationReport()
    source_db = Database(settings)
    target = create_async_engine(target_url)
    try:
        async with source_db.engine.connect() as source:
            current = await migrations.current_revisions(source_db.engine)
            if set(current) != set(migrations.head_revisions()):
                raise MigrationError("the source database is not at the latest schema: run `tradestack db upgrade` first")
            report.planned = await _counts(source)
            async with target.connect() as connection:
                marker = await _marker(connection)
                has_schema = (await connection.execute(text("SELECT to_regclass('users')"))).scalar_one() is not None
                occupied = sum((await _counts(connection)).values()) if has_schema else 0
            if occupied and marker is None:
                raise MigrationError(
                    f"the target database already holds {occupied} rows and no unfinished migration: use an empty database"
                )
            report.resumed = marker is not None
            if dry_run:
                report.copied = dict(marker or {})
                return report
            await migrations.upgrade(target)
            async with target.begin() as connection:
                await connection.execute(
                    text(f"CREATE TABLE IF NOT EXISTS {MARKER} (table_name text PRIMARY KEY, copied bigint NOT NULL)")
                )
            marker = marker or {}
            for tbl in data_tables():
                report.copied[tbl.name] = await _copy_table(
                    source, target, tbl, marker.get(tbl.name, 0), report.planned[tbl.name], batch, progress
                )
            await _reset_sequences(target)
            async with source_db.engine.connect() as fresh_source, target.connect() as connection:
                expected = await fingerprint(fresh_source)
                actual = await fingerprint(connection)
            report.problems.extend(actual.differences(expected))
            report.audit_head = expected.audit_head
        target_db = Database(settings.model_copy(update={"database_url": target_url, "database_replica_url": None}))
        try:
            integrity = await check_integrity(target_db)
            report.problems.extend(f"integrity: {problem}" for problem in integrity.problems)
            audit = await AuditService(target_db, LiveClock()).verify()
            if not audit.ok:
                report.problems.append(f"audit chain on the target: {audit.problem}")
            elif audit.head_hash != report.audit_head:
                report.problems.append(f"audit head on the target {audit.head_hash}, source {report.audit_head}")
        finally:
            await target_db.dispose()
        if report.ok:
            async with target.begin() as connection:
                await connection.execute(text(f"DROP TABLE {MARKER}"))
        return report
    finally:
        await target.dispose()
        await source_db.dispose()
