"""Fixtures shared by the whole suite: fresh databases on SQLite and PostgreSQL, Redis, the app.

PostgreSQL and Redis are expected at 127.0.0.1 (override with TRADESTACK_TEST_POSTGRES_URL and
TRADESTACK_TEST_REDIS_URL). When they are unreachable a test that needs them is skipped on a
developer's machine and FAILS when CI=true.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy.engine import make_url

from tradestack.api.app import create_app
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("TRADESTACK_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TRADESTACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(what: str, why: str) -> None:
    """Fail in CI, skip elsewhere."""
    message = f"{what} is unreachable ({why})"
    if IN_CI:
        pytest.fail(f"{message}; with CI=true the services must be running", pytrace=False)
    pytest.skip(message)


def skip_outside_ci(why: str) -> None:
    """Skip a test this machine's set-up cannot run; with CI=true fail instead, so CI never passes it unchecked."""
    if IN_CI:
        pytest.fail(f"{why}; with CI=true every test must run", pytrace=False)
    pytest.skip(why)


def metric_sample(name: str, **labels: str) -> float:
    """The value of the sample `name` with `labels` in the process's Prometheus registry (0 when it has none yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _probe_postgres() -> str | None:
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.close()
    return None


async def _probe_redis() -> str | None:
    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.aclose()
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the PostgreSQL server (database `test`)."""
    problem = asyncio.run(_probe_postgres())
    if problem:
        unavailable(f"PostgreSQL at {POSTGRES_URL}", problem)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The URL of the Redis server."""
    problem = asyncio.run(_probe_redis())
    if problem:
        unavailable(f"Redis at {REDIS_URL}", problem)
    return REDIS_URL


@pytest.fixture
async def postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """A brand-new, empty PostgreSQL database, dropped after the test."""
    name = f"ts_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_asyncpg_dsn(postgres_server))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    admin = await asyncpg.connect(_asyncpg_dsn(postgres_server))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A brand-new SQLite database file."""
    return f"sqlite+aiosqlite:///{(tmp_path / 'tradestack.db').as_posix()}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh empty database on each backend in turn."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def database(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database on each backend in turn."""
    db = Database(Settings(database_url=database_url, data_dir=tmp_path))
    await migrations.upgrade(db.engine)
    yield db
    await db.dispose()


@dataclass(frozen=True)
class Stack:
    """The backends one app test runs on."""

    name: str
    database_url: str
    redis_url: str | None


@pytest.fixture(params=["embedded", "production"])
def stack(request: pytest.FixtureRequest) -> Stack:
    """Embedded (SQLite + in-process) and production (PostgreSQL + Redis) backends in turn."""
    if request.param == "embedded":
        return Stack("embedded", request.getfixturevalue("sqlite_url"), None)
    return Stack("production", request.getfixturevalue("postgres_url"), request.getfixturevalue("redis_server"))


# Cheap argon2 and generous limits keep the suite fast; tests about limits set their own.
FAST_TEST_SETTINGS = {
    "argon2_time_cost": 1,
    "argon2_memory_kib": 8192,
    "rate_limit_auth": "100000/minute",
    "login_ip_limits": "100000/minute",
    "rate_limit_per_ip": "100000/minute",
    "rate_limit_per_principal": "100000/minute",
    # No feed runs in these apps, so readiness must not wait for one (market-data tests set their own).
    "marketdata_feeds": [],
}


@pytest.fixture
def settings(stack: Stack, tmp_path: Path) -> Settings:
    return Settings(
        database_url=stack.database_url,
        redis_url=stack.redis_url,
        redis_namespace=f"test-{uuid.uuid4().hex[:12]}",  # nothing in the shared Redis leaks between tests
        data_dir=tmp_path,
        log_json=True,
        **FAST_TEST_SETTINGS,
    )  # type: ignore[arg-type]


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app on a migrated database, with its lifespan running."""
    db = Database(settings)
    await migrations.upgrade(db.engine)
    await db.dispose()
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        yield http


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TRADESTACK_* variables leak into the test."""
    for key in list(os.environ):
        if key.startswith("TRADESTACK_") and not key.startswith("TRADESTACK_TEST_"):
            monkeypatch.delenv(key)
