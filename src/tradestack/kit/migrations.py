"""Alembic, driven from code: upgrade, downgrade, current, history and check on the async engine.

Alembic is imported only by what runs it: a start whose database is at head already (every start
but the first after an install or upgrade) reads the head from the scripts' text (`head_revisions`)
and the current revision from the table, and never loads Alembic (about half a second of imports).
"""

from __future__ import annotations

import ast
import asyncio
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tradestack.core.errors import ConflictError
from tradestack.kit.logging import get_logger

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

VERSION_TABLE = "alembic_version"
MIGRATION_LOCK_KEY = 0x7472_6164_6573_7461  # "tradesta": the session advisory lock a migrating run holds on PostgreSQL
MIGRATION_LOCK_POLL_SECONDS = 0.2
CLIENT_CHECK_MS = 1000  # how often a migrating session's backend checks that its client is still there
MIGRATION_LOCK_REPORT_SECONDS = 60.0  # a run waiting for another's lock says so when it starts waiting, then this often
MIGRATION_STEP_WAIT_REPORT_SECONDS = 10.0  # a revision's statement waiting this long for other backends is said, then
# every MIGRATION_LOCK_REPORT_SECONDS while it still waits
MIGRATION_STEP_WATCH_SECONDS = 1.0  # how often the migrating backend is looked at (`_watch_step_waits`)

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class LockHolder:
    """A PostgreSQL backend a migrating run waits for (from `pg_stat_activity`): the one holding the migration lock, or
    one a revision's statement waits for (a concurrent index build waits for every older transaction)."""

    pid: int
    application: str
    client: str | None  # its address; None over a Unix socket
    started: datetime | None  # when its session began
    state: str | None  # "active", "idle in transaction", ...
    query: str  # its current (or last) statement, shortened
    transaction_started: datetime | None = None  # when its transaction began (None: in none)

    def describe(self) -> str:
        where = f" from {self.client}" if self.client else ""
        since = f", connected since {self.started:%Y-%m-%d %H:%M:%S %Z}" if self.started else ""
        open_since = (
            f", in a transaction since {self.transaction_started:%Y-%m-%d %H:%M:%S %Z}" if self.transaction_started else ""
        )
        return (
            f"backend pid {self.pid} ({self.application or 'no application_name'}{where}{since}{open_since}), "
            f"{self.state or 'state unknown'}: {self.query or '(no statement)'}"
        )


class MigrationLockBusyError(ConflictError):
    """Another run held the migration lock for longer than this one would wait; this one applied nothing."""

    def __init__(self, waited: float, holder: LockHolder | None) -> None:
        self.waited = waited
        self.holder = holder
        who = holder.describe() if holder else "a backend that has since let it go"
        super().__init__(
            f"another migration held the migration lock for the {waited:.0f} s this run waits ({who}); nothing applied. "
            "Run again once it ends, or wait longer (--lock-wait); if it is stuck, end that backend with "
            f"SELECT pg_terminate_backend({holder.pid if holder else '<pid>'}) (its revision in progress rolls back)"
        )


LockWaitReport = Callable[[LockHolder | None, float], None]
"""Called while a run waits for the migration lock: who holds it (None if it was just let go) and seconds waited."""

StepWaitReport = Callable[[str, tuple[LockHolder, ...], float], None]
"""Called while a revision's statement waits for other backends: the statement, who it waits for (none if they have
just let go) and seconds it was seen waiting."""


