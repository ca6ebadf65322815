"""Database engines and sessions: one primary, an optional read replica.

Transactions have one owner: the request or task that opened the session commits; services
and repositories only flush.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import aiosqlite
from sqlalchemy import (
    ClauseElement,
    ColumnElement,
    Executable,
    Insert,
    String,
    Table,
    any_,
    bindparam,
    event,
    func,
    insert,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import CTE, TableValuedAlias
from sqlalchemy.types import TypeEngine
from sqlalchemy.util import greenlet_spawn

from tradestack.kit.aio import ThreadSafeLock, wait_event
from tradestack.kit.config import Settings
from tradestack.kit.logging import get_logger
from tradestack.kit.metrics import DATABASE_CONNECTIONS_ACTIVE, DATABASE_POOL_WAIT

log = get_logger(__name__)
SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_CHECKPOINT_SECONDS = 1.0
"""How often an API process on SQLite checkpoints the write-ahead log off its writer lock (`Database.checkpoints`)."""
SQLITE_RESTART_FRAMES = 1000
"""From how many frames (pages) on `Database.checkpoint` makes the write-ahead log start over: SQLite's own default."""
_S = TypeVar("_S", bound=Executable)


@dataclass(frozen=True)
class PoolStatus:
    """Connections of one engine's pool."""

    size: int
    checked_out: int
    checked_in: int
    overflow: int
    max_overflow: int


class TimedQueuePool(AsyncAdaptedQueuePool):
    """The async queue pool, timing every checkout (waiting for a free connection included) into
    ``database_pool_wait_seconds``; `timed_pool` makes one subclass per database role."""

    role = "primary"

    def _do_get(self) -> ConnectionPoolEntry:
        started = time.perf_counter()
        try:
            return super()._do_get()
        finally:
            DATABASE_POOL_WAIT.labels(database=self.role).observe(time.perf_counter() - started)


@functools.cache
def timed_pool(role: str) -> type[TimedQueuePool]:
    """The pool class timing checkouts under ``database=<role>`` (recreated pools keep the class)."""
    return type(f"TimedQueuePool_{role}", (TimedQueuePool,), {"role": role})


WRITER_ROLE = "writer"
"""The role (`create_engine`) of the order desk's engine, `Database.writer_session`'s."""

CONNECTION_RECYCLE_SECONDS = 1800
"""Age at which a pooled connection is closed and opened again at its next checkout (SQLAlchemy's ``pool_recycle``).
`Database.writer_session` keeps its connection between transactions rather than in the pool, so it closes it itself
once it has kept it this long (`_kept_writer`) and opens a fresh one: the plans and caches kept for the connection
(`unnest_insert`'s probes, asyncpg's prepared statements) are then made again, on the tables as they are now."""


def create_engine(url: str, settings: Settings, *, role: str, single_writer: bool = False) -> AsyncEngine:
    """Create an async engine with pool settings, SQLite pragmas and the connection gauge wired in.

    `single_writer`: the engine of one loop that runs one transaction at a time (`Database.writer_session`):
    one pooled connection; on PostgreSQL not pinged before each use, on SQLite run on the loop's own
    thread (`_InlineConnection`; see there)."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": settings.database_echo}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            with contextlib.suppress(OSError):  # an unusable path surfaces as a connection error
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            "async_creator_fn": _inline_connect if single_writer else _one_hop_connect,
        }
        if database and database != ":memory:":
            kwargs["poolclass"] = timed_pool(role)
            if single_writer:
                kwargs.update(pool_size=1, max_overflow=1)
    else:
        kwargs.update(
            pool_size=1 if single_writer else settings.database_pool_size,
            max_overflow=1 if single_writer else settings.database_max_overflow,
            pool_timeout=settings.database_pool_timeout_seconds,
            pool_pre_ping=not single_writer,
            pool_recycle=CONNECTION_RECYCLE_SECONDS,
            poolclass=timed_pool(role),
        )
        if parsed.get_backend_name() == "postgresql":
            probes = single_writer and role == WRITER_ROLE
            kwargs["connect_args"] = {"server_settings": postgres_session_settings(settings, probes=probes)}
    engine = create_async_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _inline_pragmas if single_writer else _sqlite_pragmas)
    gauge = DATABASE_CONNECTIONS_ACTIVE.labels(database=role)
    event.listen(engine.sync_engine.pool, "checkout", lambda *_: gauge.inc())
    event.listen(engine.sync_engine.pool, "checkin", lambda *_: gauge.dec())
    return engine


def postgres_session_settings(settings: Settings, *, probes: bool = False) -> dict[str, str]:
    """Server settings of every PostgreSQL connection: bounded lock waits, no transaction left idle forever.

    ``lock_timeout`` makes a statement that waits for a lock fail (SQLSTATE 55P03) instead of queueing
    behind a stalled holder; ``idle_in_transaction_session_timeout`` lets the server end a session
    that stopped in the middle of a transaction (a stopped or hung process), which releases its locks.
    ``plan_cache_mode=force_custom_plan``: asyncpg prepares every statement, and after five runs
    PostgreSQL may keep one generic plan of it for the connection's life, made with the statistics of
    that moment; on tables that grew since (a young database, or autovacuum off) that was a scan of
    the whole table for each lookup of a list of keys (``id = ANY(:ids)``). Planned at each run, a
    statement sees the table's size as it is.

    `probes`: the order desk's connection (`Database.writer_session`), whose transactions begin with plans kept for
    the connection made without sequential scans (``_PROBING``), as after a `probes_from_here` statement: its first
    statement is the desk's lock, a lookup of keys of ``trading_accounts`` by its primary key whatever the statistics
    (``BooksService.lock_many``), then its read of the accounts it keeps, written so that one index serves each part
    (``TradingRepository.desk_reads``); the desk asks for planning at each run (`plan_at_each_run`) before a read that
    needs it. Planning the lock at each run cost the server more than running it (~190-330 us a group against
    ~110-280), and planning the read a third of the server's work per group (pg_stat_statements).
    """
    return {
        "lock_timeout": str(round(settings.database_lock_timeout_seconds * 1000)),
        "idle_in_transaction_session_timeout": str(round(settings.database_idle_in_transaction_timeout_seconds * 1000)),
        **dict(_PROBING if probes else _PLANNING[:1]),
    }


class _OneHopCursor:
    """An aiosqlite cursor that runs a statement in one trip to its connection's thread.

    aiosqlite makes four (create the cursor, execute, fetch the rows, close), each a queue put, a
    thread wake-up and a wake-up of the event loop; on the embedded order path they were ~50 trips an
    order and most of its CPU. Here the one trip executes, fetches every row and closes the sqlite3
    cursor, keeping what SQLAlchemy reads afterwards (description, rowcount, lastrowid, the rows).
    """

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1
        self._rows: deque[Any] = deque()

    def __await__(self) -> Generator[Any, None, _OneHopCursor]:
        return self.__aenter__().__await__()

    async def __aenter__(self) -> _OneHopCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _run(self, sql: str, parameters: Any, many: bool) -> tuple[Any, int, int | None, list[Any]]:
        """On the connection's thread: the statement and all its rows."""
        cursor = self._connection._conn.cursor()  # what aiosqlite's own cursor wraps
        try:
            if many:
                cursor.executemany(sql, parameters)
            else:
                cursor.execute(sql, parameters)
            description = cursor.description
            rows = cursor.fetchall() if description is not None else []
            return description, cursor.rowcount, cursor.lastrowid, rows
        finally:
            cursor.close()

    async def _call(self, sql: str, parameters: Any, many: bool) -> _OneHopCursor:
        outcome = await self._connection._execute(self._run, sql, parameters, many)  # type: ignore[no-untyped-call]  # its one queue to the thread
        self.description, self.rowcount, self.lastrowid, rows = outcome
        self._rows = deque(rows)
        return self

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None) -> _OneHopCursor:
        return await self._call(sql, () if parameters is None else parameters, False)

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> _OneHopCursor:
        return await self._call(sql, parameters, True)

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = min(len(self._rows), self.arraysize if size is None else size)
        return [self._rows.popleft() for _ in range(count)]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()


