"""`tradestack backup create|list|verify|restore|prune`.

A backup is a directory ``<root>/<id>/`` holding the database file(s) and ``manifest.json``:
created_at, dialect, schema revision, app version, the `Fingerprint` (row counts and checksums
per table, journal sums per currency, audit-chain head) and the SHA-256 and size of every file.

- SQLite: SQLite's online backup API copies a consistent snapshot while the API serves. The
  fingerprint is taken from the copy itself.
- PostgreSQL: ``pg_dump`` (custom format) runs on a snapshot exported from a REPEATABLE READ
  transaction, and the fingerprint is computed in that same transaction: both see the same data.
  Its checksums are the hashes of the rows' COPY text (method v3, see `fingerprint`); a restore
  recomputes them on the staged database on two connections sharing one snapshot.
- Optional encryption (AES-256-GCM in chunks, `tradestack.kit.filecrypt`) with the key of
  ``TRADESTACK_ENCRYPTION_KEY``; the manifest records the key id.

`verify` re-checks every file's checksum, decrypts, restores into a scratch database (a temporary
SQLite file, or a new PostgreSQL database on the configured server), compares the fingerprint
with the manifest, runs `check integrity` and verifies the audit chain. `restore` does the same
into a staging database, refuses a non-empty target without ``force``, then swaps the staging
database in (file rename; database renames in one transaction), so a failed restore never leaves
a half-restored target. `prune` keeps daily/weekly/monthly backups and never the last verified one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

import tradestack
from tradestack.audit.service import AuditService
from tradestack.core.clock import Clock, LiveClock
from tradestack.core.errors import ConflictError
from tradestack.kit.config import Settings
from tradestack.kit.crypto import file_keys
from tradestack.kit.db import Database
from tradestack.kit.filecrypt import FileDecryptionError, decrypt_file, encrypt_file
from tradestack.ops.fingerprint import Fingerprint, backup_method, data_tables, fingerprint, fingerprint_concurrently
from tradestack.ops.integrity import IntegrityReport, check_integrity

MANIFEST = "manifest.json"
VERIFICATION = "verification.json"
FORMAT = 1
SQLITE_FILE = "database.sqlite"
PG_FILE = "database.pgdump"
PURPOSE = "tradestack-backup"
RESTORE_JOBS = 4  # pg_restore --jobs, at most the CPU count
CHECK_CONNECTIONS = 2  # connections sharing the checksums of a staged database (and, as many, check integrity's orders pass)
# Session settings of pg_restore's connections (PGOPTIONS): index builds sort in memory, and nothing
# waits for WAL flushes at each commit (a crash mid-restore loses only the staging database, dropped anyway).
RESTORE_SESSION = "-c maintenance_work_mem=256MB -c synchronous_commit=off"
Progress = Callable[[str], None]


class BackupError(ConflictError):
    """A backup cannot be made, verified or restored; the detail says why and what to do."""


@dataclass
class Backup:
    """One backup directory and its manifest."""

    path: Path
    manifest: dict[str, Any]
    verification: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.manifest["created_at"])

    @property
    def verified(self) -> bool:
        return bool(self.verification and self.verification.get("ok"))


@dataclass
class VerifyResult:
    backup: Backup
    problems: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _noop(_: str) -> None:
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backups_root(settings: Settings, override: Path | None = None) -> Path:
    return override if override is not None else settings.data_dir / "backups"


def _url(settings: Settings) -> URL:
    return make_url(settings.effective_database_url)


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and the environment carrying it (not on the command line)."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


# pg_dump/pg_restore --verbose lines worth passing on as progress (one per table's data and per index).
_TOOL_PROGRESS = re.compile(r"(dumping contents of table|processing data for table|creating INDEX|creating CONSTRAINT) (.+)")


async def _run(*argv: str, env: dict[str, str] | None = None, progress: Progress | None = None) -> None:
    """Run a tool; with `progress`, it runs with --verbose and each table/index it reaches is reported."""
    if progress is not None:
        argv = (argv[0], "--verbose", *argv[1:])
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    assert process.stderr is not None  # noqa: S101 - piped above
    kept: list[str] = []
    name = Path(argv[0]).name
    async for raw in process.stderr:
        line = raw.decode(errors="replace").rstrip()
        found = _TOOL_PROGRESS.search(line)
        if found and progress is not None:
            progress(f"{name}: {found.group(1).lower()} {found.group(2)}")
        elif line:
            kept.append(line)
    await process.wait()
    if process.returncode != 0:
        raise BackupError(f"{name} failed ({process.returncode}): {chr(10).join(kept).strip()[-800:]}")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed: install the PostgreSQL client (Debian: postgresql-client)")
    return found


# --- create -------------------------------------------------------------------------------------


def _sqlite_online_copy(source: Path, destination: Path, progress: Progress) -> None:
    if not source.exists():
        raise BackupError(f"no SQLite database at {source}: check TRADESTACK_DATA_DIR / TRADESTACK_DATABASE_URL")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(destination)
    try:
        src.backup(
            dst, pages=4096, progress=lambda _status, remaining, total: progress(f"copied {total - remaining}/{total} pages")
        )
    finally:
        dst.close()
        src.close()


async def _sqlite_fingerprint(path: Path, progress: Progress = _noop) -> Fingerprint:
    engine = create_async_engine(f"sqlite+aiosqlite:///{path.as_posix()}")
    try:
        async with engine.connect() as connection:
            return await fingerprint(connection, backup_method("sqlite"), progress=progress)
    finally:
        await engine.dispose()


async def _pg_dump_with_fingerprint(url: URL, destination: Path, progress: Progress) -> Fingerprint:
    engine = create_async_engine(url, isolation_level="REPEATABLE READ")
    try:
        async with engine.connect() as connection, connection.begin():
            snapshot = (await connection.exec_driver_sql("SELECT pg_export_snapshot()")).scalar_one()
            conninfo, env = _libpq(url)
            progress("pg_dump running on the exported snapshot")
            dump = asyncio.create_task(
                _run(
                    _tool("pg_dump"), "--format=custom", f"--snapshot={snapshot}", f"--file={destination}", conninfo,
                    env=env, progress=progress,
                )
            )  # fmt: skip
            try:
                result = await fingerprint(connection, backup_method("postgresql"), progress=progress)
            finally:
                await dump
            return result
    finally:
        await engine.dispose()


def _make_staging(root: Path, backup_id: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{backup_id}.partial"
    staging.mkdir()
    return staging


def _copy_offsite(final: Path, copy_to: Path) -> None:
    """Copy a finished backup to a second location (a directory or mount), renamed into place when complete."""
    copy_to.mkdir(parents=True, exist_ok=True)
    partial = copy_to / f".{final.name}.partial"
    shutil.copytree(final, partial)
    partial.rename(copy_to / final.name)


def is_s3(location: Path | str | None) -> bool:
    """Whether an off-site location is an S3 URL (``s3://BUCKET[/PREFIX]``) rather than a directory."""
    return isinstance(location, str) and location.startswith("s3://")


def _copy_offsite_s3(final: Path, destination: str, settings: Settings, progress: Progress) -> None:
    """Upload a finished backup to ``s3://BUCKET[/PREFIX]``: its files first, the manifest last.

    A copy interrupted half-way therefore has no manifest (and is no backup). The endpoint is
    ``backup_s3_endpoint_url`` (unset: AWS; any S3-compatible server otherwise), credentials come
    from the usual AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profile, role).
    """
    import boto3
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = destination.removeprefix("s3://").partition("/")
    if not bucket:
        raise BackupError(f"{destination!r} names no bucket: write s3://BUCKET or s3://BUCKET/PREFIX")
    client = boto3.client("s3", endpoint_url=settings.backup_s3_endpoint_url, region_name=settings.backup_s3_region)
    files = sorted((path for path in final.rglob("*") if path.is_file()), key=lambda path: (path.name == MANIFEST, path.name))
    for number, path in enumerate(files, start=1):
        key = "/".join(part for part in (prefix.strip("/"), final.name, path.relative_to(final).as_posix()) if part)
        try:
            client.upload_file(str(path), bucket, key)
        except (Boto3Error, BotoCoreError, ClientError) as exc:
            raise BackupError(f"copying {path.name} to s3://{bucket}/{key} failed: {exc}") from exc
        progress(f"uploaded s3://{bucket}/{key} ({number}/{len(files)} files)")


def _seal(staging: Path, manifest: dict[str, Any], final: Path) -> Path:
    """Write the manifest, then rename the finished directory into place (a backup is never seen half-written)."""
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    staging.rename(final)
    return final


def _file_entry(path: Path) -> dict[str, Any]:
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path)}