def migrations_dir() -> Path:
    """Where the migration scripts are: inside an installed wheel, or at the top of a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_migrations", package.parents[1] / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("migration scripts not found next to the package or at the top of the source tree")


def alembic_config(url: str | None = None, *, stdout: Any = None) -> Config:
    """An Alembic config pointing at our scripts (and at `url`, for offline use)."""
    from alembic.config import Config

    config = Config(stdout=stdout or io.StringIO())
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def _declared_revisions(path: Path) -> tuple[str, tuple[str, ...]] | None:
    """(revision, the revisions it revises) as a script assigns them, read from its text without running it;
    None when the script does not assign them as plain literals."""
    found: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and value is not None:
            try:
                found[target.id] = ast.literal_eval(value)
            except ValueError:
                return None
    revision, down = found.get("revision"), found.get("down_revision")
    if not isinstance(revision, str):
        return None
    if down is None:
        return revision, ()
    if isinstance(down, str):
        return revision, (down,)
    if isinstance(down, tuple | list) and all(isinstance(d, str) for d in down):
        return revision, tuple(down)
    return None


@lru_cache(maxsize=1)
def head_revisions() -> tuple[str, ...]:
    """The head revision(s) of the scripts shipped with this version, sorted.

    Read from the scripts' ``revision``/``down_revision`` assignments (what Alembic itself reads,
    without importing Alembic or the scripts); Alembic's own reading when a script is not that plain.
    """
    revisions: dict[str, tuple[str, ...]] = {}
    for path in sorted((migrations_dir() / "versions").glob("*.py")):
        declared = _declared_revisions(path)
        if declared is None:
            return tuple(sorted(_scripts().get_heads()))
        revisions[declared[0]] = declared[1]
    revised = {down for downs in revisions.values() for down in downs}
    return tuple(sorted(set(revisions) - revised))


StepReport = Callable[[str, str, bool, float], None]
"""Called after each revision a run applies or reverts: its id, its message, whether it went up, seconds it took."""


def _step_reporter(report: StepReport) -> Callable[..., None]:
    """An Alembic ``on_version_apply`` hook telling `report` of each step (timed from the previous one)."""
    last = time.monotonic()

    def on_version_apply(*, step: Any, **_: Any) -> None:
        nonlocal last
        now = time.monotonic()
        script = step.up_revision
        report(step.up_revision_id, (script.doc or "") if script is not None else "", step.is_upgrade, now - last)
        last = now

    return on_version_apply


def _run(connection: Connection, config: Config, action: str, revision: str | None, on_step: StepReport | None) -> None:
    from alembic import command

    config.attributes["connection"] = connection
    if on_step is not None:
        config.attributes["on_version_apply"] = _step_reporter(on_step)  # env.py hands it to the migration context
    if action == "upgrade":
        command.upgrade(config, revision or "head")
    elif action == "downgrade":
        command.downgrade(config, revision or "-1")
    elif action == "check":
        command.check(config)
    elif action == "current":
        command.current(config, verbose=False)
    else:  # pragma: no cover - programming error
        raise ValueError(action)


async def run(
    engine: AsyncEngine,
    action: str,
    revision: str | None = None,
    *,
    lock_wait: float | None = None,
    on_lock_wait: LockWaitReport | None = None,
    on_step: StepReport | None = None,
    on_step_wait: StepWaitReport | None = None,
) -> str:
    """Run an Alembic command on `engine`; return what Alembic printed. `on_step` hears of each revision applied or
    reverted as it is (its transaction commits right after).

    An upgrade or downgrade runs each revision in its own transaction, which also stamps it (Alembic's
    ``transaction_per_migration``): a run that stops half-way leaves the database at the last revision it finished,
    whole, on SQLite too (its DDL included: see the SQLite branch); on PostgreSQL a revision can step out of it to
    build an index CONCURRENTLY (`kit.online_ddl`). The read-only commands run in one transaction.

    One migrating run at a time on PostgreSQL: a run that finds another's lock waits for it (`_take_lock`), at most
    `lock_wait` seconds (None: however long), telling `on_lock_wait` and the log who holds it. Once it has the lock, a
    statement of a revision that waits for other backends (a concurrent index build waits for every transaction older
    than it, a running `pg_dump` included) is said too, with who it waits for (`_watch_step_waits`: to `on_step_wait`,
    else to the log), so a slow step can be told from a stuck one and what holds it up ended or waited out.
    """
    out = io.StringIO()
    config = alembic_config(stdout=out)
    if action in ("upgrade", "downgrade") and engine.dialect.name == "postgresql":
        async with engine.connect() as connection:  # not begun: env.py's context begins one per revision
            await _take_lock(connection, lock_wait, on_lock_wait)
            try:
                # A run killed meanwhile (a deploy's migrate timeout, ^C) must not leave its backend behind, still waiting
                # to build an index, then building it, holding the migration lock all along: PostgreSQL notices only when
                # it next writes to the client, unless told to look (every second here, while a statement runs).
                await connection.exec_driver_sql(f"SET client_connection_check_interval = {CLIENT_CHECK_MS}")
                pid = (await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
                await connection.commit()
                watch = asyncio.create_task(_watch_step_waits(engine, pid, on_step_wait))
                try:
                    await connection.run_sync(_run, config, action, revision, on_step)
                finally:
                    watch.cancel()
                    await asyncio.gather(watch, return_exceptions=True)
            finally:
                try:  # after a failed revision too (its transaction rolled back first)
                    await connection.rollback()
                    await connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
                    await connection.exec_driver_sql("RESET client_connection_check_interval")
                    await connection.commit()
                except Exception:  # noqa: BLE001 - closing the connection ends its session, and the lock with it
                    await connection.invalidate()
    elif action in ("upgrade", "downgrade") and engine.dialect.name == "sqlite":
        async with engine.connect() as connection:
            # The sqlite3 module begins a transaction itself only before an INSERT, UPDATE or DELETE: a revision's DDL ran
            # outside any and stayed, whatever became of the revision; a run that failed or was stopped half-way left
            # its tables without its stamp, and the next failed on them ("table ... already exists"). With the module's
            # own handling off (AUTOCOMMIT), each revision's transaction is begun here, DDL included.
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            sync = connection.sync_connection
            event.listen(sync, "begin", _begin_sqlite)
            try:
                await connection.run_sync(_run, config, action, revision, on_step)
            finally:
                event.remove(sync, "begin", _begin_sqlite)
    else:
        async with engine.begin() as connection:
            await connection.run_sync(_run, config, action, revision, on_step)
    return out.getvalue()


def _begin_sqlite(connection: Connection) -> None:
    """Begin a migrating SQLite connection's transaction (see `run`), taking the write lock at once."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


