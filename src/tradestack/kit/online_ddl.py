"""Index changes a migration script makes on a table that takes writes while it migrates (`orders` above all).

A plain ``CREATE INDEX`` holds writes to its table (a SHARE lock) until it has read every row; during a
release the previous colour still takes orders on the same database, and its writes would wait (then
fail past ``lock_timeout``). On PostgreSQL these build and drop the index CONCURRENTLY: the table keeps
taking writes, the build waits for the transactions already writing it to end. That cannot run inside
a transaction block, so it runs in Alembic's autocommit block, between the revision's transaction
(`kit.migrations.run` runs each revision in its own on PostgreSQL) and the one that stamps it.

A concurrent build that fails half-way (killed, cancelled) leaves an INVALID index under the name: the
next run drops it and builds again; an index already built and valid (a run killed before the stamp)
is kept. SQLite has no concurrent build; the embedded database is migrated before it serves.

Imported by migration scripts only (it imports Alembic).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

_VALID = sa.text("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(:name)")  # NULL when no index has the name


def create_index(name: str, table: str, columns: Sequence[str], *, where: sa.ColumnElement[bool] | None = None) -> None:
    """Build index `name` on `table` (partial with `where`), without holding the table's writes on PostgreSQL."""
    context = op.get_context()
    if context.dialect.name != "postgresql":
        op.create_index(name, table, list(columns), sqlite_where=where)
        return
    with context.autocommit_block():
        if context.as_sql:  # rendered offline (`kit.migrations.upgrade_sql`, the expand-only judge): the statement alone
            op.create_index(name, table, list(columns), postgresql_where=where, postgresql_concurrently=True, if_not_exists=True)
            return
        valid = op.get_bind().execute(_VALID, {"name": name}).scalar()
        if valid:
            return
        if valid is False:  # a concurrent build of an earlier run that did not finish
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
        # The build waits for the transactions that write the table to end (it holds nobody up meanwhile): the
        # connection's lock_timeout, meant for order entry, would fail it under load and leave an invalid index.
        op.execute("SET lock_timeout = 0")
        try:
            op.create_index(name, table, list(columns), postgresql_where=where, postgresql_concurrently=True)
        finally:
            op.execute("RESET lock_timeout")


def drop_index(name: str, table: str) -> None:
    """Drop index `name` of `table`, on PostgreSQL without an exclusive lock on the table."""
    context = op.get_context()
    if context.dialect.name != "postgresql":
        op.drop_index(name, table_name=table)
        return
    with context.autocommit_block():
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
