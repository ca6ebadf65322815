"""What a database holds, in a few numbers that must survive a backup, a restore or a migration.

Per table the row count and a SHA-256 over every row in primary-key order, each value in a
canonical text form that is the same on SQLite and PostgreSQL (decimals without exponent or
trailing zeros, timestamps in UTC ISO 8601, booleans as 1/0, encrypted columns as their stored
ciphertext, so no key is needed and a copy is byte-exact); the journal's sum per currency; the
audit chain's row count and head hash; the schema revision. Two databases with equal
fingerprints hold the same data.

Methods (recorded in the fingerprint, so a backup's manifest is always checked the way it was made):

- ``rows-sha256-v2`` (current): a row's canonical text (values joined by U+001F, NULL as U+0000)
  is hashed on its own; the table's checksum is the SHA-256 of those row hashes, in hex, one per
  line. On PostgreSQL the database computes each row's canonical text and hash itself (one SQL
  expression per column type) and streams the hex lines with ``COPY ... TO STDOUT``: no Python
  object per value. On SQLite (or for a column type without an SQL form) Python does the same.
- ``rows-sha256-v1`` (manifests written before): one SHA-256 over the canonical texts of every row.
- ``pg-copy-sha256-v3`` (PostgreSQL backups, compared only with PostgreSQL): the SHA-256 of the
  table's rows in primary-key order exactly as ``COPY ... TO STDOUT`` writes them (text format,
  one line per row), with the settings that shape that text pinned for the transaction (ISO dates,
  UTC, shortest exact floats, hex bytea). The server only writes its rows out and the hashing is
  done by the client process, about half the work of v2; equal fingerprints still mean the same
  values (a backup and its restore have the same column types). A table with a column that has
  no SQL form is checksummed by v2's Python path.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import Boolean, Column, Float, Integer, Numeric, String, Table, Text, func, select, text, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import tradestack.models  # noqa: F401 - registers every table on Base.metadata
from tradestack.core.money import EXACT, plain
from tradestack.kit.crypto import EncryptedString
from tradestack.kit.types import ExactDecimal
from tradestack.models.audit import AuditEntry
from tradestack.models.base import Base, UTCDateTime
from tradestack.models.books import PostingRow

# Who-does-what-now state that a running installation rewrites every few seconds (the audit chainer's
# lease): copied like any table, but not data, so not part of what a fingerprint compares.
TRANSIENT_TABLES = frozenset({"audit_chainer_leases"})
BATCH_ROWS = 5000
METHOD_V1 = "rows-sha256-v1"
METHOD_V2 = "rows-sha256-v2"
METHOD_V3 = "pg-copy-sha256-v3"
METHOD = METHOD_V2
METHODS = (METHOD_V1, METHOD_V2, METHOD_V3)
# Settings that decide how COPY writes a value as text (method v3), pinned in the fingerprint's transaction.
_COPY_TEXT_SETTINGS = {
    "DateStyle": "'ISO, YMD'", "TimeZone": "'UTC'", "IntervalStyle": "'postgres'", "extra_float_digits": "1",
    "bytea_output": "'hex'",
}  # fmt: skip
Progress = Callable[[str], None] | None


@dataclass
class TableFingerprint:
    rows: int
    sha256: str


@dataclass
class Fingerprint:
    """Row counts and checksums per table, journal sums, audit head and schema revision."""

    tables: dict[str, TableFingerprint] = field(default_factory=dict)
    journal_sums: dict[str, str] = field(default_factory=dict)
    audit_rows: int = 0
    audit_head: str | None = None
    schema_revision: str | None = None
    method: str = METHOD

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fingerprint:
        return cls(
            tables={name: TableFingerprint(**value) for name, value in data["tables"].items()},
            journal_sums=dict(data["journal_sums"]),
            audit_rows=int(data["audit_rows"]),
            audit_head=data["audit_head"],
            schema_revision=data["schema_revision"],
            method=data.get("method", METHOD_V1),
        )

    def differences(self, other: Fingerprint) -> list[str]:
        """What differs from `other`, one line per difference (empty: the same data)."""
        problems: list[str] = []
        if self.method != other.method:
            return [f"fingerprint taken by method {self.method}, expected {other.method}: checksums cannot be compared"]
        for name in sorted(set(self.tables) | set(other.tables)):
            mine, theirs = self.tables.get(name), other.tables.get(name)
            if mine is None or theirs is None:
                problems.append(f"table {name} is only on one side")
            elif mine.rows != theirs.rows:
                problems.append(f"table {name}: {mine.rows} rows, expected {theirs.rows}")
            elif mine.sha256 != theirs.sha256:
                problems.append(f"table {name}: same {mine.rows} rows but different content (checksum)")
        if self.journal_sums != other.journal_sums:
            problems.append(f"journal sums per currency {self.journal_sums} differ from {other.journal_sums}")
        if (self.audit_rows, self.audit_head) != (other.audit_rows, other.audit_head):
            problems.append(
                f"audit chain: {self.audit_rows} rows with head {self.audit_head}, "
                f"expected {other.audit_rows} with head {other.audit_head}"
            )
        if self.schema_revision != other.schema_revision:
            problems.append(f"schema revision {self.schema_revision}, expected {other.schema_revision}")
        return problems


def backup_method(dialect: str) -> str:
    """The method a backup of a `dialect` database is fingerprinted by (v3 on PostgreSQL, else v2)."""
    return METHOD_V3 if dialect == "postgresql" else METHOD


def data_tables() -> list[Table]:
    """Every application table, parents before children."""
    return list(Base.metadata.sorted_tables)


def canonical(value: Any) -> str:
    """A value's text, identical whichever backend returned it."""
    if value is None:
        return "\x00"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def raw_columns(table: Table) -> list[Any]:
    """The table's columns for copying and checksums: encrypted ones as their stored text."""
    columns: list[Any] = []
    for column in table.columns:
        if isinstance(column.type, EncryptedString):
            columns.append(type_coerce(column, Text).label(column.name))
        else:
            columns.append(column)
    return columns