class _OneHopConnection(aiosqlite.Connection):
    """aiosqlite's connection with `_OneHopCursor` cursors (creating one needs no trip to the thread), whose
    commit and rollback outside a transaction make no trip either: sqlite3 would do nothing there, and
    every read session's end and every return to the pool is one (5.5 trips an order)."""

    def cursor(self) -> _OneHopCursor:  # type: ignore[override]
        return _OneHopCursor(self)

    def _idle(self) -> bool:
        connection = self._connection
        return connection is not None and not connection.in_transaction

    async def commit(self) -> None:
        if not self._idle():
            await super().commit()

    async def rollback(self) -> None:
        if not self._idle():
            await super().rollback()


def _one_hop_connect(database: str, **kwargs: Any) -> aiosqlite.Connection:
    """What SQLAlchemy's aiosqlite dialect connects with (its ``async_creator_fn``): the same sqlite3 connection."""
    connection = _OneHopConnection(functools.partial(sqlite3.connect, database, **kwargs), 64)
    connection._thread.daemon = True  # as the dialect does for its own connections
    return connection


class _InlineConnection(_OneHopConnection):
    """`_OneHopConnection` whose statements, commits and rollbacks run on the calling thread (the event loop's).

    For the one loop that runs one short write transaction at a time (the order desk: `Database.writer_session`).
    A statement of it takes tens of microseconds in SQLite; the trip to the connection's thread and back
    (a queue put, a thread wake-up, a wake-up of the loop, the GIL handed over twice) cost more than that
    and, on a busy machine, several times more: ~7 trips an order group were most of a sequential
    order's latency. Two things could hold the loop here, and neither may:

    - waiting for SQLite's write lock: the connection's busy timeout is 0, so a statement that meets
      another connection's lock fails at once (SQLITE_BUSY, nothing done) and is run again on the
      connection's thread with the usual busy timeout, where the wait costs the loop nothing (a writer
      of this loop that holds the lock can then finish: waiting on the loop would have stopped it);
    - a checkpoint (an fsync of the WAL and the database): its automatic checkpoints are off
      (``wal_autocheckpoint=0``); `Database.checkpoint` copies the log off the writer lock, and the pool's
      connections, committing on their threads, keep theirs.
    """

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
        return await super()._execute(_patiently, self._connection, fn, *args, **kwargs)  # type: ignore[no-untyped-call]


