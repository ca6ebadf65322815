"""What a database holds, in a few numbers that must survive a backup, a restore or a migration.

Per table the row count and a SHA-256 over every row in primary-key order, each value in a
canonical text form that is the same on SQLite and PostgreSQL (decimals without exponent or
trailing zeros, timestamps in UTC ISO 8601, booleans as 1/0, encrypted columns as their stored
ciphertext, so no key is needed and a copy is byte-exact); the journal's sum per currency; the
audit chain's row count and head hash; the schema revision. Two databases with equal
fingerprints hold the same data.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, localcontext
from typing import Any

from sqlalchemy import Column, Table, Text, select, text, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection

import tradestack.models  # noqa: F401 - registers every table on Base.metadata
from tradestack.core.money import plain
from tradestack.kit.crypto import EncryptedString
from tradestack.models.audit import AuditEntry
from tradestack.models.base import Base
from tradestack.models.books import PostingRow

# Who-does-what-now state that a running installation rewrites every few seconds (the audit chainer's
# lease): copied like any table, but not data, so not part of what a fingerprint compares.
TRANSIENT_TABLES = frozenset({"audit_chainer_leases"})
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
BATCH_ROWS = 5000


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
        )

    def differences(self, other: Fingerprint) -> list[str]:
        """What differs from `other`, one line per difference (empty: the same data)."""
        problems: list[str] = []
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


async def table_fingerprint(connection: AsyncConnection, table: Table) -> TableFingerprint:
    digest = hashlib.sha256()
    rows = 0
    result = await connection.stream(select(*raw_columns(table)).order_by(*primary_key(table)))
    async for partition in result.partitions(BATCH_ROWS):
        for row in partition:
            digest.update("\x1f".join(canonical(value) for value in row).encode())
            digest.update(b"\x1e")
            rows += 1
    return TableFingerprint(rows=rows, sha256=digest.hexdigest())


async def fingerprint(connection: AsyncConnection) -> Fingerprint:
    """The fingerprint of the database behind `connection` (in its current transaction/snapshot)."""
    result = Fingerprint()
    for table in data_tables():
        if table.name not in TRANSIENT_TABLES:
            result.tables[table.name] = await table_fingerprint(connection, table)
    sums: dict[str, Decimal] = defaultdict(Decimal)
    with localcontext(_EXACT):
        for currency, amount in await connection.execute(select(PostingRow.currency, PostingRow.amount)):
            sums[currency] += amount
    result.journal_sums = {currency: plain(total) for currency, total in sorted(sums.items())}
    result.audit_rows = result.tables[AuditEntry.__tablename__].rows
    head = await connection.execute(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    result.audit_head = head.scalar_one_or_none()
    try:
        revisions = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
        result.schema_revision = ",".join(sorted(revisions)) or None
    except Exception:  # noqa: BLE001 - no alembic_version table: a database never migrated
        result.schema_revision = None
    return result