async def create_backup(
    settings: Settings,
    root: Path,
    *,
    encrypt: bool = False,
    copy_to: Path | str | None = None,
    clock: Clock | None = None,
    progress: Progress = _noop,
) -> Backup:
    """Back up the configured database into a new directory under `root`.

    `copy_to`: a second location for the finished backup, a directory (or mount) or ``s3://BUCKET[/PREFIX]``.
    """
    now = (clock or LiveClock()).now().astimezone(UTC)
    url = _url(settings)
    dialect = url.get_backend_name()
    backup_id = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{dialect}"
    staging = await asyncio.to_thread(_make_staging, root, backup_id)
    try:
        if dialect == "sqlite":
            name = SQLITE_FILE
            await asyncio.to_thread(_sqlite_online_copy, Path(str(url.database)), staging / name, progress)
            progress("fingerprinting the copy")
            facts = await _sqlite_fingerprint(staging / name, progress)
        elif dialect == "postgresql":
            name = PG_FILE
            facts = await _pg_dump_with_fingerprint(url, staging / name, progress)
        else:
            raise BackupError(f"cannot back up a {dialect} database")
        key_id = None
        if encrypt:
            key_id, keys = file_keys(settings)
            progress("encrypting")
            await asyncio.to_thread(
                encrypt_file, staging / name, staging / f"{name}.enc", key=keys[key_id], key_id=key_id, purpose=PURPOSE
            )
            (staging / name).unlink()
            name = f"{name}.enc"
        manifest = {
            "format": FORMAT,
            "id": backup_id,
            "created_at": now.isoformat(),
            "dialect": dialect,
            "app_version": tradestack.__version__,
            "schema_revision": facts.schema_revision,
            "encrypted": encrypt,
            "key_id": key_id,
            "fingerprint": facts.to_json(),
            "files": [await asyncio.to_thread(_file_entry, staging / name)],
        }
        final = await asyncio.to_thread(_seal, staging, manifest, root / backup_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if is_s3(copy_to):
        progress(f"copying off-site to {copy_to}")
        await asyncio.to_thread(_copy_offsite_s3, final, str(copy_to), settings, progress)
    elif copy_to is not None:
        progress(f"copying off-site to {copy_to}")
        await asyncio.to_thread(_copy_offsite, final, Path(copy_to))
    return Backup(final, manifest)


# --- list ---------------------------------------------------------------------------------------


def load_backup(path: Path) -> Backup:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BackupError(f"{path} is not a backup: it has no {MANIFEST}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise BackupError(f"{manifest_path} is corrupted: {exc}") from None
    verification = None
    with contextlib.suppress(OSError, json.JSONDecodeError):
        verification = json.loads((path / VERIFICATION).read_text())
    return Backup(path, manifest, verification)


def list_backups(root: Path) -> list[Backup]:
    """Backups under `root`, oldest first (half-written ones, starting with a dot, are skipped)."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        if child.is_dir() and not child.name.startswith(".") and (child / MANIFEST).is_file():
            with contextlib.suppress(BackupError):
                found.append(load_backup(child))
    return sorted(found, key=lambda backup: backup.created_at)


def resolve_backup(root: Path, reference: str) -> Backup:
    """A backup by path, by id under `root`, or ``latest``."""
    if reference == "latest":
        backups = list_backups(root)
        if not backups:
            raise BackupError(f"no backups under {root}: create one with `tradestack backup create`")
        return backups[-1]
    path = Path(reference)
    if not path.is_dir():
        path = root / reference
    if not path.is_dir():
        raise BackupError(f"no backup {reference!r} (looked in {root}): see `tradestack backup list`")
    return load_backup(path)


# --- verify and restore -------------------------------------------------------------------------


def _check_files(backup: Backup, problems: list[str]) -> None:
    for entry in backup.manifest.get("files", []):
        path = backup.path / entry["name"]
        if not path.is_file():
            problems.append(f"file {entry['name']} is missing")
        elif path.stat().st_size != entry["bytes"] or sha256_of(path) != entry["sha256"]:
            problems.append(f"file {entry['name']} does not match its SHA-256 in the manifest: the backup is corrupted")


def _plain_file(settings: Settings, backup: Backup, scratch: Path) -> Path:
    """The backup's database file, decrypted into `scratch` when encrypted."""
    name: str = backup.manifest["files"][0]["name"]
    path = backup.path / name
    if not backup.manifest.get("encrypted"):
        return path
    _, keys = file_keys(settings)
    plain = scratch / name.removesuffix(".enc")
    try:
        decrypt_file(path, plain, keys=keys, purpose=PURPOSE)
    except FileDecryptionError as exc:
        plain.unlink(missing_ok=True)
        raise BackupError(str(exc)) from None
    return plain


async def _admin(url: URL) -> asyncpg.Connection:
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    return await asyncpg.connect(admin)


async def _pg_restore_into(url: URL, name: str, dump: Path, progress: Progress = _noop) -> URL:
    admin = await _admin(url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    target = url.set(database=name)
    conninfo, env = _libpq(target)
    env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} {RESTORE_SESSION}".strip()
    jobs = f"--jobs={max(1, min(RESTORE_JOBS, os.cpu_count() or 1))}"  # tables and indexes restored in parallel
    await _run(
        _tool("pg_restore"), "--exit-on-error", "--no-owner", jobs, f"--dbname={conninfo}", str(dump), env=env, progress=progress
    )
    return target


async def _pg_exists(url: URL) -> bool:
    admin = await _admin(url)
    try:
        return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", str(url.database)))
    finally:
        await admin.close()


async def _drop_pg(url: URL, name: str) -> None:
    admin = await _admin(url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _check_staged(settings: Settings, url: str, backup: Backup, result: VerifyResult, progress: Progress) -> None:
    """Fingerprint, integrity and audit chain of a staged database against the manifest.

    The three read the staged database on connections of their own, concurrently (on PostgreSQL
    each is a server process of its own); their problems are reported in this order.
    """
    database = Database(settings.model_copy(update={"database_url": url, "database_replica_url": None}))
    expected = Fingerprint.from_json(backup.manifest["fingerprint"])

    async def facts() -> Fingerprint:
        found = await fingerprint_concurrently(database.engine, expected.method, connections=CHECK_CONNECTIONS, progress=progress)
        progress("row counts, checksums, journal sums and audit head compared with the manifest")
        return found

    async def integrity() -> IntegrityReport:
        found = await check_integrity(database, connections=CHECK_CONNECTIONS)
        progress("check integrity done")
        return found

    try:
        progress("comparing with the manifest, running check integrity and verifying the audit chain (concurrently)")
        found, report, audit = await asyncio.gather(facts(), integrity(), AuditService(database, LiveClock()).verify())
        result.problems.extend(found.differences(expected))
        result.checked["rows"] = sum(table.rows for table in found.tables.values())
        result.problems.extend(f"integrity: {problem}" for problem in report.problems)
        result.checked.update({f"integrity_{name}": count for name, count in report.checked.items()})
        if not audit.ok:
            result.problems.append(f"audit chain: {audit.problem}")
        elif audit.head_hash != expected.audit_head:
            result.problems.append(f"audit chain head {audit.head_hash}, manifest says {expected.audit_head}")
        result.checked["audit_rows"] = audit.checked
    finally:
        await database.dispose()


async def _stage(settings: Settings, backup: Backup, result: VerifyResult, progress: Progress, scratch: Path) -> str | None:
    """Restore the backup into a new staging database and check it; returns its URL (None when it failed early)."""
    progress("checking file checksums")
    await asyncio.to_thread(_check_files, backup, result.problems)
    if result.problems:
        return None
    dialect = backup.manifest["dialect"]
    configured = _url(settings)
    if dialect != configured.get_backend_name():
        raise BackupError(
            f"this is a {dialect} backup but the configured database is {configured.get_backend_name()}: "
            f"point TRADESTACK_DATABASE_URL at a {dialect} database"
        )
    try:
        plain = await asyncio.to_thread(_plain_file, settings, backup, scratch)
    except BackupError as exc:
        result.problems.append(exc.detail)
        return None
    if dialect == "sqlite":
        staged = scratch / "staged.sqlite"
        await asyncio.to_thread(shutil.copyfile, plain, staged)
        url = f"sqlite+aiosqlite:///{staged.as_posix()}"
    else:
        name = f"{configured.database}_restore_{secrets.token_hex(4)}"
        progress(f"pg_restore into {name}")
        try:
            url = (await _pg_restore_into(configured, name, plain, progress)).render_as_string(hide_password=False)
        except BackupError as exc:
            await _drop_pg(configured, name)
            result.problems.append(exc.detail)
            return None
    await _check_staged(settings, url, backup, result, progress)
    return url


async def _discard(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        await _drop_pg(parsed, str(parsed.database))


async def verify_backup(settings: Settings, backup: Backup, *, progress: Progress = _noop) -> VerifyResult:
    """Re-check a backup end to end in a scratch database; records the outcome next to the manifest."""
    result = VerifyResult(backup)
    with tempfile.TemporaryDirectory(prefix="tradestack-verify-", dir=backup.path.parent) as scratch:
        url = await _stage(settings, backup, result, progress, Path(scratch))
        if url is not None:
            await _discard(url)
    verification = {"ok": result.ok, "verified_at": datetime.now(UTC).isoformat(), "problems": result.problems}
    (backup.path / VERIFICATION).write_text(json.dumps(verification, indent=2) + "\n")
    backup.verification = verification
    return result


async def _tables_with_rows(url: URL) -> list[str]:
    """The application tables holding at least one row in the database at `url` (none: it is empty).

    Asks whether each has a row rather than counting them: the answer is the same, and it does
    not read a large database through just to refuse or replace it.
    """
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            existing = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
            found = []
            for table in data_tables():
                if table.name in existing:
                    query = f'SELECT EXISTS (SELECT 1 FROM "{table.name}")'  # noqa: S608 - table names from our metadata
                    if (await connection.exec_driver_sql(query)).scalar_one():
                        found.append(table.name)
            return found
    finally:
        await engine.dispose()


async def restore_backup(settings: Settings, backup: Backup, *, force: bool = False, progress: Progress = _noop) -> VerifyResult:
    """Restore `backup` over the configured database, atomically, after every check passed on a staged copy."""
    target = _url(settings)
    dialect = target.get_backend_name()
    if dialect == "sqlite":
        target_path = Path(str(target.database))
        occupied = await _tables_with_rows(target) if await asyncio.to_thread(target_path.exists) else []
    else:
        occupied = await _tables_with_rows(target) if await _pg_exists(target) else []
    if occupied and not force:
        raise BackupError(
            f"the target database is not empty (rows in {', '.join(occupied)}): restoring would replace it; pass --force to do so"
        )
    result = VerifyResult(backup)
    scratch_parent = target_path.parent if dialect == "sqlite" else None
    if scratch_parent is not None:
        scratch_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tradestack-restore-", dir=scratch_parent) as scratch:
        url = await _stage(settings, backup, result, progress, Path(scratch))
        if not result.ok:
            if url is not None:
                await _discard(url)
            return result
        assert url is not None  # noqa: S101 - _stage returns a URL whenever it found no problem
        progress("swapping the restored database in")
        if dialect == "sqlite":
            await asyncio.to_thread(_swap_sqlite, Path(str(make_url(url).database)), target_path)
        else:
            await _swap_pg(target, str(make_url(url).database))
    return result


def _swap_sqlite(staged: Path, target: Path) -> None:
    """Move the staged file over the target (one rename); the old file's WAL must not be replayed into it."""
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(staged, target)


async def _swap_pg(target: URL, staged: str) -> None:
    """Rename the staged database to the target's name in one transaction (the old one is dropped)."""
    name = str(target.database)
    retired = f"{name}_replaced_{secrets.token_hex(4)}"
    admin = await _admin(target)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name
            )
        async with admin.transaction():
            if exists:
                await admin.execute(f'ALTER DATABASE "{name}" RENAME TO "{retired}"')
            await admin.execute(f'ALTER DATABASE "{staged}" RENAME TO "{name}"')
        if exists:
            await admin.execute(f'DROP DATABASE IF EXISTS "{retired}" WITH (FORCE)')
    finally:
        await admin.close()


# --- prune --------------------------------------------------------------------------------------


def backups_to_keep(backups: Iterable[Backup], *, daily: int, weekly: int, monthly: int) -> set[str]:
    """Grandfather-father-son: the newest backup of each of the last `daily` days, `weekly` ISO weeks
    and `monthly` months that have backups; always the newest backup and the newest verified one."""
    ordered = sorted(backups, key=lambda backup: backup.created_at, reverse=True)
    keep: set[str] = set()
    if ordered:
        keep.add(ordered[0].id)
    verified = [backup for backup in ordered if backup.verified]
    if verified:
        keep.add(verified[0].id)
    for count, bucket in (
        (daily, lambda moment: moment.date().isoformat()),
        (weekly, lambda moment: "{}-W{:02d}".format(*moment.isocalendar()[:2])),
        (monthly, lambda moment: moment.strftime("%Y-%m")),
    ):
        seen: list[str] = []
        for backup in ordered:
            key = bucket(backup.created_at)
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            keep.add(backup.id)
    return keep


def prune_backups(root: Path, *, daily: int = 7, weekly: int = 4, monthly: int = 12, dry_run: bool = False) -> list[Backup]:
    """Delete the backups the policy does not keep; returns them."""
    backups = list_backups(root)
    keep = backups_to_keep(backups, daily=daily, weekly=weekly, monthly=monthly)
    doomed = [backup for backup in backups if backup.id not in keep]
    if not dry_run:
        for backup in doomed:
            shutil.rmtree(backup.path)
    return doomed