async def _take_lock(connection: AsyncConnection, lock_wait: float | None, report: LockWaitReport | None) -> None:
    """Take the migration lock on `connection`'s session; MigrationLockBusyError after `lock_wait` seconds without it.

    A second run waits here for the first, then finds the revisions done, instead of failing on the first's DDL. It
    asks again and again rather than waiting in one statement: a concurrent index build waits for every statement
    older than it, and would deadlock with a waiting one. Who holds the lock is said (to `report`, else to the log) when
    the wait starts and every `MIGRATION_LOCK_REPORT_SECONDS`, so an operator can tell a slow run from a stuck one."""
    started = time.monotonic()
    reported: float | None = None
    while not (await connection.exec_driver_sql(f"SELECT pg_try_advisory_lock({MIGRATION_LOCK_KEY})")).scalar():
        waited = time.monotonic() - started
        over = lock_wait is not None and waited >= lock_wait
        if over or reported is None or waited - reported >= MIGRATION_LOCK_REPORT_SECONDS:
            holder = await _lock_holder(connection)
            if over:
                await connection.rollback()
                raise MigrationLockBusyError(waited, holder)
            reported = waited
            if report is not None:
                report(holder, waited)
            else:
                log.warning("migration_lock_wait", waited_seconds=round(waited, 1), holder=holder.describe() if holder else None)
        await connection.rollback()
        await asyncio.sleep(MIGRATION_LOCK_POLL_SECONDS)
    await connection.commit()


_BACKEND_COLUMNS = "a.pid, a.application_name, host(a.client_addr), a.backend_start, a.state, left(a.query, 200), a.xact_start"
_BLOCKERS_SQL = f"SELECT {_BACKEND_COLUMNS} FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids(:pid))"  # noqa: S608


def _backend(row: Any) -> LockHolder:
    """A `LockHolder` from a row of `_BACKEND_COLUMNS`."""
    pid, application, client, started, state, query, transaction_started = row
    return LockHolder(int(pid), application or "", client, started, state, " ".join((query or "").split()), transaction_started)