def primary_key(table: Table) -> list[Column[Any]]:
    return list(table.primary_key.columns) or list(table.columns)


def _row_text(row: Any) -> bytes:
    return "\x1f".join(canonical(value) for value in row).encode()


async def _python_table_fingerprint(connection: AsyncConnection, table: Table, method: str) -> TableFingerprint:
    digest = hashlib.sha256()
    rows = 0
    result = await connection.stream(select(*raw_columns(table)).order_by(*primary_key(table)))
    async for partition in result.partitions(BATCH_ROWS):
        for row in partition:
            if method == METHOD_V1:
                digest.update(_row_text(row))
                digest.update(b"\x1e")
            else:
                digest.update(hashlib.sha256(_row_text(row)).hexdigest().encode())
                digest.update(b"\n")
            rows += 1
    return TableFingerprint(rows=rows, sha256=digest.hexdigest())


_PG_TIMESTAMP = (
    "to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
    " || CASE WHEN extract(microseconds FROM {c})::bigint % 1000000 = 0 THEN ''"
    " ELSE to_char({c} AT TIME ZONE 'UTC', '.US') END || '+00:00'"
)


def _pg_canonical(column: Column[Any], quoted: str) -> str | None:
    """SQL giving the column's `canonical` text on PostgreSQL (None: no SQL form, Python must do it)."""
    kind = column.type
    if isinstance(kind, ExactDecimal) or (isinstance(kind, Numeric) and not isinstance(kind, Float)):
        return f"trim_scale({quoted})::text"
    if isinstance(kind, UTCDateTime):
        return _PG_TIMESTAMP.format(c=quoted)
    if isinstance(kind, Boolean):
        return f"CASE WHEN {quoted} THEN '1' WHEN NOT {quoted} THEN '0' END"
    if isinstance(kind, Integer | String | EncryptedString):
        return f"{quoted}::text"
    return None


