"""The fingerprint's two ways of hashing rows agree: PostgreSQL's SQL + COPY and Python's canonical text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Boolean, Column, Integer, MetaData, String, Table, Text, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.crypto import EncryptedString
from tradestack.kit.db import Database
from tradestack.kit.types import ExactDecimal
from tradestack.models.base import UTCDateTime
from tradestack.ops import fingerprint as fp
from tradestack.ops.backup import create_backup, load_backup, verify_backup

metadata = MetaData()
SAMPLES = Table(
    "fingerprint_samples",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("amount", ExactDecimal(38, 18)),
    Column("price", ExactDecimal(20, 8)),
    Column("ts", UTCDateTime()),
    Column("flag", Boolean()),
    Column("count", Integer()),
    Column("big", BigInteger()),
    Column("note", Text()),
    Column("secret", EncryptedString("samples.secret")),
)
ROWS = [
    {"id": "a", "amount": Decimal("100.500"), "price": Decimal("0.00000001"), "ts": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
     "flag": True, "count": 0, "big": 2**40, "note": "tab\there, new\nline, back\\slash, \x1f unit sep, é ✓", "secret": None},
    {"id": "b", "amount": Decimal("-0.000000000000000001"), "price": Decimal(10000),
     "ts": datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC),
     "flag": False, "count": -3, "big": None, "note": "", "secret": None},
    {"id": "c", "amount": Decimal(0), "price": None, "ts": None, "flag": None, "count": None, "big": -(2**40),
     "note": None, "secret": None},
    {"id": "d", "amount": Decimal("12345678901234567890.123456789012345678"), "price": Decimal("1E+3"),
     "ts": datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "flag": True, "count": 2**31 - 1, "big": 0,
     "note": "'quoted' \"double\" \\N", "secret": None},
]  # fmt: skip


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(postgres_url)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(insert(SAMPLES), ROWS)
        # an encrypted column is hashed as its stored ciphertext: write one directly
        await connection.execute(text("UPDATE fingerprint_samples SET secret = 'v1:c2VjcmV0:Y2lwaGVy' WHERE id = 'a'"))
    yield engine
    await engine.dispose()


async def test_sql_and_python_row_hashes_are_equal_for_every_column_type(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        query = fp._pg_row_hashes(connection, SAMPLES)
        assert query is not None
        await connection.execute(text("SELECT 1"))
        in_sql = await fp._pg_table_fingerprint(connection, query)
        in_python = await fp._python_table_fingerprint(connection, SAMPLES, fp.METHOD_V2)
    assert in_sql == in_python
    assert in_sql.rows == len(ROWS)


async def test_a_changed_value_changes_the_checksum_either_way(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        before = await fp.table_fingerprint(connection, SAMPLES)
    async with engine.begin() as connection:
        await connection.execute(
            SAMPLES.update().where(SAMPLES.c.id == "b").values(ts=datetime(2026, 1, 2, 3, 4, 5, 8, tzinfo=UTC))
        )
    async with engine.connect() as connection:
        after = await fp.table_fingerprint(connection, SAMPLES)
        python = await fp._python_table_fingerprint(connection, SAMPLES, fp.METHOD_V2)
    assert after.rows == before.rows
    assert after.sha256 != before.sha256
    assert after == python


async def test_the_copy_method_counts_rows_ignores_session_settings_and_sees_a_change(engine: AsyncEngine) -> None:
    async def v3(*settings: str) -> fp.TableFingerprint:
        async with engine.connect() as connection, connection.begin():
            for setting in settings:
                await connection.execute(text(setting))
            found: dict[str, fp.TableFingerprint] = {}
            await fp._tables_fingerprint(connection, [SAMPLES], fp.METHOD_V3, found, None, 1)
            return found[SAMPLES.name]

    plain = await v3()
    # The text COPY writes depends on these; v3 pins them, so a session set otherwise gets the same checksum.
    assert await v3("SET TimeZone = 'Australia/Sydney'", "SET DateStyle = 'German, DMY'", "SET extra_float_digits = 0") == plain
    assert plain.rows == len(ROWS)  # a note with a newline is still one line of COPY text
    async with engine.begin() as connection:
        await connection.execute(
            SAMPLES.update().where(SAMPLES.c.id == "d").values(amount=Decimal("12345678901234567890.12345678901234568"))
        )
    changed = await v3("SELECT 1")
    assert (changed.rows, changed.sha256 != plain.sha256) == (len(ROWS), True)


def test_a_fingerprint_by_another_method_is_not_compared() -> None:
    old = fp.Fingerprint(method=fp.METHOD_V1)
    assert fp.Fingerprint().differences(old) == [
        "fingerprint taken by method rows-sha256-v2, expected rows-sha256-v1: checksums cannot be compared"
    ]
    assert fp.Fingerprint.from_json({"tables": {}, "journal_sums": {}, "audit_rows": 0, "audit_head": None,
                                      "schema_revision": None}).method == fp.METHOD_V1  # fmt: skip


async def test_a_backup_whose_manifest_has_a_v1_fingerprint_is_still_checked_by_v1(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    database = Database(settings)
    await migrations.upgrade(database.engine)
    async with database.engine.connect() as connection:
        v1 = await fp.fingerprint(connection, fp.METHOD_V1)
    await database.dispose()
    made = await create_backup(settings, tmp_path / "backups")
    assert made.manifest["fingerprint"]["method"] == fp.METHOD_V2
    manifest = made.path / "manifest.json"
    written = json.loads(manifest.read_text())
    written["fingerprint"] = {key: value for key, value in v1.to_json().items() if key != "method"}  # as old manifests
    manifest.write_text(json.dumps(written))
    assert (await verify_backup(settings, load_backup(made.path))).problems == []
    written["fingerprint"]["tables"]["users"]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(written))
    problems = (await verify_backup(settings, load_backup(made.path))).problems
    assert problems == ["table users: same 0 rows but different content (checksum)"]
