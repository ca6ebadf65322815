"""Backups on both stacks: create while serving, verify, wipe, restore; corrupted backups refused."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from tradestack.audit.service import AuditService
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database
from tradestack.kit.runtime import Runtime
from tradestack.ops.backup import Backup, BackupError, create_backup, list_backups, restore_backup, sha256_of, verify_backup
from tradestack.ops.fingerprint import Fingerprint, backup_method, fingerprint
from tradestack.ops.integrity import check_integrity

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import trade  # type: ignore[import-not-found]

OTHER_KEY = "A" * 43 + "="  # base64 of 32 bytes, not the configured key


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The engine in process, and no equity point recorded after the start-up one: the recorder would otherwise write
    `equity_points` 60 s after the app started, and on a slow machine that can fall between the backup and the live
    fingerprint `backed_up` compares it with."""
    update = {"engine_in_process": True, "paper_slippage_bps": Decimal(0), "equity_record_seconds": 86_400}
    return settings.model_copy(update=update)


async def live_fingerprint(settings: Settings) -> Fingerprint:
    database = Database(settings)
    try:
        async with database.engine.connect() as connection:
            return await fingerprint(connection, backup_method(connection.dialect.name))
    finally:
        await database.dispose()


async def wipe(settings: Settings) -> None:
    """Lose the database: delete the SQLite file, or drop the PostgreSQL database."""
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{url.database}{suffix}").unlink(missing_ok=True)
        return
    admin = await asyncpg.connect(url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False))
    try:
        await admin.execute(f'DROP DATABASE "{url.database}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def backed_up(
    settings: Settings, make_user: MakeUser, client: httpx.AsyncClient, app: FastAPI, tmp_path: Path
) -> tuple[Backup, Fingerprint]:
    """A backup taken while the API serves, after real trading; and the live database's fingerprint."""
    runtime: Runtime = app.state.runtime
    await trade(client, runtime, make_user)
    backup = await create_backup(settings, tmp_path / "backups", copy_to=tmp_path / "offsite")
    return backup, await live_fingerprint(settings)


async def test_backup_verify_wipe_restore_round_trip(
    backed_up: tuple[Backup, Fingerprint], settings: Settings, tmp_path: Path
) -> None:
    backup, live = backed_up
    manifest = backup.manifest
    expected = Fingerprint.from_json(manifest["fingerprint"])
    assert expected.differences(live) == []
    assert expected.tables["orders"].rows == 2
    assert expected.tables["fills"].rows == 1
    assert expected.audit_rows > 0
    assert expected.audit_head is not None
    assert Decimal(expected.journal_sums["USD"]) == 0  # every entry balances: the sum over the journal is zero
    assert manifest["schema_revision"] == ",".join(migrations.head_revisions())
    assert (tmp_path / "offsite" / backup.id / "manifest.json").is_file()
    assert [b.id for b in list_backups(tmp_path / "backups")] == [backup.id]

    result = await verify_backup(settings, backup)
    assert result.ok, result.problems
    assert result.checked["audit_rows"] == expected.audit_rows
    assert json.loads((backup.path / "verification.json").read_text())["ok"] is True

    # The target still holds the data: refused without force.
    with pytest.raises(BackupError, match="not empty"):
        await restore_backup(settings, backup)

    await wipe(settings)
    restored = await restore_backup(settings, backup)
    assert restored.ok, restored.problems
    after = await live_fingerprint(settings)
    assert after.differences(expected) == []
    database = Database(settings)
    try:
        assert (await check_integrity(database)).ok
        audit = await AuditService(database, Runtime.open(settings).clock).verify()
    finally:
        await database.dispose()
    assert audit.ok
    assert audit.head_hash == expected.audit_head

    # And over a non-empty target with force.
    forced = await restore_backup(settings, backup, force=True)
    assert forced.ok, forced.problems
    assert (await live_fingerprint(settings)).differences(expected) == []


async def test_a_corrupted_backup_is_refused_by_verify_and_restore(
    backed_up: tuple[Backup, Fingerprint], settings: Settings
) -> None:
    backup, live = backed_up
    data = backup.path / backup.manifest["files"][0]["name"]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    result = await verify_backup(settings, backup)
    assert not result.ok
    assert "does not match its SHA-256" in result.problems[0]
    restored = await restore_backup(settings, backup, force=True)
    assert not restored.ok
    assert (await live_fingerprint(settings)).differences(live) == []  # target untouched


async def test_encrypted_backup_round_trip_wrong_key_and_tampering(
    settings: Settings, make_user: MakeUser, client: httpx.AsyncClient, app: FastAPI, tmp_path: Path
) -> None:
    await trade(client, app.state.runtime, make_user)
    backup = await create_backup(settings, tmp_path / "backups", encrypt=True)
    stored = backup.path / backup.manifest["files"][0]["name"]
    assert stored.name.endswith(".enc")
    assert stored.read_bytes().startswith(b"TSENC1")
    assert (await verify_backup(settings, backup)).ok

    wrong = settings.model_copy(update={"encryption_key": SecretStr(OTHER_KEY)})
    result = await verify_backup(wrong, backup)
    assert not result.ok
    assert "which is not configured" in result.problems[0]

    # A flipped byte whose manifest checksum was "fixed" up is still caught by the GCM tag.
    raw = bytearray(stored.read_bytes())
    raw[-20] ^= 0x01
    stored.write_bytes(bytes(raw))
    manifest = json.loads((backup.path / "manifest.json").read_text())
    manifest["files"][0]["sha256"] = sha256_of(stored)
    (backup.path / "manifest.json").write_text(json.dumps(manifest))
    backup.manifest = manifest
    tampered = await verify_backup(settings, backup)
    assert not tampered.ok
    assert "failed authentication" in tampered.problems[0]
