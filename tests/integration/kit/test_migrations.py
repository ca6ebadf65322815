"""Migrations go up, all the way down and up again on both databases, and agree with the models."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy.exc
from sqlalchemy import inspect

from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database
from tradestack.kit.outages import is_lock_timeout
from tradestack.models import Base

from ...conftest import _asyncpg_dsn  # type: ignore[import-not-found]
from ..trading.processes import TRADESTACK, process_env  # type: ignore[import-not-found]


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_upgrade_downgrade_to_base_upgrade_again(database_url: str, tmp_path: Path) -> None:
    db = Database(Settings(database_url=database_url, data_dir=tmp_path))
    try:
        assert await migrations.current_revisions(db.engine) == ()
        await migrations.upgrade(db.engine)
        assert await migrations.current_revisions(db.engine) == migrations.head_revisions()
        assert set(Base.metadata.tables) <= await _tables(db)

        await migrations.downgrade(db.engine, "base")
        assert await migrations.current_revisions(db.engine) == ()
        assert await _tables(db) <= {"alembic_version"}

        await migrations.upgrade(db.engine)
        assert await migrations.current_revisions(db.engine) == migrations.head_revisions()
        await migrations.check(db.engine)
    finally:
        await db.dispose()


async def test_each_step_down_and_up_works(database_url: str, tmp_path: Path) -> None:
    db = Database(Settings(database_url=database_url, data_dir=tmp_path))
    try:
        revisions = [revision for revision, _, _ in reversed(migrations.history())]
        for revision in revisions:
            await migrations.upgrade(db.engine, revision)
            await migrations.downgrade(db.engine, "-1")
            await migrations.upgrade(db.engine, revision)
            assert await migrations.current_revisions(db.engine) == (revision,)
    finally:
        await db.dispose()


async def test_a_revision_that_fails_half_way_leaves_nothing_of_it(database_url: str, tmp_path: Path) -> None:
    """h17live_a creates a table, then two indexes; its second index cannot be made (a table holds the name): the run
    fails there and leaves the database at the revision before, whole (no table of h17live_a's, on SQLite too, whose
    DDL the sqlite3 module runs outside any transaction unless one is begun for it), so once the name is free the next
    run migrates to head."""
    db = Database(Settings(database_url=database_url, data_dir=tmp_path))
    try:
        await migrations.upgrade(db.engine, "h12pg_a")
        async with db.engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE ix_strategy_deployments_owner (x INTEGER)")
        with pytest.raises(sqlalchemy.exc.DatabaseError, match="ix_strategy_deployments_owner"):
            await migrations.upgrade(db.engine)
        assert await migrations.current_revisions(db.engine) == ("h12pg_a",)
        assert "strategy_deployments" not in await _tables(db)
        async with db.engine.begin() as connection:
            await connection.exec_driver_sql("DROP TABLE ix_strategy_deployments_owner")
        await migrations.upgrade(db.engine)
        assert await migrations.current_revisions(db.engine) == migrations.head_revisions()
        await migrations.check(db.engine)
    finally:
        await db.dispose()


def test_single_head() -> None:
    assert len(migrations.head_revisions()) == 1


# -- index builds on a table that takes writes (kit.online_ddl) -------------------------------------------------------
WORKING_INDEX = (
    "CREATE INDEX CONCURRENTLY ix_orders_working ON orders (account_id, id) "
    "WHERE status IN ('accepted', 'partially_filled', 'triggered')"
)


async def _writer_lock(connection: asyncpg.Connection, *, timeout_ms: int) -> None:
    """Begin a transaction on `connection` holding what an INSERT into orders holds (ROW EXCLUSIVE)."""
    await connection.execute(f"BEGIN; SET LOCAL lock_timeout = {timeout_ms}; LOCK TABLE orders IN ROW EXCLUSIVE MODE")


async def _index_valid(dsn: str, name: str) -> tuple[bool | None, str | None]:
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indexrelid = to_regclass($1)", name
        )
        return (row[0], row[1]) if row else (None, None)
    finally:
        await connection.close()


async def test_an_index_migration_on_orders_lets_order_writes_through_while_it_builds(postgres_url: str, tmp_path: Path) -> None:
    """h28rec_a builds ix_orders_working while a transaction writes orders: a plain CREATE INDEX would queue for a
    SHARE lock behind it and every later write behind the CREATE INDEX; built concurrently, later writes go through,
    and the build waits out the writer past the connections' lock_timeout instead of failing (leaving it invalid)."""
    dsn = _asyncpg_dsn(postgres_url)
    db = Database(Settings(database_url=postgres_url, data_dir=tmp_path, database_lock_timeout_seconds=1.0))
    try:
        await migrations.upgrade(db.engine, "h27pg_a")
        holder, writer = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        await _writer_lock(holder, timeout_ms=2000)
        upgrade = asyncio.create_task(migrations.upgrade(db.engine, "h28rec_a"))
        try:
            for _ in range(300):  # the build is under way, waiting for the holder's transaction (the only lock wait here)
                waiting = await holder.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if waiting or upgrade.done():
                    break
                await asyncio.sleep(0.05)
            assert waiting == 1, "the index build never waited for the transaction writing orders"
            await _writer_lock(writer, timeout_ms=200)  # a write that starts now is not held up by the build
            await writer.execute("COMMIT")
            await asyncio.sleep(1.5)  # past the connections' lock_timeout (1 s): the build still waits
            assert not upgrade.done()
        finally:
            await holder.execute("COMMIT")
            await holder.close()
            await writer.close()
        await asyncio.wait_for(upgrade, 30)
        assert await migrations.current_revisions(db.engine) == ("h28rec_a",)
        assert (await _index_valid(dsn, "ix_orders_working"))[0] is True
    finally:
        await db.dispose()


