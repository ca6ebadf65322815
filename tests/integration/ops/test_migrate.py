"""`tradestack migrate to-postgres`: a traded embedded installation moves exactly, even when killed half-way."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from tradestack.kit.config import Settings
from tradestack.kit.db import Database
from tradestack.kit.runtime import Runtime
from tradestack.models.marketdata import BarRow
from tradestack.ops.fingerprint import Fingerprint, fingerprint
from tradestack.ops.migrate import MARKER

from ...conftest import Stack  # type: ignore[import-not-found]
from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import trade  # type: ignore[import-not-found]

BARS = 4000


@pytest.fixture
def stack(sqlite_url: str) -> Stack:
    """The source is an embedded installation."""
    return Stack("embedded", sqlite_url, None)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"engine_in_process": True, "paper_slippage_bps": Decimal(0)})


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _copied(target: str) -> int:
    connection = await asyncpg.connect(_dsn(target))
    try:
        if await connection.fetchval("SELECT to_regclass($1)", MARKER) is None:
            return 0
        return int(await connection.fetchval(f"SELECT COALESCE(sum(copied), 0) FROM {MARKER}"))  # noqa: S608 - constant
    finally:
        await connection.close()


async def _fingerprint(url: str, tmp_path: Path) -> Fingerprint:
    database = Database(Settings(database_url=url, data_dir=tmp_path))
    try:
        async with database.engine.connect() as connection:
            return await fingerprint(connection)
    finally:
        await database.dispose()


@pytest.mark.slow
async def test_migrate_a_traded_installation_killed_half_way_then_resumed(
    settings: Settings, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser, postgres_url: str, tmp_path: Path
) -> None:
    runtime: Runtime = app.state.runtime
    await trade(client, runtime, make_user)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    async with runtime.database.session() as session:
        session.add_all(
            BarRow(symbol="BTC-USD", resolution="1m", ts=start + timedelta(minutes=i), open=Decimal("1.5"), high=Decimal(2),
                   low=Decimal(1), close=Decimal("1.25"), volume=Decimal(i), source="test")
            for i in range(BARS)
        )  # fmt: skip
    tradestack = str(Path(sys.executable).parent / "tradestack")
    env = {**os.environ, "TRADESTACK_DATABASE_URL": settings.effective_database_url, "TRADESTACK_DATA_DIR": str(tmp_path)}
    command = [tradestack, "migrate", "to-postgres", postgres_url]

    dry = subprocess.run([*command, "--dry-run"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert dry.returncode == 0, dry.stderr
    assert f"bars: {BARS} rows" in dry.stdout

    process = subprocess.Popen([*command, "--batch-size", "40"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(1200):
            if await _copied(postgres_url) > BARS // 3 or process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        assert process.poll() is None, "the migration finished before it could be interrupted"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    interrupted = await _copied(postgres_url)
    assert 0 < interrupted < BARS

    resumed = subprocess.run([*command, "--batch-size", "500"], env=env, capture_output=True, text=True, timeout=240, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "migrated (resumed)" in resumed.stdout
    assert "check integrity all match" in resumed.stdout

    source = await _fingerprint(settings.effective_database_url, tmp_path)
    target = await _fingerprint(postgres_url, tmp_path)
    assert target.differences(source) == []
    assert target.tables["bars"].rows == BARS
    assert target.tables["fills"].rows == 1
    assert target.audit_rows > 0

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 1
    assert "already holds" in again.stderr
