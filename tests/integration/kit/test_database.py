"""Sessions, the read replica, SQLite pragmas and pool accounting."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.kit import db as db_module
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database, execute_core, in_list, planned_from_here, unnest_insert
from tradestack.kit.outages import is_lock_timeout
from tradestack.kit.types import ExactDecimal
from tradestack.models.base import UTCDateTime
from tradestack.models.instance import Instance
from tradestack.ops.repository import InstanceRepository

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


async def test_session_commits_on_success_and_rolls_back_on_error(database: Database) -> None:
    async with database.session() as session:
        session.add(Instance(id="a" * 36, name="kept", created_at=NOW, seeded_at=NOW))

    async def fail_after_flush() -> None:
        async with database.session() as session:
            session.add(Instance(id="b" * 36, name="lost", created_at=NOW, seeded_at=NOW))
            await session.flush()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_after_flush()
    async with database.read_session() as session:
        names = (await session.execute(text("SELECT name FROM instances"))).scalars().all()
    assert names == ["kept"]


async def test_read_repository_uses_the_replica(tmp_path: Path) -> None:
    primary_url = f"sqlite+aiosqlite:///{tmp_path / 'primary.db'}"
    replica_url = f"sqlite+aiosqlite:///{tmp_path / 'replica.db'}"
    for url, name in ((primary_url, "primary"), (replica_url, "replica")):
        db = Database(Settings(database_url=url))
        await migrations.upgrade(db.engine)
        async with db.session() as session:
            await InstanceRepository(session).add(Instance(id=name.ljust(36, "0"), name=name, created_at=NOW, seeded_at=NOW))
        await db.dispose()

    db = Database(Settings(database_url=primary_url, database_replica_url=replica_url))
    try:
        async with db.read_session() as session:
            assert (await InstanceRepository(session).get()).name == "replica"  # type: ignore[union-attr]
        async with db.session() as session:
            assert (await InstanceRepository(session).get()).name == "primary"  # type: ignore[union-attr]
        assert db.pool_status(replica=True).size >= 1
    finally:
        await db.dispose()


async def test_read_session_on_postgres_refuses_writes(postgres_url: str) -> None:
    db = Database(Settings(database_url=postgres_url))
    try:
        await migrations.upgrade(db.engine)
        async with db.read_session() as session:
            with pytest.raises(DBAPIError, match="read-only transaction"):
                await session.execute(text("INSERT INTO instances VALUES ('x', 'x', now(), now())"))
    finally:
        await db.dispose()


async def test_sqlite_runs_in_wal_mode(sqlite_url: str) -> None:
    db = Database(Settings(database_url=sqlite_url))
    try:
        async with db.engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
    finally:
        await db.dispose()


async def test_ping_and_pool_status_count_checked_out_connections(database: Database) -> None:
    assert await database.ping() > 0
    async with database.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        assert database.pool_status().checked_out == 1
    assert database.pool_status().checked_out == 0


async def test_postgresql_connections_bound_lock_waits_and_idle_transactions(postgres_url: str, tmp_path: Path) -> None:
    defaults = Database(Settings(database_url=postgres_url, data_dir=tmp_path))
    tuned = Database(
        Settings(
            database_url=postgres_url,
            data_dir=tmp_path,
            database_lock_timeout_seconds=2.5,
            database_idle_in_transaction_timeout_seconds=0,
        )
    )
    try:
        for database, expected in ((defaults, ("15s", "1min")), (tuned, ("2500ms", "0"))):
            async with database.session() as session:
                lock = (await session.execute(text("SHOW lock_timeout"))).scalar_one()
                idle = (await session.execute(text("SHOW idle_in_transaction_session_timeout"))).scalar_one()
            assert (lock, idle) == expected
    finally:
        await defaults.dispose()
        await tuned.dispose()


async def test_postgresql_statements_are_planned_for_the_table_as_it_is(postgres_url: str, tmp_path: Path) -> None:
    """A prepared statement is planned at every run: a generic plan made while a table was small (a scan of it) is not
    kept for the connection's life once the table has grown (`postgres_session_settings`)."""
    database = Database(Settings(database_url=postgres_url, data_dir=tmp_path))
    planning = text("SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan')")
    try:
        for session_of in (database.session, database.read_session, database.loop_read_session):
            async with session_of() as session:
                assert tuple((await session.execute(planning)).one()) == ("force_custom_plan", "on")
        # The order desk's connection begins each transaction with plans kept for it, made without sequential scans
        # (its first statement is its lock, by primary key), until a statement hands it back: the lock does.
        for _ in range(2):
            async with database.writer_session() as session:
                assert tuple((await session.execute(planning)).one()) == ("force_generic_plan", "off")
                await session.execute(select(planned_from_here()))
                assert tuple((await session.execute(planning)).one()) == ("force_custom_plan", "on")
    finally:
        await database.dispose()