def _patiently(connection: sqlite3.Connection, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """On the connection's thread: `fn` waiting up to the usual busy timeout for SQLite's write lock."""
    connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    try:
        return fn(*args, **kwargs)
    finally:
        connection.execute("PRAGMA busy_timeout=0")


def _inline_connect(database: str, **kwargs: Any) -> aiosqlite.Connection:
    """`_one_hop_connect` for `_InlineConnection` (used from the loop's thread and its own: not bound to one)."""
    connection = _InlineConnection(functools.partial(sqlite3.connect, database, **(kwargs | {"check_same_thread": False})), 64)
    connection._thread.daemon = True
    return connection


async def execute_core(session: AsyncSession, statement: Executable, parameters: Any = None) -> Any:
    """A prebuilt Core statement run on the session's connection: none of the ORM's per-call execution work.

    Its rows, iterable, each a tuple whose columns are also attributes (a `CursorResult`, or on the
    order desk's SQLite connection a list: see `_Direct`). `parameters`: a dict, or a list of them
    (executemany). `AsyncSession.execute` would flush the session's pending ORM changes first
    (autoflush); the connection does not, so they are flushed here when there are any.
    """
    await flush_pending(session)
    held = session.info.get(_INLINE)
    if held is None or not _still_held(*held):
        connection = await session.connection()
        sync = connection.sync_connection
        driver = sync.connection.driver_connection if sync is not None else None
        if sync is None or not (isinstance(driver, _InlineConnection) or _desk_asyncpg(sync)):
            return await connection.execute(statement, parameters)
        held = session.info[_INLINE] = (sync, driver)
    sync, driver = held
    direct = None if sync.engine.echo or _observed(sync) else _Direct.of(statement, sync.dialect, parameters)
    if direct is None:
        return await (await session.connection()).execute(statement, parameters)
    if isinstance(driver, _InlineConnection):
        return await direct.run(sync, driver, parameters)
    return await direct.run_asyncpg(sync, parameters)


def _still_held(connection: Connection, driver: Any) -> bool:
    """Whether the order desk's connection kept in the session's `info` (`_INLINE`) still serves its transaction:
    one of the desk's (as when it was kept), neither closed nor invalidated, in SQLAlchemy's transaction (which lasts
    from one group to the next: `_commit_directly`)."""
    return (
        not connection.closed
        and not connection.invalidated
        and connection.in_transaction()
        and (isinstance(driver, _InlineConnection) or _desk_asyncpg(connection))
    )


def _desk_asyncpg(connection: Connection) -> bool:
    """Whether `connection` is the order desk's PostgreSQL one (`Database.writer_session`'s engine) through asyncpg."""
    return connection.dialect.driver == "asyncpg" and getattr(connection.engine.pool, "role", None) == WRITER_ROLE


def _observed(connection: Connection) -> bool:
    """Whether listeners of SQLAlchemy's connection events (``before_cursor_execute``, ...) would see its statements:
    then they run through SQLAlchemy, which calls them, as they always did (SQLAlchemy's own test, `_has_events`)."""
    return bool(connection._has_events or connection.engine._has_events)


# The session's connection while its transaction lasts, when it is the order desk's SQLite one (`_InlineConnection`):
# (SQLAlchemy's connection, the driver's), so the desk's next statements need not ask the session for it again.
# The same for the desk's PostgreSQL connection (`_desk_asyncpg`).
_INLINE = "tradestack.kit.db.inline"


class _Direct:
    """A prebuilt Core statement compiled once and run straight on the driver's connection by `execute_core`: on
    SQLite (`run`), and on the order desk's PostgreSQL connection through asyncpg (`run_asyncpg`).

    For the order desk's connection (`_InlineConnection`), whose statements run on the event loop's own
    thread: there SQLAlchemy's execution of a prebuilt statement (asking the session for its
    connection, the compiled cache's lookup, an execution context, a cursor, the result's metadata
    and its rows, greenlet switches) cost several times what SQLite spends on it, and a group of
    the desk runs six of them (seen: ~1.9 ms of a sequential order's ~2.7 in its transaction).
    The SQL is SQLAlchemy's own compilation of the statement (an expanding list's rendered once per
    length), its parameters pass through the same bind processors in the same order and its result
    columns through the same result processors as SQLAlchemy's execution would take them; rows are
    named tuples. A statement whose execution needs more runs through SQLAlchemy as before (`of`
    answers None): Python-side column defaults, RETURNING or an expanding list with executemany,
    literal-rendered parameters, column names that are not plain identifiers.

    On PostgreSQL (the desk's writer connection, `Database.writer_session`) SQLAlchemy's execution
    of a statement cost ~130-220 us of CPU over asyncpg's own ~65 (measured: an UPDATE ... RETURNING,
    a SELECT and an unnest INSERT). There the statement runs as SQLAlchemy's asyncpg cursor runs it:
    in the transaction SQLAlchemy's adapter began (or begins, as its cursor would), prepared through
    the adapter's prepared statement cache, its result columns read by the processors for the types
    the server describes; no executemany. An error takes SQLAlchemy's way out: translated by the
    adapter to its DBAPI error, then wrapped (and a lost connection invalidated) by SQLAlchemy's
    connection, as its own execution does.
    """

    __slots__ = ("_compiled", "_dialect", "_expanding", "_positions", "_processors", "_readers", "_recipes", "_row")

    _known: ClassVar[dict[tuple[Executable, str, tuple[str, ...], bool], _Direct | None]] = {}
    _MAX_KNOWN: ClassVar[int] = 512  # prebuilt statements only; past this, statements are compiled at each run

    def __init__(
        self, compiled: SQLCompiler, row: Callable[..., tuple[Any, ...]] | None, readers: tuple[Any, ...] | None
    ) -> None:
        self._compiled = compiled
        self._dialect = compiled.dialect
        self._expanding = tuple(sorted(compiled.bind_names[bind] for bind in compiled.post_compile_params))
        self._processors: Mapping[str, Any] = compiled._bind_processors
        self._positions = tuple((name, None, self._processors.get(name)) for name in compiled.positiontup or ())
        self._row = row
        self._readers = readers
        # By the lengths of the expanding lists: the SQL, and per position (parameter, index in its list or None, processor).
        self._recipes: dict[tuple[int, ...], tuple[str, tuple[tuple[str, int | None, Any], ...]]] = {}

    @classmethod
    def of(cls, statement: Executable, dialect: Dialect, parameters: Any) -> _Direct | None:
        """The statement compiled for these parameters' keys (once), or None when it must run through SQLAlchemy."""
        many = isinstance(parameters, list) and len(parameters) > 1
        first = (parameters[0] if parameters else {}) if isinstance(parameters, list) else (parameters or {})
        key = (statement, dialect.name, tuple(sorted(first)), many)
        known = cls._known
        if key in known:
            return known[key]
        direct = None if many and dialect.name != "sqlite" else cls._compile(statement, dialect, list(key[2]), many)
        if len(known) < cls._MAX_KNOWN:
            known[key] = direct
        return direct

    @classmethod
    def _compile(cls, statement: Executable, dialect: Dialect, keys: list[str], many: bool) -> _Direct | None:
        if not isinstance(statement, ClauseElement):
            return None
        compiled = statement.compile(dialect=dialect, column_keys=keys, for_executemany=many)
        if not isinstance(compiled, SQLCompiler) or not compiled.positional or compiled.positiontup is None:
            return None
        if compiled.insert_prefetch or compiled.update_prefetch or compiled.schema_translate_map:
            return None  # column defaults computed in Python, or names translated, at each execution
        if compiled.literal_execute_params or any(not bind.expanding for bind in compiled.post_compile_params):
            return None  # values rendered into the SQL
        columns = compiled._result_columns
        if many and (columns or compiled.post_compile_params):
            return None
        if not columns:
            return cls(compiled, None, ())
        names = [column.keyname for column in columns]
        if len(set(names)) != len(names) or not all(name.isidentifier() and not name.startswith("_") for name in names):
            return None
        # PostgreSQL: a column's processor depends on the type the server describes (`run_asyncpg` reads it once).
        readers = None
        if dialect.name == "sqlite":
            readers = tuple(column.type._cached_result_processor(dialect, None) for column in columns)
        return cls(compiled, collections.namedtuple("Row", names), readers)

    def _single(self, values: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """The SQL and its parameters for one execution: the SQL and the positions of its parameters are worked out
        once per length of each expanding list."""
        params = self._compiled.construct_params(values, escape_names=False)
        lengths = tuple(len(params[name]) for name in self._expanding)
        recipe = self._recipes.get(lengths)
        if recipe is None:
            state = self._compiled.construct_expanded_state(values, escape_names=False)
            processors = {**self._processors, **state.processors}
            origin: dict[str, tuple[str, int | None]] = {}
            for name, expanded in state.parameter_expansion.items():
                if len(expanded) != len(params[name]):  # a list of tuples: several names an item; not kept
                    parameters = state.parameters
                    return state.statement, tuple(
                        parameters[each] if processors.get(each) is None else processors[each](parameters[each])
                        for each in state.positiontup or ()
                    )
                origin.update((each, (name, index)) for index, each in enumerate(expanded))
            positions = tuple((*origin.get(name, (name, None)), processors.get(name)) for name in state.positiontup or ())
            recipe = (state.statement, positions)
            if len(self._recipes) < 64:
                self._recipes[lengths] = recipe
        return recipe[0], self._bound(params, recipe[1])

    @staticmethod
    def _bound(params: Mapping[str, Any], positions: tuple[tuple[str, int | None, Any], ...]) -> tuple[Any, ...]:
        """`params` (all the statement's, as `construct_params` gives them) in the order of `positions`, processed."""
        bound = []
        for name, index, process in positions:
            value = params[name] if index is None else params[name][index]
            bound.append(value if process is None else process(value))
        return tuple(bound)

    async def run(self, sync: Connection, connection: _InlineConnection, parameters: Any) -> list[Any]:
        """Execute (executemany for a list of several dicts) on the driver's connection `connection` of SQLAlchemy's
        `sync`; the rows. The driver's errors are raised as SQLAlchemy's (an `IntegrityError`, ...), as after its own
        execution."""
        bound: Any
        if isinstance(parameters, list) and len(parameters) > 1:
            sql, many = self._compiled.string, True
            construct = self._compiled.construct_params
            bound = [self._bound(construct(values, escape_names=False), self._positions) for values in parameters]
        else:
            sql, bound = self._single((parameters[0] if isinstance(parameters, list) else parameters) or {})
            many = False
        try:
            cursor = await _OneHopCursor(connection)._call(sql, bound, many)
        except sqlite3.Error as error:
            await greenlet_spawn(sync._handle_dbapi_exception, error, sql, bound, None, None)
            raise
        return self._rows(cursor._rows, self._readers or ())

    def _rows(self, raws: Iterable[Sequence[Any]], readers: tuple[Any, ...]) -> list[Any]:
        row = self._row
        if row is None:
            return []
        return [row(*[value if read is None else read(value) for read, value in zip(readers, raw, strict=True)]) for raw in raws]

    async def run_asyncpg(self, connection: Connection, parameters: Any) -> list[Any]:
        """Execute once on SQLAlchemy's asyncpg connection `connection`, in its transaction; the rows."""
        adapted: Any = connection.connection.dbapi_connection  # SQLAlchemy's adapter of asyncpg's connection
        sql, bound = self._single((parameters[0] if isinstance(parameters, list) else parameters) or {})
        try:
            async with adapted._execute_mutex:  # as SQLAlchemy's cursor does (`_prepare_and_execute`)
                if adapted._transaction is None:
                    await adapted._start_transaction()
                try:
                    prepared, attributes = await adapted._prepare(sql, connection.dialect._invalidate_schema_cache_asof)  # type: ignore[attr-defined]
                    raws = await prepared.fetch(*bound)
                except Exception as error:  # noqa: BLE001  # as SQLAlchemy's cursor: the adapter translates any
                    adapted._handle_exception(error)  # raises the adapter's DBAPI error
        except BaseException as error:
            # SQLAlchemy's connection wraps it (and invalidates a lost connection), as after its own execution.
            await greenlet_spawn(connection._handle_dbapi_exception, error, sql, bound, None, None)
            raise
        if self._row is None:
            return []
        known = self._readers  # PostgreSQL: (the prepared statement's attributes, the processors for their types)
        if known is None or known[0] is not attributes:
            columns = self._compiled._result_columns
            known = self._readers = (
                attributes,
                tuple(
                    column.type._cached_result_processor(self._dialect, attribute.type.oid)
                    for column, attribute in zip(columns, attributes, strict=True)
                ),
            )
        return self._rows(raws, known[1])


async def _commit_directly(session: AsyncSession, *, begin_next: bool = False) -> bool:
    """Commit the order desk's transaction straight on the driver (asyncpg; on SQLite `_commit_inline`), SQLAlchemy's
    own transaction left open; False (nothing done) where `session.commit` is to do it: another connection, or one
    whose events are listened to.

    The desk's statements already run on asyncpg (`_Direct.run_asyncpg`), each starting the server's transaction
    where none is open, as SQLAlchemy's cursor does; what SQLAlchemy did around them -- beginning its transaction
    at the group's first statement, committing and closing it -- was ~110 us of the loop's CPU per order group of
    the ~200 its BEGIN, one statement and COMMIT cost (the server's round trips were the other ~75; measured,
    thread CPU). So its transaction lasts from one group to the next, as the connection does (`_kept_writer`), and
    only the server's is committed: what is pending in the session is flushed first, as its commit would; what
    users of the session keep in `info` for the transaction that ends goes with it (`BooksService` marks the
    accounts it locked there, by SQLAlchemy's transaction); an error takes SQLAlchemy's way out, as in
    `run_asyncpg` (translated by the adapter, wrapped -- and a lost connection invalidated -- by SQLAlchemy's
    connection), and `_kept_writer` then lets the session and its connection go.

    `begin_next`: the next transaction is to begin at once (the desk's next group is queued), so its BEGIN is sent
    with the COMMIT, one round trip (`_commit_and_begin`), where the next group's first statement would have
    begun it in a round trip of its own (one of the five of a group).
    """
    held = session.info.get(_INLINE)
    if held is None or not _still_held(*held):
        return False
    sync, driver = held
    if sync.engine.echo or _observed(sync):
        return False
    await flush_pending(session)
    for key in [key for key in session.info if key != _INLINE]:
        del session.info[key]
    if isinstance(driver, _InlineConnection):
        return await _commit_inline(sync, driver)
    adapted: Any = sync.connection.dbapi_connection  # SQLAlchemy's adapter of asyncpg's connection
    transaction = adapted._transaction
    if transaction is None:  # no statement since the last commit: the server has no transaction to end
        return True
    try:
        try:
            if begin_next and _begins_plainly(transaction):
                await _commit_and_begin(adapted, transaction)
            else:
                await adapted._call_and_discard(transaction.commit)  # the adapter's `commit`, without its greenlet
        except Exception as error:  # noqa: BLE001  # as the adapter's commit: it translates any
            adapted._handle_exception(error)
    except BaseException as error:
        await greenlet_spawn(sync._handle_dbapi_exception, error, "COMMIT", (), None, None)
        raise
    return True


async def _commit_inline(sync: Connection, driver: _InlineConnection) -> bool:
    """`_commit_directly` on SQLite: the order desk's sqlite3 connection commits on the loop's thread (`_InlineConnection`).

    The sqlite3 module begins the connection's transaction itself, at the group's first write (SQLAlchemy's BEGIN on
    SQLite sends nothing), so SQLAlchemy's transaction may stay open from group to group here as on PostgreSQL; going
    through `AsyncSession.commit` (a greenlet, the session's and the connection's transaction bookkeeping, its events),
    and beginning SQLAlchemy's transaction again at the next group's first statement, cost the loop about as much as
    SQLite's own work for them (sequential orders, timed in process, p50: the commit ~165 us, now ~110; the group's
    first statement ~175 us, now ~120)."""
    try:
        await driver.commit()  # nothing to do, nor a trip, outside a transaction (`_OneHopConnection.commit`)
    except BaseException as error:  # as SQLAlchemy's commit: wrapped by its connection, which is then let go
        await greenlet_spawn(sync._handle_dbapi_exception, error, "COMMIT", (), None, None)
        raise
    return True


def _begins_plainly(transaction: Any) -> bool:
    """Whether asyncpg began the transaction `transaction` (its ``Transaction``) with a plain ``BEGIN;``: no isolation
    level, read-only or deferrable mode of its own (the desk's writer sets none), not a savepoint."""
    return not (transaction._isolation or transaction._readonly or transaction._deferrable or transaction._nested)


async def _commit_and_begin(adapted: Any, transaction: Any) -> None:
    """COMMIT the server's transaction and BEGIN the next, the ``BEGIN;`` asyncpg began it with, in one round trip (one
    simple query of both statements); asyncpg's transaction object `transaction`, still started, stands for the next
    one from then on (SQLAlchemy's adapter `adapted` keeps it), whose first statement therefore sends no BEGIN.

    When the COMMIT fails the server runs nothing after it: the connection is left outside any transaction, as
    after asyncpg's own failed commit, and so are the objects (no transaction kept by the adapter, none by asyncpg's
    connection: one left there would turn the next BEGIN into a SAVEPOINT). A BEGIN that fails after a COMMIT that
    succeeded cannot be told apart from a failed COMMIT, but a plain BEGIN fails only with the connection, when a
    COMMIT's outcome is unknown anyway.
    """
    connection = adapted._connection  # asyncpg's
    try:
        await connection.execute("COMMIT;BEGIN;")
    except BaseException:
        if connection._top_xact is transaction:
            connection._top_xact = None
        adapted._transaction = None
        raise


async def flush_pending(session: AsyncSession) -> None:
    """Flush the session's pending ORM changes, if any, before a statement that bypasses its autoflush."""
    if _pending(session.sync_session):
        await session.flush()


def _pending(session: Session) -> bool:
    """Whether `session` holds new, deleted or modified objects: what its ``new``, ``deleted`` and ``dirty`` say, read
    without making their sets (the order desk asks before each statement of every group, ~1.5 % of its loop's CPU)."""
    return bool(session._new or session._deleted or session.identity_map._modified)


def in_list(column: ColumnElement[Any] | QueryableAttribute[Any], name: str, *, postgresql: bool) -> ColumnElement[bool]:
    """``column IN (:name)`` for a list bound as `name`: on PostgreSQL ``column = ANY(:name)``, the list bound as one
    text array, so the statement's text is the same whatever the list's length (elsewhere an expanding IN)."""
    if postgresql:
        return column == any_(bindparam(name, type_=ARRAY(String())))
    return column.in_(bindparam(name, expanding=True))


# Run by a statement (set_config's is_local: until its transaction ends): plans of what runs next in the transaction
# made once per connection and kept, none of them a scan of a whole table (`probes_from_here`); or planned at each run
# again, as on every connection but the order desk's at the start of a transaction (`planned_from_here`).
_PROBING = (("plan_cache_mode", "force_generic_plan"), ("enable_seqscan", "off"))
_PLANNING = (("plan_cache_mode", "force_custom_plan"), ("enable_seqscan", "on"))


def _settings_from_here(settings: Sequence[tuple[str, str]]) -> ColumnElement[bool]:
    """A condition that is always true and, evaluated once before the statement reads its first row (a one-time
    filter), sets `settings` until the transaction ends."""
    values = (func.set_config(literal_column(f"'{name}'"), literal_column(f"'{value}'"), true()) for name, value in settings)
    return select(func.concat(*values)).scalar_subquery().is_not(None)


_PROBES_FROM_HERE = _settings_from_here(_PROBING)
_PLANNED_FROM_HERE = _settings_from_here(_PLANNING)


def probes_from_here() -> ColumnElement[bool]:
    """PostgreSQL: a condition (always true) for the WHERE of a statement after which the transaction's statements
    use plans kept for the connection made without sequential scans (see `unnest_insert`'s `probes_after`); for a
    statement after which none but key lookups and writes from arrays run."""
    return _PROBES_FROM_HERE


def planned_from_here() -> ColumnElement[bool]:
    """PostgreSQL: a condition (always true) for the WHERE of a statement after which the transaction's statements are
    planned at each run again (`postgres_session_settings`)."""
    return _PLANNED_FROM_HERE


async def plan_at_each_run(session: AsyncSession) -> None:
    """PostgreSQL: plan the transaction's next statements at each run (after a `probes_from_here` statement), one
    round trip; elsewhere nothing."""
    if on_postgresql(session):
        await execute_core(session, _PLAN_AT_EACH_RUN)


_PLAN_AT_EACH_RUN = select(_PLANNED_FROM_HERE)


def unnest_insert(table: Table, names: Sequence[str] | None = None, *, probes_after: bool = False) -> Insert:
    """PostgreSQL: ``INSERT INTO table (names) SELECT * FROM unnest(:<table>_<name>, ...)``, many rows from one array
    per column (bound as ``<table>_<name>``; every column when `names` is None). One statement text whatever the
    number of rows, executed once, where an executemany is one execution per row.

    `probes_after`: for a statement that ends what its transaction writes (nothing but other such INSERTs and the
    COMMIT follow). From its execution on, the transaction's statements use plans kept for the connection's life
    (``plan_cache_mode=force_generic_plan``) made without sequential scans (``enable_seqscan=off``): above all the
    foreign-key checks of the rows it writes, which PostgreSQL runs at the statement's end, one per row and key, as
    prepared statements -- planned anew at every check under the session's ``force_custom_plan``
    (`postgres_session_settings`), which was most of what such an INSERT cost the server. A key check kept for the
    connection's life is the reason that setting exists (a plan made while the table was small, a scan of it, kept as
    it grows); made without sequential scans it is a probe of the referenced key's unique index whatever the table's
    size then. The INSERT itself scans no table (rows from its arrays), so its own plans are alike."""
    columns = [table.c[name] for name in names] if names is not None else list(table.c)
    rows = unnested(*((f"{table.name}_{column.name}", column.name, column.type) for column in columns))
    source = select(*rows.c)
    if probes_after:  # one-time filter: runs before the first row is read, so before any row's key check
        source = source.where(_PROBES_FROM_HERE)
    return insert(table).from_select([column.name for column in columns], source)


@dataclass(frozen=True, slots=True)
class Alongside:
    """Rows another module writes in the statement that writes the caller's (PostgreSQL): a data-modifying CTE,
    built once, and its parameters. One statement, one round trip, for both modules' rows; each module builds its own
    (`with_alongside` joins them)."""

    cte: CTE
    parameters: dict[str, Any]


@functools.cache
def with_alongside(statement: Insert, cte: CTE) -> Insert:
    """`statement` that also runs `cte` (an `Alongside`'s): built once per pair, so it stays one prebuilt statement."""
    return statement.add_cte(cte)


def unnested(*columns: tuple[str, str, TypeEngine[Any]]) -> TableValuedAlias:
    """PostgreSQL: rows from arrays bound side by side, ``unnest(:param, ...) AS (name, ...)``; each column given as
    (bind parameter, column name, element type)."""
    return (
        func.unnest(*(bindparam(param, type_=ARRAY(type_)) for param, _, type_ in columns))
        .table_valued(*(name for _, name, _ in columns))
        .render_derived()
    )


class PerDialect(Generic[_S]):
    """A prebuilt statement in its PostgreSQL form and in everyone else's; `listing` builds both from one builder of
    statements binding lists (`in_list`).

    On PostgreSQL an expanding IN gave one statement text per list length: each group size of the
    order desk was another statement for asyncpg to prepare (a round trip, and a parse and plan on
    the server) and for SQLAlchemy to render; the ANY form is prepared once per connection.
    """

    def __init__(self, postgresql: _S, other: _S) -> None:
        self.postgresql = postgresql
        self.other = other

    @classmethod
    def listing(
        cls, build: Callable[[Callable[[ColumnElement[Any] | QueryableAttribute[Any], str], ColumnElement[bool]]], _S]
    ) -> PerDialect[_S]:
        return cls(build(functools.partial(in_list, postgresql=True)), build(functools.partial(in_list, postgresql=False)))

    def of(self, session: AsyncSession) -> _S:
        """The form for the session's database."""
        return self.postgresql if on_postgresql(session) else self.other


def on_postgresql(session: AsyncSession) -> bool:
    """Whether the session is bound to PostgreSQL (a statement's PostgreSQL form, or a PostgreSQL-only way to run it)."""
    bind = session.bind
    return bind is not None and bind.dialect.name == "postgresql"


async def plain_rows(session: AsyncSession, sql: str) -> list[Any]:
    """The rows of one statement without parameters, in the session's transaction, straight from the driver.

    asyncpg's records or sqlite3's tuples (both unpack as tuples): no SQLAlchemy result layer, no
    Row and no type processing per row. For reads of many rows of plain text columns, written in SQL
    that both databases take.
    """
    await flush_pending(session)
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if isinstance(driver, aiosqlite.Connection):
        return list(await driver.execute_fetchall(sql))
    return list(await driver.fetch(sql))  # type: ignore[union-attr]  # asyncpg


async def sqlite_rows(session: AsyncSession, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of one statement on the session's SQLite connection, as the sqlite3 module returns them.

    One trip to the connection's thread (aiosqlite's ``execute_fetchall``) and no SQLAlchemy result
    layer: no Row per row, no type processing, values as SQLite stores them (text, integer, real).
    For reads whose stored text goes straight out (candles); the caller writes the SQL and binds
    values in their stored form.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if not isinstance(driver, aiosqlite.Connection):
        raise TypeError(f"sqlite_rows needs an aiosqlite connection, got {type(driver).__name__}")
    rows: list[tuple[Any, ...]] = list(await driver.execute_fetchall(sql, parameters))  # type: ignore[arg-type]  # sqlite3 rows are tuples
    return rows


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _inline_pragmas(dbapi_connection: Any, record: Any) -> None:
    """`_sqlite_pragmas`, then what `_InlineConnection` needs: no busy wait, no automatic checkpoint."""
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


async def _let_go(session: AsyncSession, *, close_connection: bool = False) -> None:
    """Roll back and close `session` and the connection it is bound to (`Database._kept_writer`'s): back to the pool,
    or with `close_connection` closed for good (invalidated: the pool opens a new one at its next checkout)."""
    connection = session.bind
    if close_connection and isinstance(connection, AsyncConnection):
        await connection.invalidate()
    try:
        await session.rollback()
        await session.close()
    finally:
        if isinstance(connection, AsyncConnection):
            await connection.close()


@asynccontextmanager
async def _committed(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session that commits when the block ends without error and rolls back otherwise."""
    async with sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


class Database:
    """The primary engine and, when configured, a read replica for read-only repositories."""

    def __init__(
        self, settings: Settings, *, writer_lock: ThreadSafeLock | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.url = settings.effective_database_url
        self.engine = create_engine(self.url, settings, role="primary")
        self.replica_url = settings.database_replica_url
        self.replica_engine = create_engine(self.replica_url, settings, role="replica") if self.replica_url else None
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        read_engine = self.replica_engine or self.engine
        if read_engine.dialect.name == "postgresql":
            # Reads run in READ ONLY transactions, so a read-only repository cannot write by mistake.
            read_engine = read_engine.execution_options(postgresql_readonly=True)
        self._read_sessions = async_sessionmaker(read_engine, expire_on_commit=False, autoflush=False)
        self._settings = settings
        self._writer_engine: AsyncEngine | None = None
        self._loop_reader_engine: AsyncEngine | None = None  # its pool; `_loop_reader` the same in autocommit
        self._loop_reader: AsyncEngine = self.engine
        self._writer_sessions = self._sessions
        self._writer_kept: AsyncSession | None = None  # `_kept_writer`'s session, bound to its connection
        self._writer_kept_at = 0.0  # when (`clock`) `_kept_writer` took its connection
        self._clock = clock
        self._writer_busy = False
        self._writer_lock = writer_lock or ThreadSafeLock()

    def twin(self, *, pool_size: int = 2) -> Database:
        """The same database through engines of their own, for another thread's event loop of this process.

        Connections (aiosqlite's, asyncpg's) and their pools belong to the loop that opened them, so a
        thread running its own loop (the embedded matching engine) needs its own engines. On SQLite the
        twin shares this database's writer lock (`writing`), so the two loops' write transactions queue
        for each other instead of meeting in SQLite's lock and its busy-wait sleeps.
        """
        if self.dialect == "sqlite" and not self._sqlite_file:
            raise ValueError("an in-memory SQLite database cannot be opened a second time: use a file")
        settings = self._settings.model_copy(update={"database_pool_size": pool_size, "database_max_overflow": 1})
        return Database(settings, writer_lock=self._writer_lock)

    @property
    def checkpoint_wal_needed(self) -> bool:
        """Whether `checkpoint` does anything here: SQLite in a file."""
        return self._sqlite_file

    @property
    def _sqlite_file(self) -> bool:
        return self.dialect == "sqlite" and make_url(self.url).database not in (None, "", ":memory:")

    @property
    def dialect(self) -> str:
        """Backend name of the primary: ``postgresql`` or ``sqlite``."""
        return self.engine.dialect.name

    def writing(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Hold around a write transaction: on SQLite the process's writer lock (not re-entrant), elsewhere nothing.

        The database has one writer at a time. Two transactions of one process that meet in SQLite's
        own lock cost the one that waits busy-handler sleeps (1, 2, 5, 10, ... ms) on top of the wait;
        queued here, it starts the moment the other commits (seen: the order desk's first write waiting
        ~10 ms an order behind the audit chainer's batch). The lock is shared with every `twin`, so it
        also queues the writers of the embedded engine's thread.
        """
        return self._writer_lock if self.dialect == "sqlite" else contextlib.nullcontext()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read-write session on the primary; commits when the block ends without error."""
        async with _committed(self._sessions) as session:
            yield session

    @asynccontextmanager
    async def writer_session(self, *, next_waiting: Callable[[], bool] | None = None) -> AsyncIterator[AsyncSession]:
        """Like `session`, for a loop that runs one transaction at a time and many of them (the order desk).

        On PostgreSQL it has a connection of its own that the pool does not ping before each use: a
        pre-ping is one more round trip per transaction. A connection the server dropped fails the
        one transaction that finds out (SQLAlchemy then discards it) and the next one reconnects;
        the loop's caller retries. On SQLite (a file) it has a connection of its own too, whose
        statements run on the loop's thread, not on the connection's (`_InlineConnection`): hold
        `writing` around it, and keep its transactions short. On both, one session on one connection
        serves every transaction in turn (`_kept_writer`).

        `next_waiting`, asked at the commit: whether the loop's next transaction is to begin at once (work is
        queued for it). On PostgreSQL its BEGIN then goes in the COMMIT's round trip (`_commit_directly`).
        """
        if self._writer_engine is None and (self.dialect == "postgresql" or self._sqlite_file):
            self._writer_engine = create_engine(self.url, self._settings, role=WRITER_ROLE, single_writer=True)
            self._writer_sessions = async_sessionmaker(self._writer_engine, expire_on_commit=False, autoflush=False)
        if self._writer_engine is not None and not self._writer_busy:
            async with self._kept_writer(self._writer_engine, next_waiting) as session:
                yield session
            return
        async with _committed(self._writer_sessions) as session:
            yield session

    @asynccontextmanager
    async def _kept_writer(self, engine: AsyncEngine, next_waiting: Callable[[], bool] | None) -> AsyncIterator[AsyncSession]:
        """`writer_session`: the same session on the same connection, transaction after transaction.

        A session of its own for each transaction took a connection from the pool and gave it back
        (its reset, the pool's events), and closing the session took a task of its own and two more
        turns of the event loop: ~140 us of the loop's CPU per order group on SQLite, ~120-140 us of a
        three-statement group's ~730 on PostgreSQL (measured, thread CPU). Between transactions the
        session holds nothing (`expunge_all`, as closing it would); a transaction that fails is
        rolled back and its session and connection are let go, so the next one starts afresh, and so does the
        first one after the connection was kept `CONNECTION_RECYCLE_SECONDS` (by the injected clock).
        """
        session = self._writer_kept
        if session is not None and self._clock() - self._writer_kept_at >= CONNECTION_RECYCLE_SECONDS:
            self._writer_kept = None  # closed, not pooled (see CONNECTION_RECYCLE_SECONDS); between transactions, so
            await _let_go(session, close_connection=True)  # at most a BEGIN sent ahead (`_commit_and_begin`) is undone
            session = None
        if session is None:
            session = self._writer_kept = AsyncSession(bind=await engine.connect(), expire_on_commit=False, autoflush=False)
            self._writer_kept_at = self._clock()
        self._writer_busy = True
        try:
            yield session
            if not await _commit_directly(session, begin_next=next_waiting is not None and next_waiting()):
                await session.commit()
        except BaseException:
            self._writer_kept = None
            await _let_go(session)
            raise
        finally:
            self._writer_busy = False
            if len(session.identity_map) or _pending(session.sync_session):
                session.expunge_all()

    async def checkpoint(self, restart_frames: int = SQLITE_RESTART_FRAMES) -> tuple[int, int] | None:
        """On SQLite (a file): copy what the write-ahead log holds into the database, on a pooled connection's thread --
        (frames in the log, frames copied); None elsewhere.

        The writer connection (`writer_session`: the order desk, the audit chainer) never checkpoints
        (``wal_autocheckpoint=0``, see `_InlineConnection`): its commits hold the process's writer lock, and an
        automatic checkpoint in one held it for the copy of up to 1,000 pages and two fsyncs. Here a PASSIVE checkpoint
        (it waits for no reader or writer and holds none up) copies what the log holds, holding no lock of this process.
        Under a steady stream of commits the log is then never all copied when a writer begins, which is when it would
        start over from its beginning; so once it holds `restart_frames` or more, another one, holding `writing`,
        copies what was committed meanwhile (little: 1.6 ms median under 16 connections of orders, measured), and the
        next writer starts the log over instead of growing it. `checkpoints` runs this every `SQLITE_CHECKPOINT_SECONDS`;
        the pooled connections keep their automatic checkpoints."""
        if not self._sqlite_file:
            return None
        async with self.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            checkpoint = "PRAGMA wal_checkpoint(PASSIVE)"
            row: Sequence[Any] = (await autocommit.exec_driver_sql(checkpoint)).one()  # (busy, frames in the log, copied)
            if int(row[1]) >= restart_frames:
                async with self.writing():
                    row = (await autocommit.exec_driver_sql(checkpoint)).one()
        return int(row[1]), int(row[2])

    async def checkpoints(self, stop: asyncio.Event) -> None:
        """`checkpoint` every `SQLITE_CHECKPOINT_SECONDS` until `stop` is set (a failure is logged and tried again)."""
        while not await wait_event(stop, SQLITE_CHECKPOINT_SECONDS):
            try:
                await self.checkpoint()
            except Exception as exc:  # noqa: BLE001 - the next one tries again; the pooled connections' own still run
                log.warning("sqlite checkpoint failed", error=f"{type(exc).__name__}: {exc}")

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads: on the replica when one is configured, else on the primary."""
        async with self._read_sessions() as session:
            try:
                yield session
            finally:
                await session.rollback()

    @asynccontextmanager
    async def loop_read_session(self) -> AsyncIterator[AsyncSession]:
        """Like `read_session`, for a loop that reads one statement after another and often (the matching engine).

        On PostgreSQL it has a connection of its own that the pool does not ping before each use
        (see `writer_session`), in autocommit: no BEGIN and no ROLLBACK around the reads, so one
        round trip a statement instead of four. Each statement reads its own snapshot, as it does
        in a READ COMMITTED transaction. Elsewhere it is `read_session`.
        """
        if self.dialect != "postgresql":
            async with self.read_session() as session:
                yield session
            return
        if self._loop_reader_engine is None:
            self._loop_reader_engine = create_engine(
                self.replica_url or self.url, self._settings, role="loop-reader", single_writer=True
            )
            self._loop_reader = self._loop_reader_engine.execution_options(isolation_level="AUTOCOMMIT")
        async with AsyncSession(self._loop_reader, expire_on_commit=False, autoflush=False) as session:
            yield session

    async def ping(self, *, replica: bool = False) -> float:
        """Run one round trip and return its latency in seconds."""
        engine = self.replica_engine if replica and self.replica_engine else self.engine
        started = time.perf_counter()
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return time.perf_counter() - started

    def pool_status(self, *, replica: bool = False) -> PoolStatus:
        """Pool usage of the primary (or the replica)."""
        engine = self.replica_engine if replica and self.replica_engine else self.engine
        pool: Any = engine.sync_engine.pool
        size = int(pool.size()) if hasattr(pool, "size") else 1
        checked_out = int(pool.checkedout()) if hasattr(pool, "checkedout") else 0
        checked_in = int(pool.checkedin()) if hasattr(pool, "checkedin") else 0
        overflow = max(0, int(pool.overflow())) if hasattr(pool, "overflow") else 0
        max_overflow = int(getattr(pool, "_max_overflow", 0))
        return PoolStatus(size=size, checked_out=checked_out, checked_in=checked_in, overflow=overflow, max_overflow=max_overflow)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        if self._writer_kept is not None:
            kept, self._writer_kept = self._writer_kept, None
            await _let_go(kept)
        if self._writer_engine is not None:
            await self._writer_engine.dispose()
        if self._loop_reader_engine is not None:
            await self._loop_reader_engine.dispose()
        if self.replica_engine is not None:
            await self.replica_engine.dispose()