def _pg_row_hashes(connection: AsyncConnection, table: Table, *, utf8: bool = False) -> str | None:
    """``SELECT`` of each row's hex SHA-256 (method v2) in primary-key order, or None when a column has no SQL form.

    `utf8`: the database's encoding is UTF-8, so a text's bytes are its UTF-8 bytes as they are
    (``textsend``, no conversion pass); otherwise each value is converted with ``convert_to``.
    """
    quote = connection.dialect.identifier_preparer.quote
    parts: list[str] = []
    for column in table.columns:
        expression = _pg_canonical(column, quote(column.name))
        if expression is None:
            return None
        as_bytes = f"textsend({expression})" if utf8 else f"convert_to({expression}, 'UTF8')"
        parts.append(f"coalesce({as_bytes}, '\\x00'::bytea)")
    row = " || '\\x1f'::bytea || ".join(parts)
    order = ", ".join(quote(column.name) for column in primary_key(table))
    return f"SELECT encode(sha256({row}), 'hex') FROM {quote(table.name)} ORDER BY {order}"  # noqa: S608 - metadata names


def _pg_rows(connection: AsyncConnection, table: Table) -> str:
    """``SELECT`` of the table's rows as they are stored, in primary-key order (method v3)."""
    quote = connection.dialect.identifier_preparer.quote
    columns = ", ".join(quote(column.name) for column in table.columns)
    order = ", ".join(quote(column.name) for column in primary_key(table))
    return f"SELECT {columns} FROM {quote(table.name)} ORDER BY {order}"  # noqa: S608 - metadata names


async def _pg_table_fingerprint(connection: AsyncConnection, query: str) -> TableFingerprint:
    """Stream the row hashes with COPY (in the connection's current transaction) into the table's digest."""
    digest = hashlib.sha256()
    lines = 0

    async def sink(chunk: bytes) -> None:
        nonlocal lines
        digest.update(chunk)
        lines += chunk.count(b"\n")

    raw = await connection.get_raw_connection()
    await raw.driver_connection.copy_from_query(query, output=sink)  # type: ignore[union-attr]
    return TableFingerprint(rows=lines, sha256=digest.hexdigest())


async def _utf8(connection: AsyncConnection) -> bool:
    if connection.dialect.name != "postgresql":
        return False
    return str((await connection.execute(text("SHOW server_encoding"))).scalar_one()).upper() in ("UTF8", "UTF-8")


async def table_fingerprint(
    connection: AsyncConnection, table: Table, method: str = METHOD, *, utf8: bool | None = None
) -> TableFingerprint:
    """Row count and checksum of one table by `method` (`utf8`: whether a PostgreSQL database is UTF-8; None: ask it)."""
    if method not in METHODS:
        raise ValueError(f"unknown fingerprint method {method!r}; known: {', '.join(METHODS)}")
    postgresql = connection.dialect.name == "postgresql"
    if method == METHOD_V3 and not postgresql:
        raise ValueError(f"fingerprint method {METHOD_V3} is for PostgreSQL databases only")
    if method in (METHOD_V2, METHOD_V3) and postgresql:
        query = _pg_row_hashes(connection, table, utf8=await _utf8(connection) if utf8 is None else utf8)
        if query is not None:
            return await _pg_table_fingerprint(connection, _pg_rows(connection, table) if method == METHOD_V3 else query)
    return await _python_table_fingerprint(connection, table, METHOD_V2 if method == METHOD_V3 else method)


async def journal_sums(connection: AsyncConnection) -> dict[str, str]:
    """The sum of every posting's amount per currency (exact: NUMERIC on PostgreSQL, Decimal in Python on SQLite)."""
    sums: dict[str, Decimal] = defaultdict(Decimal)
    if connection.dialect.name == "postgresql":
        query = select(PostingRow.currency, func.sum(PostingRow.amount)).group_by(PostingRow.currency)
        for currency, total in await connection.execute(query):
            sums[currency] = total
    else:
        with localcontext(EXACT):
            for currency, amount in await connection.execute(select(PostingRow.currency, PostingRow.amount)):
                sums[currency] += amount
    return {currency: plain(total) for currency, total in sorted(sums.items())}


def _fingerprinted_tables() -> list[Table]:
    return [table for table in data_tables() if table.name not in TRANSIENT_TABLES]