async def test_an_index_build_left_invalid_by_an_earlier_run_is_built_again(postgres_url: str, tmp_path: Path) -> None:
    """A concurrent build that failed half-way leaves an INVALID index under the name; the next upgrade replaces it."""
    dsn = _asyncpg_dsn(postgres_url)
    db = Database(Settings(database_url=postgres_url, data_dir=tmp_path))
    try:
        await migrations.upgrade(db.engine, "h27pg_a")
        holder, builder = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        await _writer_lock(holder, timeout_ms=2000)
        try:
            await builder.execute("SET lock_timeout = 200")
            with pytest.raises(asyncpg.exceptions.LockNotAvailableError):
                await builder.execute(WORKING_INDEX)
        finally:
            await builder.close()
            await holder.execute("ROLLBACK")
            await holder.close()
        assert (await _index_valid(dsn, "ix_orders_working"))[0] is False

        await migrations.upgrade(db.engine)
        assert await migrations.current_revisions(db.engine) == migrations.head_revisions()
        valid, definition = await _index_valid(dsn, "ix_orders_working")
        assert valid is True
        assert definition is not None
        assert "WHERE" in definition
        await migrations.check(db.engine)
    finally:
        await db.dispose()


async def test_two_upgrades_at_once_take_turns(postgres_url: str, tmp_path: Path) -> None:
    """Two processes migrating one PostgreSQL database at once (a second `db upgrade` while the release's runs): the
    second waits for the first, then finds nothing left to do."""
    first, second = (Database(Settings(database_url=postgres_url, data_dir=tmp_path)) for _ in range(2))
    try:
        await asyncio.wait_for(asyncio.gather(migrations.upgrade(first.engine), migrations.upgrade(second.engine)), 120)
        assert await migrations.current_revisions(first.engine) == migrations.head_revisions()
        await migrations.check(first.engine)
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_failed_upgrade_lets_the_next_one_run(postgres_url: str, tmp_path: Path) -> None:
    """A revision that fails (its DDL past lock_timeout) fails the run with its own error, and leaves nothing held."""
    dsn = _asyncpg_dsn(postgres_url)
    first = Database(Settings(database_url=postgres_url, data_dir=tmp_path, database_lock_timeout_seconds=0.3))
    second = Database(Settings(database_url=postgres_url, data_dir=tmp_path))
    holder = await asyncpg.connect(dsn)
    try:
        await migrations.upgrade(first.engine)
        await _writer_lock(holder, timeout_ms=2000)  # h27pg_a's downgrade drops a column of orders: it needs the table
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="lock timeout") as failed:
            await migrations.downgrade(first.engine, "h25desk_a")
        assert is_lock_timeout(failed.value)
        await holder.execute("ROLLBACK")
        await asyncio.wait_for(migrations.downgrade(second.engine, "h25desk_a"), 30)
        assert await migrations.current_revisions(second.engine) == ("h25desk_a",)
    finally:
        await holder.close()
        await first.dispose()
        await second.dispose()