async def _lock_holder(connection: AsyncConnection) -> LockHolder | None:
    """The backend holding the migration lock, if one still does (a bigint advisory lock is keyed by its two halves)."""
    row = (
        await connection.execute(
            text(
                f"SELECT {_BACKEND_COLUMNS} FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"  # noqa: S608 - constants
                " WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database()) AND l.classid = :high AND l.objid = :low AND l.objsubid = 1"
            ),
            {"high": MIGRATION_LOCK_KEY >> 32, "low": MIGRATION_LOCK_KEY & 0xFFFF_FFFF},
        )
    ).first()
    return None if row is None else _backend(row)


async def _watch_step_waits(engine: AsyncEngine, pid: int, report: StepWaitReport | None) -> None:
    """Until cancelled, look at the migrating backend `pid` every `MIGRATION_STEP_WATCH_SECONDS`; once a statement of
    it has been seen waiting for a lock `MIGRATION_STEP_WAIT_REPORT_SECONDS`, and every `MIGRATION_LOCK_REPORT_SECONDS`
    after while it still does, say it and who it waits for (`pg_blocking_pids`) to `report`, else to the log.

    Each look is its own short transaction on a connection of its own, ended before the next sleep: a transaction left
    open here would be one more that a concurrent index build waits for. A look that fails ends the watch (logged), never
    the migration."""
    waiting: tuple[Any, str] | None = None  # (query_start, statement) of the statement seen waiting
    since = reported = 0.0
    try:
        async with engine.connect() as connection:
            while True:
                await asyncio.sleep(MIGRATION_STEP_WATCH_SECONDS)
                row = (
                    await connection.execute(
                        text("SELECT wait_event_type, query_start, left(query, 200) FROM pg_stat_activity WHERE pid = :pid"),
                        {"pid": pid},
                    )
                ).first()
                await connection.rollback()
                if row is None or row[0] != "Lock":
                    waiting = None
                    continue
                now, statement = time.monotonic(), " ".join((row[2] or "").split())
                if waiting != (row[1], statement):  # a statement seen waiting for the first time
                    waiting, since, reported = (row[1], statement), now, -1.0
                waited = now - since
                if waited < (MIGRATION_STEP_WAIT_REPORT_SECONDS if reported < 0 else reported + MIGRATION_LOCK_REPORT_SECONDS):
                    continue
                blockers = tuple(_backend(row) for row in await connection.execute(text(_BLOCKERS_SQL), {"pid": pid}))
                await connection.rollback()
                reported = waited
                if report is not None:
                    report(statement, blockers, waited)
                else:
                    log.warning(
                        "migration_step_waiting", statement=statement, waited_seconds=round(waited, 1),
                        waits_for=[blocker.describe() for blocker in blockers],
                    )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - the watch only reports; the migration goes on without it
        log.warning("migration_step_watch_failed", error=repr(exc))


async def upgrade(
    engine: AsyncEngine,
    revision: str = "head",
    *,
    lock_wait: float | None = None,
    on_lock_wait: LockWaitReport | None = None,
    on_step: StepReport | None = None,
    on_step_wait: StepWaitReport | None = None,
) -> None:
    """Apply migrations up to `revision` (see `run` for the keywords)."""
    await run(
        engine, "upgrade", revision, lock_wait=lock_wait, on_lock_wait=on_lock_wait, on_step=on_step,
        on_step_wait=on_step_wait,
    )  # fmt: skip


async def downgrade(
    engine: AsyncEngine,
    revision: str,
    *,
    lock_wait: float | None = None,
    on_lock_wait: LockWaitReport | None = None,
    on_step: StepReport | None = None,
    on_step_wait: StepWaitReport | None = None,
) -> None:
    """Revert migrations down to `revision` (``base`` reverts all, ``-1`` one step; see `run` for the keywords)."""
    await run(
        engine, "downgrade", revision, lock_wait=lock_wait, on_lock_wait=on_lock_wait, on_step=on_step,
        on_step_wait=on_step_wait,
    )  # fmt: skip


async def check(engine: AsyncEngine) -> None:
    """Raise `alembic.util.exc.AutogenerateDiffsDetected` when models and migrations disagree."""
    await run(engine, "check")