async def _tables_fingerprint(
    connection: AsyncConnection,
    tables: list[Table],
    method: str,
    found: dict[str, TableFingerprint],
    progress: Progress,
    total: int,
) -> None:
    """Checksum `tables` on `connection` into `found` (in its current transaction)."""
    await connection.execute(text("SELECT 1"))  # begins the transaction before any COPY on the driver's connection
    utf8 = await _utf8(connection)
    if method == METHOD_V3 and connection.dialect.name == "postgresql":
        for name, value in _COPY_TEXT_SETTINGS.items():
            await connection.execute(text(f"SET LOCAL {name} = {value}"))
    for table in tables:
        found[table.name] = await table_fingerprint(connection, table, method, utf8=utf8)
        if progress is not None:
            progress(f"checksummed {table.name}: {found[table.name].rows} rows ({len(found)}/{total} tables)")


async def _whole_database_facts(connection: AsyncConnection, result: Fingerprint) -> None:
    """Journal sums, audit head and schema revision (the tables' checksums are in `result` already)."""
    result.journal_sums = await journal_sums(connection)
    result.audit_rows = result.tables[AuditEntry.__tablename__].rows
    head = await connection.execute(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    result.audit_head = head.scalar_one_or_none()
    try:
        revisions = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
        result.schema_revision = ",".join(sorted(revisions)) or None
    except Exception:  # noqa: BLE001 - no alembic_version table: a database never migrated
        result.schema_revision = None


async def fingerprint(connection: AsyncConnection, method: str = METHOD, *, progress: Progress = None) -> Fingerprint:
    """The fingerprint of the database behind `connection` (in its current transaction/snapshot).

    `progress`, when given, hears of each table as it is checksummed.
    """
    result = Fingerprint(method=method)
    tables = _fingerprinted_tables()
    found: dict[str, TableFingerprint] = {}
    await _tables_fingerprint(connection, tables, method, found, progress, len(tables))
    result.tables = {table.name: found[table.name] for table in tables}
    await _whole_database_facts(connection, result)
    return result


async def _table_sizes(connection: AsyncConnection, tables: list[Table]) -> dict[str, int]:
    names = [table.name for table in tables]
    query = text(
        "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relkind IN ('r', 'p') AND relname = ANY(:names)"
    )
    return {name: int(size) for name, size in (await connection.execute(query, {"names": names})).all()}


async def fingerprint_concurrently(
    engine: AsyncEngine, method: str = METHOD, *, connections: int = 2, progress: Progress = None
) -> Fingerprint:
    """`fingerprint` of the database behind `engine`, its tables checksummed on `connections` connections at once.

    On PostgreSQL the first connection exports its REPEATABLE READ snapshot and the others import
    it, so every table is read as of the same moment, exactly as one connection would; the
    tables are shared out largest first to the least loaded connection. Elsewhere (SQLite), or
    with one connection, it is `fingerprint` on one connection.
    """
    if engine.dialect.name != "postgresql" or connections < 2:
        async with engine.connect() as connection:
            return await fingerprint(connection, method, progress=progress)
    tables = _fingerprinted_tables()
    result = Fingerprint(method=method)
    found: dict[str, TableFingerprint] = {}
    async with AsyncExitStack() as stack:
        main = await stack.enter_async_context(engine.connect())
        await main.execution_options(isolation_level="REPEATABLE READ")
        await stack.enter_async_context(main.begin())
        snapshot = (await main.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
        sizes = await _table_sizes(main, tables)
        shares: list[list[Table]] = [[] for _ in range(connections)]
        loads = [0] * connections
        for table in sorted(tables, key=lambda table: -sizes.get(table.name, 0)):
            least = loads.index(min(loads))
            shares[least].append(table)
            loads[least] += sizes.get(table.name, 0)
        helpers = [main]
        for _ in shares[1:]:
            helper = await stack.enter_async_context(engine.connect())
            await helper.execution_options(isolation_level="REPEATABLE READ")
            await stack.enter_async_context(helper.begin())
            await helper.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            helpers.append(helper)
        await asyncio.gather(
            *(
                _tables_fingerprint(helper, share, method, found, progress, len(tables))
                for helper, share in zip(helpers, shares, strict=True)
            )
        )
        result.tables = {table.name: found[table.name] for table in tables}
        await _whole_database_facts(main, result)
    return result