async def test_a_run_waiting_for_the_migration_lock_names_who_holds_it_and_gives_up_when_told(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that finds another's migration lock says who holds it (when it starts waiting, then every
    MIGRATION_LOCK_REPORT_SECONDS), and past `lock_wait` fails naming it, having applied nothing; with time enough it
    migrates once the lock is let go."""
    monkeypatch.setattr(migrations, "MIGRATION_LOCK_REPORT_SECONDS", 0.4)
    db = Database(Settings(database_url=postgres_url, data_dir=tmp_path))
    other = await asyncpg.connect(_asyncpg_dsn(postgres_url), server_settings={"application_name": "the-other-release"})
    try:
        await other.execute(f"SELECT pg_advisory_lock({migrations.MIGRATION_LOCK_KEY})")
        reports: list[tuple[migrations.LockHolder | None, float]] = []
        with pytest.raises(migrations.MigrationLockBusyError) as busy:
            await asyncio.wait_for(
                migrations.upgrade(
                    db.engine, lock_wait=1.0, on_lock_wait=lambda holder, waited: reports.append((holder, waited))
                ),
                30,
            )
        pid = other.get_server_pid()
        assert busy.value.holder is not None
        assert busy.value.holder.pid == pid
        assert busy.value.holder.application == "the-other-release"
        assert "pg_advisory_lock" in busy.value.holder.query
        assert busy.value.waited >= 1.0
        message = str(busy.value)
        assert f"backend pid {pid} (the-other-release" in message
        assert "nothing applied" in message
        assert f"pg_terminate_backend({pid})" in message
        assert await migrations.current_revisions(db.engine) == ()
        assert len(reports) >= 2  # when the wait started, then again
        assert [holder.pid if holder else None for holder, _ in reports] == [pid] * len(reports)
        assert reports[0][1] < 0.4 <= reports[1][1]

        async def let_go() -> None:
            await asyncio.sleep(0.5)
            await other.execute(f"SELECT pg_advisory_unlock({migrations.MIGRATION_LOCK_KEY})")

        reports.clear()
        await asyncio.wait_for(
            asyncio.gather(
                migrations.upgrade(db.engine, lock_wait=60.0, on_lock_wait=lambda h, w: reports.append((h, w))), let_go()
            ),
            120,
        )
        assert await migrations.current_revisions(db.engine) == migrations.head_revisions()
        assert reports
        assert reports[0][0] is not None
        assert reports[0][0].pid == pid
    finally:
        await other.close()
        await db.dispose()


async def test_a_killed_migrating_process_leaves_no_backend_waiting_on(postgres_url: str, tmp_path: Path) -> None:
    """A `db upgrade` killed while its index build waits (here for a transaction writing orders; in life a long
    backup, or a deploy's migrate timeout) does not leave its PostgreSQL backend behind, waiting, then building, and
    holding the migration lock meanwhile: the session checks that its client is still there (from when it has the
    migration lock, after waiting its turn for it), and ends when it is not. The next run then migrates."""
    dsn = _asyncpg_dsn(postgres_url)
    db = Database(Settings(database_url=postgres_url, data_dir=tmp_path))
    holder, watcher = await asyncpg.connect(dsn), await asyncpg.connect(dsn)  # the watcher reads outside a transaction
    process: subprocess.Popen[bytes] | None = None
    try:
        await migrations.upgrade(db.engine, "h27pg_a")
        await _writer_lock(holder, timeout_ms=2000)
        env = process_env(tmp_path, TRADESTACK_DATABASE_URL=postgres_url)
        await watcher.execute(f"SELECT pg_advisory_lock({migrations.MIGRATION_LOCK_KEY})")  # it waits its turn first
        process = subprocess.Popen([TRADESTACK, "db", "upgrade", "h28rec_a"], env=env, cwd=tmp_path)
        for _ in range(600):
            if await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND (query LIKE '%pg_try_advisory_lock%' OR query ILIKE 'ROLLBACK%')"  # asking, or between two asks
            ):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # asked more than once
        await watcher.execute(f"SELECT pg_advisory_unlock({migrations.MIGRATION_LOCK_KEY})")
        build_pid = None
        for _ in range(600):  # until its build waits for the holder's transaction
            build_pid = await watcher.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                " AND query ILIKE 'CREATE INDEX CONCURRENTLY%'"
            )
            if build_pid is not None or process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        assert build_pid is not None, f"the upgrade's index build never waited (exit status {process.poll()})"
        process.kill()
        process.wait(10)
        gone = False
        for _ in range(100):  # 10 s
            gone = not await watcher.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", build_pid)
            if gone:
                break
            await asyncio.sleep(0.1)
        assert gone, "the killed upgrade's backend still waits, holding the migration lock"
        await holder.execute("COMMIT")
        await asyncio.wait_for(migrations.upgrade(db.engine, lock_wait=10.0), 60)
        assert await migrations.current_revisions(db.engine) == migrations.head_revisions()
        assert (await _index_valid(dsn, "ix_orders_working"))[0] is True
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        await holder.close()
        await watcher.close()
        await db.dispose()


async def test_a_revision_waiting_for_other_transactions_says_who_it_waits_for(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """h28rec_a builds an index concurrently, which waits for every transaction older than it: here one reading orders
    in a snapshot, as `pg_dump` does. Once it has waited MIGRATION_STEP_WAIT_REPORT_SECONDS, and every
    MIGRATION_LOCK_REPORT_SECONDS after, the run says the statement and who it waits for (pid, application name, since
    when its transaction is open); steps that do not wait say nothing; once that transaction ends, the build ends."""
    monkeypatch.setattr(migrations, "MIGRATION_STEP_WATCH_SECONDS", 0.1)
    monkeypatch.setattr(migrations, "MIGRATION_STEP_WAIT_REPORT_SECONDS", 0.5)
    monkeypatch.setattr(migrations, "MIGRATION_LOCK_REPORT_SECONDS", 0.6)
    dsn = _asyncpg_dsn(postgres_url)
    db = Database(Settings(database_url=postgres_url, data_dir=tmp_path))
    backup = await asyncpg.connect(dsn, server_settings={"application_name": "nightly-backup"})
    reports: list[tuple[str, tuple[migrations.LockHolder, ...], float]] = []

    def heard(statement: str, blockers: tuple[migrations.LockHolder, ...], waited: float) -> None:
        reports.append((statement, blockers, waited))

    try:
        await migrations.upgrade(db.engine, "h27pg_a", on_step_wait=heard)
        assert reports == []  # nothing waited
        await backup.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await backup.fetchval("SELECT count(*) FROM orders")  # its snapshot is now older than any build to come
        upgrade = asyncio.create_task(migrations.upgrade(db.engine, "h28rec_a", on_step_wait=heard))
        try:
            for _ in range(300):
                if len(reports) >= 2 or upgrade.done():
                    break
                await asyncio.sleep(0.05)
            assert not upgrade.done(), "the index build did not wait for the older transaction"
        finally:
            await backup.execute("COMMIT")
        await asyncio.wait_for(upgrade, 30)
        assert await migrations.current_revisions(db.engine) == ("h28rec_a",)
        assert (await _index_valid(dsn, "ix_orders_working"))[0] is True
        assert len(reports) >= 2, reports
        statement, blockers, waited = reports[0]
        assert statement.startswith("CREATE INDEX CONCURRENTLY ix_orders_working")
        assert [blocker.pid for blocker in blockers] == [backup.get_server_pid()]
        assert blockers[0].application == "nightly-backup"
        assert blockers[0].transaction_started is not None
        assert "in a transaction since" in blockers[0].describe()
        assert waited >= 0.5
        assert reports[1][2] - waited >= 0.6  # said again after the report interval, not at every look
    finally:
        await backup.close()
        await db.dispose()