async def current_revisions(engine: AsyncEngine) -> tuple[str, ...]:
    """The revision(s) the database is at (empty before the first migration)."""

    def _heads(connection: Connection) -> tuple[str, ...]:
        # A plain read of alembic_version: MigrationContext would log two lines on every readiness probe.
        if not inspect(connection).has_table(VERSION_TABLE):
            return ()
        return tuple(sorted(connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()))  # noqa: S608

    async with engine.connect() as connection:
        return await connection.run_sync(_heads)


def history() -> list[tuple[str, str | None, str]]:
    """Every revision, newest first: (revision, down_revision, message)."""
    script = _scripts()
    rows = []
    for rev in script.walk_revisions():
        down = rev.down_revision
        rows.append((rev.revision, down if isinstance(down, str) or down is None else ",".join(down), rev.doc or ""))
    return rows


# -- expand-only releases ------------------------------------------------------------------------------
# While a release rolls out, the old colour keeps serving on the same database: migrations applied before the new
# colour starts may only add (expand). Removing or reshaping what old code reads or writes (contract) belongs to a
# later release, once no running version uses it. Judged on the PostgreSQL DDL of each pending revision (offline
# SQL), so hand-written `op.execute` statements are judged too.
_CONTRACT_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^DROP\s+(TABLE|VIEW|MATERIALIZED\s+VIEW|SEQUENCE|TYPE|SCHEMA|FUNCTION)\b", re.I), "drops a {0}"),
    (re.compile(r"^ALTER\s+TABLE\s+(?:ONLY\s+)?\S+\s+DROP\s+(?!CONSTRAINT\b)(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?(\S+)", re.I),
     "drops column {0}"),
    (re.compile(r"^ALTER\s+(TABLE|VIEW|MATERIALIZED\s+VIEW)\s+(?:ONLY\s+)?\S+\s+RENAME\b", re.I),
     "renames (a {0} or its column)"),
    (re.compile(r"\bALTER\s+(?:COLUMN\s+)?(\S+)\s+(?:SET\s+DATA\s+)?TYPE\b", re.I), "changes the type of column {0}"),
    (re.compile(r"\bALTER\s+(?:COLUMN\s+)?(\S+)\s+SET\s+NOT\s+NULL\b", re.I),
     "makes column {0} NOT NULL (the old version's inserts without it would fail)"),
    (re.compile(
        r"\bADD\s+(?:COLUMN\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(\S+)\s+(?:(?!\bDEFAULT\b).)*\bNOT\s+NULL\b(?!.*\bDEFAULT\b)", re.I
     ),
     "adds NOT NULL column {0} without a default (the old version's inserts would fail)"),
    (re.compile(r"^TRUNCATE\b", re.I), "empties a table"),
)  # fmt: skip


@dataclass(frozen=True)
class ContractStep:
    """A statement of a pending migration that would break the version still running."""

    revision: str
    why: str
    statement: str


def _statements(sql: str) -> list[str]:
    """The statements of a revision's offline SQL, each on one line, without comments and the version stamp."""
    found = []
    for raw in sql.split(";"):
        lines = [line for line in raw.splitlines() if line.strip() and not line.lstrip().startswith("--")]
        statement = " ".join(" ".join(lines).split())
        if statement and "alembic_version" not in statement:
            found.append(statement)
    return found


def contract_steps(revision: str, sql: str) -> list[ContractStep]:
    """The contract statements of one revision's SQL (pure: text in, findings out)."""
    found = []
    for statement in _statements(sql):
        for pattern, why in _CONTRACT_RULES:
            match = pattern.search(statement)
            if match:
                found.append(ContractStep(revision, why.format(*(g.lower() for g in match.groups())), statement[:200]))
                break
    return found


# -- index builds that hold writes ---------------------------------------------------------------------------
# A plain CREATE INDEX holds writes to its table until it has read every row: on a table the running version writes,
# order entry waits meanwhile. Expand-only all the same (the old version minds no new index), so not refused: named,
# for the revision's author (a test holds the shipped revisions to it) and for the operator (`db upgrade --expand-only`).
_CREATE_TABLE = re.compile(r"^CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\S+)", re.I)
_PLAIN_INDEX = re.compile(
    r"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY\b)(?:IF\s+NOT\s+EXISTS\s+)?(\S+)\s+ON\s+(?!ONLY\b)(\S+)", re.I
)


