"""The libraries' private names the hot paths reach for exist in the versions installed.

Each was taken to skip a library's per-call machinery on the order path (the docstrings at the places
named say why and what was measured). A library upgrade may rename any of them; the code would then
fail at its first commit, read or write with an AttributeError far from the cause. Here the upgrade
fails with the name, the library and the place that uses it: mend that place or pin the version.
"""

from __future__ import annotations

import aiosqlite
import asyncpg.connection  # type: ignore[import-untyped]
import asyncpg.transaction  # type: ignore[import-untyped]
import pytest
import redis.asyncio.connection
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

PRIVATE_NAMES = [
    # kit/db.py `_begins_plainly` and `_commit_and_begin` (COMMIT;BEGIN; in one round trip)
    (asyncpg.transaction.Transaction, ("_isolation", "_readonly", "_deferrable", "_nested"), "kit/db.py _begins_plainly"),
    (asyncpg.connection.Connection, ("_top_xact",), "kit/db.py _commit_and_begin"),
    # kit/db.py `_Direct.run_asyncpg` and `_commit_directly` (the desk's statements and commit straight on asyncpg)
    (
        AsyncAdapt_asyncpg_connection,
        ("_connection", "_transaction", "_execute_mutex", "_start_transaction", "_prepare", "_handle_exception"),
        "kit/db.py _Direct.run_asyncpg, _commit_directly",
    ),
    (AsyncAdapt_asyncpg_connection, ("_call_and_discard",), "kit/db.py _commit_directly"),
    (Connection, ("_handle_dbapi_exception",), "kit/db.py _Direct.run_asyncpg, _commit_directly, _commit_inline"),
    # kit/db.py `_OneHopCursor` and the writer's patient queue (one trip to aiosqlite's thread per statement)
    (aiosqlite.Connection, ("_execute",), "kit/db.py _OneHopCursor._call"),
    # kit/leanredis.py `send` (a command written straight to the connection's stream)
    (redis.asyncio.connection.Connection, ("_writer",), "kit/leanredis.py send"),
]


@pytest.mark.parametrize(("owner", "names", "used_by"), PRIVATE_NAMES, ids=lambda value: getattr(value, "__qualname__", None))
def test_the_private_names_we_use_exist(owner: type, names: tuple[str, ...], used_by: str) -> None:
    missing = [name for name in names if not hasattr(owner, name)]
    assert not missing, f"{owner.__module__}.{owner.__qualname__} has no {', '.join(missing)} any more: mend {used_by}"


async def test_aiosqlite_keeps_its_sqlite3_connection_as_conn() -> None:
    # kit/db.py `_OneHopCursor._call` runs a function on the connection's thread (`_execute`) that makes its cursor
    # from it (`_run`).
    connection = await aiosqlite.connect(":memory:")
    try:
        row = await connection._execute(  # type: ignore[no-untyped-call]
            lambda: connection._conn.execute("select 1").fetchone()
        )
        assert row == (1,), "mend kit/db.py _OneHopCursor"
    finally:
        await connection.close()


def test_a_session_keeps_its_pending_objects_where_pending_reads_them() -> None:
    # kit/db.py `_pending` reads what `Session.new`, `deleted` and `dirty` are made from, without making their sets.
    session = Session()
    assert isinstance(session._new, dict), "mend kit/db.py _pending"
    assert isinstance(session._deleted, dict), "mend kit/db.py _pending"
    assert isinstance(session.identity_map._modified, set), "mend kit/db.py _pending"