async def test_postgresql_loop_reads_run_outside_a_transaction_on_one_unpinged_connection(
    postgres_url: str, tmp_path: Path
) -> None:
    """The matching engine's reads (`loop_read_session`): no BEGIN, no ROLLBACK, no pre-ping: one round trip a read."""
    database = Database(Settings(database_url=postgres_url, data_dir=tmp_path))
    try:
        for session_of, in_transaction in ((database.read_session, True), (database.loop_read_session, False)):
            async with session_of() as session:
                first = (await session.execute(text("SELECT now()"))).scalar_one()
                await asyncio.sleep(0.01)
                second = (await session.execute(text("SELECT now()"))).scalar_one()
            assert (first == second) is in_transaction  # now() is the start of the statement's transaction
        engine = database._loop_reader_engine
        assert engine is not None
        assert engine.sync_engine.pool.size() == 1  # type: ignore[attr-defined]
        assert engine.pool._pre_ping is False
    finally:
        await database.dispose()


async def test_postgresql_loop_reader_whose_connection_was_lost_reads_on_a_new_one_at_the_next_read(
    postgres_url: str, tmp_path: Path
) -> None:
    """Unpinged, the loop reader learns of a lost connection from the read it fails (the engine retries at its next
    step); that failure drops the connection, and the next read opens another."""
    database = Database(Settings(database_url=postgres_url, data_dir=tmp_path))
    try:
        async with database.loop_read_session() as session:
            lost = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        admin = await asyncpg.connect(make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", lost)
        finally:
            await admin.close()
        with pytest.raises(DBAPIError) as failed:
            async with database.loop_read_session() as session:
                await session.execute(text("SELECT 1"))
        assert failed.value.connection_invalidated
        async with database.loop_read_session() as session:
            again = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert again != lost
    finally:
        await database.dispose()


async def _instance_names(db: Database) -> list[str]:
    async with db.read_session() as session:
        return list((await session.execute(text("SELECT name FROM instances ORDER BY name"))).scalars())


async def test_sqlite_writer_session_runs_on_the_loop_thread_without_busy_waits_or_checkpoints(sqlite_url: str) -> None:
    db = Database(Settings(database_url=sqlite_url))
    try:
        await migrations.upgrade(db.engine)
        async with db.writing(), db.writer_session() as session:
            raw = await (await session.connection()).get_raw_connection()
            sqlite = raw.driver_connection._conn  # type: ignore[union-attr]
            sqlite.create_function("thread_id", 0, threading.get_ident)
            ran_on = (await session.execute(text("SELECT thread_id()"))).scalar_one()
            pragmas = [
                (await session.execute(text(f"PRAGMA {name}"))).scalar_one() for name in ("busy_timeout", "wal_autocheckpoint")
            ]
            session.add(Instance(id="w" * 36, name="written", created_at=NOW, seeded_at=NOW))
        assert ran_on == threading.get_ident()  # no trip to the connection's thread
        assert pragmas == [0, 0]
        assert await _instance_names(db) == ["written"]
    finally:
        await db.dispose()


async def test_sqlite_checkpoints_copy_what_the_writer_session_wrote_and_its_log_starts_over(sqlite_url: str) -> None:
    """The writer session never checkpoints: `Database.checkpoint` does, on a pooled connection; the log then starts
    over instead of growing."""
    db = Database(Settings(database_url=sqlite_url))
    wal = Path(make_url(sqlite_url).database or "").with_name("tradestack.db-wal")
    try:
        await migrations.upgrade(db.engine)
        assert await db.checkpoint() is not None  # the migrations' frames

        async def write(prefix: str, count: int) -> int:
            """The log's size after `count` commits of the writer session."""
            for n in range(count):
                async with db.writing(), db.writer_session() as session:
                    instance_id = f"{prefix}{n:04d}".ljust(36, "0")
                    session.add(Instance(id=instance_id, name=f"{prefix}{n}", created_at=NOW, seeded_at=NOW))
            return wal.stat().st_size

        first = await write("a", 50)
        assert await write("b", 50) > first  # the writer session's commits copy nothing: the log grows
        frames, copied = await db.checkpoint() or (0, -1)
        assert copied == frames >= 100
        grown = wal.stat().st_size
        assert await write("c", 50) <= grown  # the log started over from its beginning
        assert len(await _instance_names(db)) == 150
    finally:
        await db.dispose()


async def test_postgresql_has_no_checkpoint_to_run(postgres_url: str) -> None:
    db = Database(Settings(database_url=postgres_url))
    try:
        assert not db.checkpoint_wal_needed
        assert await db.checkpoint() is None
    finally:
        await db.dispose()


async def test_sqlite_writer_session_waits_off_the_loop_for_a_write_lock_held_on_the_same_loop(sqlite_url: str) -> None:
    """A writer of the same loop that holds SQLite's lock across an await can finish while the writer session waits."""
    db = Database(Settings(database_url=sqlite_url))
    try:
        await migrations.upgrade(db.engine)
        holding, release = asyncio.Event(), asyncio.Event()

        async def other_writer() -> None:
            async with db.session() as session:
                session.add(Instance(id="o" * 36, name="other", created_at=NOW, seeded_at=NOW))
                await session.flush()
                holding.set()
                await release.wait()  # holds the write lock across an await, on this loop

        other = asyncio.create_task(other_writer())
        await holding.wait()

        async def desk_writer() -> None:
            async with db.writer_session() as session:
                session.add(Instance(id="w" * 36, name="written", created_at=NOW, seeded_at=NOW))

        desk = asyncio.create_task(desk_writer())
        started = time.monotonic()
        await asyncio.sleep(0.05)
        assert time.monotonic() - started < 2  # the loop ran on while the desk waited for the lock (busy timeout: 10 s)
        assert not desk.done()
        release.set()
        await asyncio.wait_for(asyncio.gather(other, desk), timeout=5)
        assert await _instance_names(db) == ["other", "written"]
    finally:
        await db.dispose()


_METADATA = MetaData()
_ROWS = Table(
    "direct_rows",
    _METADATA,
    Column("id", String(8), primary_key=True),
    Column("amount", ExactDecimal(38, 18)),
    Column("at", UTCDateTime()),
    Column("flag", Boolean()),
    Column("count", Integer()),
    Column("note", String(20), default="python-side"),
)
_INSERT = insert(_ROWS)
_BUMP = update(_ROWS).where(_ROWS.c.id.in_(bindparam("ids", expanding=True))).values(count=_ROWS.c.count + 1).returning(*_ROWS.c)
_SELECT = select(_ROWS.c.id, _ROWS.c.amount, _ROWS.c.at, _ROWS.c.flag).where(
    _ROWS.c.id.in_(bindparam("ids", expanding=True)), _ROWS.c.count >= bindparam("least")
)
_WITH_DEFAULT = insert(_ROWS)  # executed without `note`: its Python-side default needs SQLAlchemy


async def _direct_rows_table(db: Database) -> list[dict[str, Any]]:
    """Create ``direct_rows``; three rows to write to it."""
    async with db.engine.begin() as connection:
        await connection.run_sync(_METADATA.create_all)
    return [
        {"id": f"r{n}", "amount": Decimal(f"{n}.10"), "at": NOW, "flag": n % 2 == 0, "count": n, "note": "given"}
        for n in range(3)
    ]


def _count_executions(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """A list that gets an item for each statement SQLAlchemy executes (its execution begins with an execution context)."""
    contexts: list[Any] = []
    made = DefaultExecutionContext._init_compiled.__func__  # type: ignore[attr-defined]

    def counted(cls: Any, *args: Any, **kwargs: Any) -> Any:
        contexts.append(args)
        return made(cls, *args, **kwargs)

    monkeypatch.setattr(DefaultExecutionContext, "_init_compiled", classmethod(counted))
    return contexts


async def test_sqlite_writer_session_runs_prebuilt_core_statements_on_the_driver_with_sqlalchemys_types(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`execute_core` on the order desk's SQLite connection: no SQLAlchemy execution, the same rows and stored values."""
    db = Database(Settings(database_url=sqlite_url))
    try:
        rows = await _direct_rows_table(db)
        contexts = _count_executions(monkeypatch)
        async with db.writing(), db.writer_session() as session:
            await execute_core(session, _INSERT, rows)  # executemany
            await execute_core(session, _INSERT, {**rows[0], "id": "single"})
            bumped = await execute_core(session, _BUMP, {"ids": ["r0", "r2"]})
            picked = await execute_core(session, _SELECT, {"ids": ["r1", "r2", "single"], "least": 1})
            picked_again = await execute_core(session, _SELECT, {"ids": ["r0", "single", "r2"], "least": 0})  # same lengths
            none = await execute_core(session, _SELECT, {"ids": [], "least": 0})
            assert contexts == []  # none went through SQLAlchemy's execution
            await execute_core(session, _WITH_DEFAULT, {"id": "dflt", "amount": Decimal(1), "at": NOW, "flag": True, "count": 0})
            assert len(contexts) == 1  # a Python-side default: SQLAlchemy's own execution computes it
            seen: list[str] = []
            event.listen(db.engine.sync_engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
            # Another engine's listener changes nothing here; one on this engine would see every statement again.
            await execute_core(session, _SELECT, {"ids": ["r0"], "least": 0})
            assert seen == []
            assert len(contexts) == 1
            event.listen(session.bind.sync_engine, "before_cursor_execute", lambda *args: seen.append(args[2]))  # type: ignore[union-attr]
            await execute_core(session, _SELECT, {"ids": ["r0"], "least": 0})
            assert len(seen) == 1  # the writer's own listener sees it: SQLAlchemy ran it
        assert sorted((r.id, r.count, r.amount, r.at, r.flag) for r in bumped) == [
            ("r0", 1, Decimal("0.1"), NOW, True),
            ("r2", 3, Decimal("2.1"), NOW, True),
        ]
        assert sorted(tuple(r) for r in picked) == [("r1", Decimal("1.1"), NOW, False), ("r2", Decimal("2.1"), NOW, True)]
        assert sorted(r.id for r in picked_again) == ["r0", "r2", "single"]
        assert none == []
        async with db.session() as session:  # the same rows through SQLAlchemy, committed
            stored = (await session.execute(select(_ROWS).order_by(_ROWS.c.id))).all()
            raw = (await session.execute(text("SELECT id, amount, at, flag, note FROM direct_rows ORDER BY id"))).all()
        assert [tuple(r) for r in stored] == [
            ("dflt", Decimal(1), NOW, True, 0, "python-side"),
            ("r0", Decimal("0.1"), NOW, True, 1, "given"),
            ("r1", Decimal("1.1"), NOW, False, 1, "given"),
            ("r2", Decimal("2.1"), NOW, True, 3, "given"),
            ("single", Decimal("0.1"), NOW, True, 0, "given"),
        ]
        async with db.session() as session:
            await session.execute(insert(_ROWS), [{**rows[0], "id": "viasa"}])
            via_sqlalchemy = (await session.execute(text("SELECT amount, at, flag FROM direct_rows WHERE id = 'viasa'"))).one()
        assert tuple(raw[1][1:4]) == tuple(via_sqlalchemy)  # stored as SQLAlchemy stores them
    finally:
        await db.dispose()


_BUMP_PG = update(_ROWS).where(in_list(_ROWS.c.id, "ids", postgresql=True)).values(count=_ROWS.c.count + 1).returning(*_ROWS.c)
_SELECT_PG = select(_ROWS.c.id, _ROWS.c.amount, _ROWS.c.at, _ROWS.c.flag).where(
    in_list(_ROWS.c.id, "ids", postgresql=True), _ROWS.c.count >= bindparam("least")
)
_UNNEST = unnest_insert(_ROWS)


def _failure(exc: BaseException) -> tuple[Any, ...]:
    """What a caller sees of a database error: its class, the driver error's class and SQLSTATE, the outage tests."""
    orig = getattr(exc, "orig", None)
    return (
        type(exc),
        type(orig),
        getattr(orig, "sqlstate", None),
        type(exc.__cause__),
        getattr(exc, "connection_invalidated", None),
        is_lock_timeout(exc),
    )


async def test_postgresql_writer_session_runs_prebuilt_core_statements_on_asyncpg_with_sqlalchemys_types_and_errors(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`execute_core` on the order desk's PostgreSQL connection: no SQLAlchemy execution, in SQLAlchemy's transaction,
    the same rows and stored values, errors raised as SQLAlchemy raises them (lock timeout, integrity, lost connection)."""
    db = Database(Settings(database_url=postgres_url, database_lock_timeout_seconds=0.2))
    try:
        rows = await _direct_rows_table(db)
        columns = {f"direct_rows_{name}": [row[name] for row in rows] for name in rows[0]}
        contexts = _count_executions(monkeypatch)
        async with db.writer_session() as session:
            await execute_core(session, _UNNEST, columns)
            await execute_core(session, _INSERT, {**rows[0], "id": "single"})
            bumped = await execute_core(session, _BUMP_PG, {"ids": ["r0", "r2"]})
            picked = await execute_core(session, _SELECT_PG, {"ids": ["r1", "r2", "single"], "least": 1})
            none = await execute_core(session, _SELECT_PG, {"ids": [], "least": 0})
            assert contexts == []  # none went through SQLAlchemy's execution
            await execute_core(session, _INSERT, [{**rows[0], "id": "many1"}, {**rows[0], "id": "many2"}])
            assert len(contexts) == 1  # an executemany: SQLAlchemy's
            await execute_core(session, _WITH_DEFAULT, {"id": "dflt", "amount": Decimal(1), "at": NOW, "flag": True, "count": 0})
            assert len(contexts) == 2  # a Python-side default: SQLAlchemy's own execution computes it
        assert sorted((r.id, r.count, r.amount, r.at, r.flag) for r in bumped) == [
            ("r0", 1, Decimal("0.1"), NOW, True),
            ("r2", 3, Decimal("2.1"), NOW, True),
        ]
        assert sorted(tuple(r) for r in picked) == [("r1", Decimal("1.1"), NOW, False), ("r2", Decimal("2.1"), NOW, True)]
        assert none == []
        async with db.session() as session:  # the same rows through SQLAlchemy, committed
            stored = (await session.execute(select(_ROWS).order_by(_ROWS.c.id))).all()
            raw = (await session.execute(text("SELECT id, amount::text, at::text, flag FROM direct_rows ORDER BY id"))).all()
            await session.execute(insert(_ROWS), {**rows[0], "id": "viasa"})
            via_sqlalchemy = (
                await session.execute(text("SELECT amount::text, at::text, flag FROM direct_rows WHERE id = 'viasa'"))
            ).one()
        assert [tuple(r) for r in stored] == [
            ("dflt", Decimal(1), NOW, True, 0, "python-side"),
            ("many1", Decimal("0.1"), NOW, True, 0, "given"),
            ("many2", Decimal("0.1"), NOW, True, 0, "given"),
            ("r0", Decimal("0.1"), NOW, True, 1, "given"),
            ("r1", Decimal("1.1"), NOW, False, 1, "given"),
            ("r2", Decimal("2.1"), NOW, True, 3, "given"),
            ("single", Decimal("0.1"), NOW, True, 0, "given"),
        ]
        assert tuple(raw[3][1:]) == tuple(via_sqlalchemy)  # stored as SQLAlchemy stores them

        async def failure(direct: bool, statement: Any, parameters: Any) -> tuple[Any, ...]:
            monkeypatch.setattr(db_module, "_desk_asyncpg", desk_asyncpg if direct else lambda connection: False)
            contexts.clear()
            with pytest.raises(Exception) as raised:  # noqa: PT011  # compared below, whatever it is
                async with db.writer_session() as session:
                    await execute_core(session, statement, parameters)
            assert (contexts == []) is direct
            return _failure(raised.value)

        desk_asyncpg = db_module._desk_asyncpg
        duplicate = {**rows[0], "id": "r1"}
        assert await failure(True, _INSERT, duplicate) == await failure(False, _INSERT, duplicate)
        async with db.session() as holder:  # another transaction holds r1's row: the desk's UPDATE times out
            await holder.execute(text("SELECT 1 FROM direct_rows WHERE id = 'r1' FOR UPDATE"))
            timeouts = [await failure(direct, _BUMP_PG, {"ids": ["r1"]}) for direct in (True, False)]
        assert timeouts[0] == timeouts[1]
        assert timeouts[0][-1] is True  # kit.outages.is_lock_timeout: the desk's 503
        # The server ends the writer's connection: the statement fails as SQLAlchemy's would, the connection is
        # invalidated, and the next transaction reconnects.
        lost = []
        for direct in (True, False):
            async with db.writer_session() as session:
                await execute_core(session, _SELECT_PG, {"ids": ["r0"], "least": 0})
            async with db.session() as killer:
                await killer.execute(
                    text(
                        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                        " WHERE pid <> pg_backend_pid() AND datname = current_database() AND state = 'idle'"
                    )
                )
            await asyncio.sleep(0.1)  # the writer's connection has seen its end (else which error it gets is a race)
            lost.append(await failure(direct, _SELECT_PG, {"ids": ["r0"], "least": 0}))
        assert lost[0] == lost[1]
        assert lost[0][4] is True  # connection_invalidated
        monkeypatch.setattr(db_module, "_desk_asyncpg", desk_asyncpg)
        contexts.clear()
        async with db.writer_session() as session:
            again = await execute_core(session, _SELECT_PG, {"ids": ["r0"], "least": 0})
            assert contexts == []
            seen: list[str] = []
            event.listen(session.bind.sync_engine, "before_cursor_execute", lambda *args: seen.append(args[2]))  # type: ignore[union-attr]
            await execute_core(session, _SELECT_PG, {"ids": ["r0"], "least": 0})
            assert len(seen) == 1  # the writer's own listener sees it: SQLAlchemy ran it
        assert [r.id for r in again] == ["r0"]
    finally:
        await db.dispose()


async def test_postgresql_writer_session_commits_on_asyncpg_and_fails_as_sqlalchemys_commit(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order desk's transactions commit straight on asyncpg (`_commit_directly`), not through
    `AsyncSession.commit`: committed all the same, pending ORM changes flushed first; a COMMIT the server refuses
    and a connection lost before COMMIT raise what SQLAlchemy's commit raises (the lost connection invalidated),
    and the next transaction runs on a fresh connection."""
    db = Database(Settings(database_url=postgres_url))
    try:
        rows = await _direct_rows_table(db)
        await migrations.upgrade(db.engine)
        async with db.session() as session:  # two rows of one count fail at COMMIT, not at their INSERT
            await session.execute(text("ALTER TABLE direct_rows ADD UNIQUE (count) DEFERRABLE INITIALLY DEFERRED"))
        sqlalchemys: list[AsyncSession] = []
        commit = AsyncSession.commit

        async def counted(session: AsyncSession) -> None:
            sqlalchemys.append(session)
            await commit(session)

        monkeypatch.setattr(AsyncSession, "commit", counted)
        for row in rows:
            async with db.writer_session() as session:
                await execute_core(session, _INSERT, row)
        async with db.writer_session() as session:
            await execute_core(session, _BUMP_PG, {"ids": ["r2"]})
            session.add(Instance(id="i" * 36, name="orm", created_at=NOW, seeded_at=NOW))  # flushed at COMMIT
        assert sqlalchemys == []
        async with db.read_session() as session:
            stored = (await session.execute(select(_ROWS.c.id, _ROWS.c.count).order_by(_ROWS.c.id))).all()
        assert [tuple(row) for row in stored] == [("r0", 0), ("r1", 1), ("r2", 3)]
        assert await _instance_names(db) == ["orm"]

        on_asyncpg = db_module._commit_directly

        async def through_sqlalchemy(session: AsyncSession, *, begin_next: bool = False) -> bool:
            return False

        async def failure(direct: bool, row: dict[str, Any], *, lose: bool) -> tuple[Any, ...]:
            monkeypatch.setattr(db_module, "_commit_directly", on_asyncpg if direct else through_sqlalchemy)
            sqlalchemys.clear()

            async def transaction() -> None:
                async with db.writer_session() as session:
                    pid = (await execute_core(session, _BACKEND_PID, {}))[0].pid
                    await execute_core(session, _INSERT, row)
                    if lose:
                        async with db.engine.begin() as killer:  # not a session: its commit would be counted
                            await killer.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
                        await asyncio.sleep(0.1)  # the writer's connection has seen its end

            with pytest.raises(Exception) as raised:  # noqa: PT011  # compared below, whatever it is
                await transaction()
            assert (sqlalchemys == []) is direct
            return _failure(raised.value)

        twin = {**rows[0], "id": "twin"}  # r0's count
        refused = [await failure(direct, twin, lose=False) for direct in (True, False)]
        assert refused[0] == refused[1]
        assert refused[0][2] == "23505"  # unique_violation, at COMMIT
        fresh = {True: {**rows[0], "id": "lost1", "count": 11}, False: {**rows[0], "id": "lost0", "count": 10}}
        lost = [await failure(direct, fresh[direct], lose=True) for direct in (True, False)]
        assert lost[0] == lost[1]
        assert lost[0][4] is True  # connection_invalidated
        monkeypatch.setattr(db_module, "_commit_directly", on_asyncpg)
        async with db.writer_session() as session:
            await execute_core(session, _INSERT, {**rows[0], "id": "after", "count": 20})
        async with db.read_session() as session:
            ids = (await session.execute(select(_ROWS.c.id).order_by(_ROWS.c.id))).scalars().all()
        assert ids == ["after", "r0", "r1", "r2"]
    finally:
        await db.dispose()


_DEFERRED_PARENTS = Table("deferred_parents", MetaData(), Column("id", String(36), primary_key=True))
_DEFERRED_CHILDREN = Table(
    "deferred_children",
    _DEFERRED_PARENTS.metadata,
    Column("id", String(36), primary_key=True),
    Column("parent_id", String(36), ForeignKey("deferred_parents.id", deferrable=True, initially="DEFERRED")),
)


async def test_sqlite_writer_session_commits_on_the_loop_thread_and_fails_as_sqlalchemys_commit(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the order desk's transactions commit straight on the driver, on the loop's thread (`_commit_inline`),
    not through `AsyncSession.commit`: each one committed (seen by another connection), pending ORM changes flushed
    first; a COMMIT SQLite refuses (a deferred foreign key) raises what SQLAlchemy's commit raises and writes nothing,
    and the next transaction runs on a fresh connection."""
    db = Database(Settings(database_url=sqlite_url))
    try:
        await migrations.upgrade(db.engine)
        async with db.engine.begin() as connection:
            await connection.run_sync(_DEFERRED_PARENTS.metadata.create_all)
        sqlalchemys: list[AsyncSession] = []
        commit = AsyncSession.commit

        async def counted(session: AsyncSession) -> None:
            sqlalchemys.append(session)
            await commit(session)

        monkeypatch.setattr(AsyncSession, "commit", counted)
        for name in ("p0", "p1"):
            async with db.writing(), db.writer_session() as session:
                await execute_core(session, insert(_DEFERRED_PARENTS), {"id": name})
            async with db.read_session() as reader:  # another connection sees it: committed
                seen = (await reader.execute(select(_DEFERRED_PARENTS.c.id).where(_DEFERRED_PARENTS.c.id == name))).all()
            assert len(seen) == 1
        async with db.writing(), db.writer_session() as session:
            await execute_core(session, insert(_DEFERRED_CHILDREN), {"id": "c0", "parent_id": "p0"})
            session.add(Instance(id="i" * 36, name="orm", created_at=NOW, seeded_at=NOW))  # flushed at COMMIT
        assert sqlalchemys == []
        assert await _instance_names(db) == ["orm"]

        on_driver = db_module._commit_directly

        async def through_sqlalchemy(session: AsyncSession, *, begin_next: bool = False) -> bool:
            return False

        async def refused(direct: bool) -> tuple[Any, ...]:
            monkeypatch.setattr(db_module, "_commit_directly", on_driver if direct else through_sqlalchemy)
            sqlalchemys.clear()

            async def transaction() -> None:
                async with db.writing(), db.writer_session() as session:
                    await execute_core(session, insert(_DEFERRED_PARENTS), {"id": f"kept{direct}"})
                    await execute_core(session, insert(_DEFERRED_CHILDREN), {"id": f"orphan{direct}", "parent_id": "none"})

            with pytest.raises(Exception) as raised:  # noqa: PT011  # compared below, whatever it is
                await transaction()
            assert (sqlalchemys == []) is direct
            return _failure(raised.value)

        failures = [await refused(direct) for direct in (True, False)]
        assert failures[0] == failures[1]
        assert failures[0][0] is IntegrityError
        monkeypatch.setattr(db_module, "_commit_directly", on_driver)
        async with db.writing(), db.writer_session() as session:
            await execute_core(session, insert(_DEFERRED_PARENTS), {"id": "after"})
        async with db.read_session() as reader:
            parents = (await reader.execute(select(_DEFERRED_PARENTS.c.id).order_by(_DEFERRED_PARENTS.c.id))).scalars().all()
            children = (await reader.execute(select(_DEFERRED_CHILDREN.c.id))).scalars().all()
        assert parents == ["after", "p0", "p1"]  # nothing of the refused transactions
        assert children == ["c0"]
    finally:
        await db.dispose()


async def test_execute_core_flushes_new_modified_and_deleted_objects_first(database_url: str) -> None:
    """A prebuilt statement on the order desk's connection sees the session's pending ORM changes of every kind."""
    db = Database(Settings(database_url=database_url))
    names = select(Instance.name).order_by(Instance.name)
    try:
        await migrations.upgrade(db.engine)
        async with db.writing(), db.writer_session() as session:
            session.add(Instance(id="a" * 36, name="added", created_at=NOW, seeded_at=NOW))
            assert [row.name for row in await execute_core(session, names)] == ["added"]
            session.add(Instance(id="b" * 36, name="other", created_at=NOW, seeded_at=NOW))
            await session.flush()
            (await session.get(Instance, "a" * 36)).name = "modified"  # type: ignore[union-attr]
            assert [row.name for row in await execute_core(session, names)] == ["modified", "other"]
            await session.delete(await session.get(Instance, "b" * 36))
            assert [row.name for row in await execute_core(session, names)] == ["modified"]
        assert await _instance_names(db) == ["modified"]
    finally:
        await db.dispose()


_BACKEND_PID = select(func.pg_backend_pid().label("pid"))
_TRANSACTION_ID = select(func.txid_current().label("txid"))


async def test_postgresql_writer_session_begins_the_next_transaction_with_the_commit_when_one_is_waiting(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `next_waiting` true at the commit, the next transaction's BEGIN is sent with the COMMIT (`_commit_and_begin`):
    the next transaction begins none of its own, is a transaction of its own, and both commit. A COMMIT the server
    refuses raises what the plain commit raises, and the next transaction is a transaction again (asyncpg keeps no
    transaction of the failed one: it would have turned the next BEGIN into a SAVEPOINT, which fails outside one)."""
    import asyncpg.transaction  # type: ignore[import-untyped]

    db = Database(Settings(database_url=postgres_url))
    try:
        rows = await _direct_rows_table(db)
        async with db.session() as session:  # two rows of one count fail at COMMIT, not at their INSERT
            await session.execute(text("ALTER TABLE direct_rows ADD UNIQUE (count) DEFERRABLE INITIALLY DEFERRED"))
        begins: list[object] = []
        start = asyncpg.transaction.Transaction.start

        async def counted(transaction: object) -> None:
            begins.append(transaction)
            await start(transaction)

        monkeypatch.setattr(asyncpg.transaction.Transaction, "start", counted)
        ids: list[int] = []
        for row in rows:
            first = len(begins)
            async with db.writer_session(next_waiting=lambda: True) as session:
                ids.append((await execute_core(session, _TRANSACTION_ID, {}))[0].txid)
                await execute_core(session, _INSERT, row)
            assert (len(begins) > first) is (row is rows[0])  # the others were begun by the COMMIT before them
        assert len(set(ids)) == 3
        async with db.read_session() as session:  # all committed, the last one too (its COMMIT began one more)
            assert (await session.execute(select(func.count()).select_from(_ROWS))).scalar_one() == 3

        async def refused(waiting: bool) -> tuple[Any, ...]:
            with pytest.raises(Exception) as raised:  # noqa: PT011  # compared below, whatever it is
                async with db.writer_session(next_waiting=lambda: waiting) as session:
                    await execute_core(session, _INSERT, {**rows[0], "id": f"tw{waiting:d}"})  # r0's count
            async with db.writer_session(next_waiting=lambda: waiting) as session:
                await execute_core(session, _INSERT, {**rows[0], "id": f"af{waiting:d}", "count": 10 + waiting})
            return _failure(raised.value)

        assert await refused(True) == await refused(False)
        async with db.read_session() as session:
            stored = (await session.execute(select(_ROWS.c.id).where(_ROWS.c.id.like("af%")))).scalars().all()
        assert sorted(stored) == ["af0", "af1"]
    finally:
        await db.dispose()


async def test_sqlite_writer_session_keeps_one_connection_across_transactions_and_lets_a_failed_one_go(
    sqlite_url: str,
) -> None:
    """Transaction after transaction on one connection, none taken from the pool again; nothing held between them;
    a failed one rolled back, its connection let go, the next one fine."""
    await _keeps_one_connection(sqlite_url)


async def test_postgresql_writer_session_keeps_one_connection_across_transactions_and_lets_a_failed_one_go(
    postgres_url: str,
) -> None:
    """As on SQLite (`Database._kept_writer`)."""
    await _keeps_one_connection(postgres_url)


async def _keeps_one_connection(url: str) -> None:
    db = Database(Settings(database_url=url))
    try:
        await migrations.upgrade(db.engine)
        async with db.writer_session():
            pass
        checkouts: list[Any] = []
        event.listen(db._writer_engine.sync_engine.pool, "checkout", lambda *args: checkouts.append(args))  # type: ignore[union-attr]
        for name in ("one", "two"):
            async with db.writing(), db.writer_session() as session:
                session.add(Instance(id=name[0] * 36, name=name, created_at=NOW, seeded_at=NOW))
            assert not session.identity_map  # as after closing a session: no ORM object outlives its transaction
        assert checkouts == []

        async def fail() -> None:
            async with db.writing(), db.writer_session() as session:
                session.add(Instance(id="f" * 36, name="failed", created_at=NOW, seeded_at=NOW))
                await session.flush()
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await fail()
        async with db.writing(), db.writer_session() as session:
            session.add(Instance(id="h" * 36, name="three", created_at=NOW, seeded_at=NOW))
        assert len(checkouts) == 1  # a fresh connection after the failure
        assert await _instance_names(db) == ["one", "three", "two"]
    finally:
        await db.dispose()


async def test_writer_session_opens_a_fresh_connection_once_it_has_kept_one_for_the_recycle_age(database_url: str) -> None:
    """`Database._kept_writer` closes the connection it kept `CONNECTION_RECYCLE_SECONDS` and opens a new one."""
    now = [1000.0]
    db = Database(Settings(database_url=database_url), clock=lambda: now[0])
    try:
        await migrations.upgrade(db.engine)
        connects: list[Any] = []
        names = iter(("one", "two", "six", "four"))

        async def write() -> Any:
            async with db.writing(), db.writer_session() as session:
                name = next(names)
                session.add(Instance(id=name[0] * 36, name=name, created_at=NOW, seeded_at=NOW))
                await session.flush()
                return (await (await session.connection()).get_raw_connection()).dbapi_connection

        first = await write()
        event.listen(db._writer_engine.sync_engine.pool, "connect", lambda *args: connects.append(args))  # type: ignore[union-attr]
        now[0] += db_module.CONNECTION_RECYCLE_SECONDS - 1
        assert await write() is first  # kept: younger than the recycle age
        assert connects == []
        now[0] += 1
        third = await write()
        assert third is not first
        assert len(connects) == 1  # a new connection to the database, not the old one from the pool
        now[0] += 1
        assert await write() is third  # the new one is kept in turn
        assert await _instance_names(db) == ["four", "one", "six", "two"]
    finally:
        await db.dispose()


_PARENTS = Table("probe_parents", MetaData(), Column("id", String(36), primary_key=True))
_CHILDREN = Table(
    "probe_children",
    _PARENTS.metadata,
    Column("id", Integer(), primary_key=True, autoincrement=False),
    Column("parent_id", String(36), ForeignKey("probe_parents.id"), nullable=False),
)
_CHILD_INSERT = unnest_insert(_CHILDREN)
_CHILD_INSERT_PROBING = unnest_insert(_CHILDREN, probes_after=True)
_PARENT_SCANS = text(
    "SELECT seq_scan, idx_scan, current_setting('plan_cache_mode'), current_setting('enable_seqscan') "
    "FROM pg_stat_xact_user_tables WHERE relname = 'probe_parents'"
)


async def test_postgresql_key_checks_after_a_probing_insert_are_index_probes_kept_for_the_connection(postgres_url: str) -> None:
    """`unnest_insert(probes_after=True)`: the foreign-key checks of its rows use plans kept for the connection, each a
    probe of the referenced table's unique index even while the statistics say that table is empty (a plan made then
    and kept would otherwise scan it whole as it grows); the COMMIT hands the connection back planning at every run.
    Without it the same checks are planned at each run: here, on a table the statistics call empty, scans."""
    database = Database(Settings(database_url=postgres_url))
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_PARENTS.metadata.create_all)
            await connection.execute(insert(_PARENTS), [{"id": f"p{n}"} for n in range(3)])
        async with database.engine.connect() as connection:
            await connection.execute(text("ANALYZE probe_parents"))  # while nearly empty: statistics of ~no pages
            await connection.commit()
            scans: dict[str, tuple[int, int, str, str]] = {}
            for name, statement in (("custom", _CHILD_INSERT), ("probing", _CHILD_INSERT_PROBING)):
                base = 10 if name == "probing" else 0
                rows = {"probe_children_id": [base + n for n in range(6)], "probe_children_parent_id": ["p0", "p1", "p2"] * 2}
                before = (await connection.execute(_PARENT_SCANS)).one()  # this backend's counts not yet reported
                await connection.execute(statement, rows)
                seq, idx, mode, seqscan = (await connection.execute(_PARENT_SCANS)).one()
                scans[name] = (seq - before[0], idx - before[1], mode, seqscan)
                await connection.commit()
            seq, idx, *settings = scans["custom"]
            assert seq >= 6, scans  # a scan of the whole table a check
            assert (idx, settings) == (0, ["force_custom_plan", "on"]), scans
            assert scans["probing"] == (0, 6, "force_generic_plan", "off")  # an index probe a check
            after = await connection.execute(text("SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan')"))
            assert tuple(after.one()) == ("force_custom_plan", "on")
            assert (await connection.execute(select(func.count()).select_from(_CHILDREN))).scalar_one() == 12
    finally:
        await database.dispose()