def blocking_index_builds(revision: str, sql: str) -> list[ContractStep]:
    """The plain CREATE INDEX statements of one revision's SQL on a table it does not create (pure)."""
    statements = _statements(sql)
    created = {match.group(1).lower() for statement in statements if (match := _CREATE_TABLE.search(statement))}
    found = []
    for statement in statements:
        match = _PLAIN_INDEX.search(statement)
        if match is not None and match.group(2).lower() not in created:
            index, table = match.group(1).lower(), match.group(2).lower()
            why = (
                f"builds index {index} with a plain CREATE INDEX: writes to {table} wait until it is built "
                "(kit.online_ddl.create_index builds it CONCURRENTLY)"
            )
            found.append(ContractStep(revision, why, statement[:200]))
    return found


def pending_revisions(current: tuple[str, ...]) -> list[str]:
    """The revisions between `current` (exclusive) and this version's head, oldest first."""
    if len(current) > 1:
        raise ValueError(f"the database has several heads ({', '.join(current)}): merge them before a release")
    script = _scripts()
    newest_first = script.iterate_revisions("heads", current[0] if current else "base")
    return [rev.revision for rev in reversed(list(newest_first)) if rev.revision not in current]


def upgrade_sql(revision: str) -> str:
    """The PostgreSQL DDL of one revision's upgrade, rendered offline (no database touched)."""
    script = _scripts().get_revision(revision)
    assert script is not None  # noqa: S101 - a revision of pending_revisions
    down = script.down_revision
    if down is not None and not isinstance(down, str):
        raise ValueError(f"revision {revision} merges {', '.join(down)}: judge its parents first")
    from alembic import command

    buffer = io.StringIO()
    config = alembic_config("postgresql+asyncpg://offline/judge")
    config.output_buffer = buffer
    command.upgrade(config, f"{down}:{revision}" if down else revision, sql=True)
    return buffer.getvalue()


def declared_phase(revision: str) -> str | None:
    """What a revision says of itself: ``phase = "contract"`` (e.g. a data migration that deletes) or "expand"."""
    script = _scripts().get_revision(revision)
    phase = getattr(script.module, "phase", None) if script is not None else None
    return str(phase) if phase is not None else None


def contract_steps_pending(current: tuple[str, ...], allowed: frozenset[str] = frozenset()) -> list[ContractStep]:
    """Every contract step between `current` and head, except in the revisions an operator `allowed` by name.

    A brand-new database (no revision) has no old version reading it: nothing to judge. A revision that cannot be
    rendered offline (it reads the database while migrating) is judged by its declaration: ``phase = "expand"``
    vouches for it, anything else is refused.
    """
    if not current:
        return []
    found: list[ContractStep] = []
    for revision in pending_revisions(current):
        if revision in allowed:
            continue
        phase = declared_phase(revision)
        if phase == "contract":
            found.append(ContractStep(revision, 'declares phase = "contract"', ""))
            continue
        try:
            sql = upgrade_sql(revision)
        except Exception as exc:  # noqa: BLE001 - any failure to render means: not judged
            if phase != "expand":
                why = f'cannot be judged offline ({type(exc).__name__}: {exc}); check it and declare phase = "expand"'
                found.append(ContractStep(revision, why[:300], ""))
            continue
        found.extend(contract_steps(revision, sql))
    return found


def blocking_index_builds_pending(current: tuple[str, ...]) -> list[ContractStep]:
    """Every plain index build on a table in use between `current` and head (a brand-new database has none in use;
    a revision that cannot be rendered offline is the contract judge's to name)."""
    if not current:
        return []
    found: list[ContractStep] = []
    for revision in pending_revisions(current):
        try:
            sql = upgrade_sql(revision)
        except Exception:  # noqa: BLE001, S112 - not rendered: `contract_steps_pending` names it
            continue
        found.extend(blocking_index_builds(revision, sql))
    return found
