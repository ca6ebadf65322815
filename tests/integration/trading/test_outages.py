"""Redis and PostgreSQL outages under order load, with throwaway servers started from the installed binaries.

Production layout (API + engine processes) on a PostgreSQL and a Redis of the test's own, so they
can be killed. While Redis is away requests are still authenticated (from the database, logout
included) and nothing is a 500; while PostgreSQL is away requests are answered 503 with
Retry-After; every order answered 201 exists afterwards, and the engine is alive and matching.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tradestack.domain.marketdata import Quote
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.runner import Publisher

from .processes import (  # type: ignore[import-not-found]
    Processes,
    cli_ok,
    free_port,
    process_env,
    read_books,
    trader_session,
    wait_logged,
    wait_ready,
)

pytestmark = pytest.mark.slow
ENGINE_STARTED = "paper matching engine started"
OUTAGE_SECONDS = 5.0


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its binaries as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL cluster of the test's own on a free port, stopped with ``pg_ctl -m immediate``."""

    bin: Path
    root: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(_as_postgres([str(self.bin / args[0]), *args[1:]]), check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "-t", "60", "start")

    def kill(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    binaries = _postgres_bin()
    if binaries is None:
        pytest.fail("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (scripts/ensure-services.sh installs them)")
    root = Path(tempfile.mkdtemp(prefix="ts-outage-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = ThrowawayPostgres(binaries, root)
    server.init()
    server.start()
    yield server
    with contextlib.suppress(subprocess.SubprocessError):
        server.kill()
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class ThrowawayRedis:
    """A Redis of the test's own on a free port, without persistence; killed with SIGKILL."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server not installed"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket_to(self.port):
                return
            time.sleep(0.05)
        raise AssertionError("throwaway redis did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None


@contextlib.contextmanager
def socket_to(port: int) -> Iterator[None]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        yield


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.close()


@dataclass
class Sent:
    status: int
    retry_after: str | None
    body: dict[str, Any]
    at: float


@dataclass
class Load:
    """Limit orders from a few tasks without pause; a 503 is retried with the same client_order_id."""

    base: str
    headers: dict[str, str]
    account_id: str
    answers: list[Sent] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)  # order id -> client_order_id
    stopping: bool = False

    async def run(self, tasks: int = 3) -> None:
        async with httpx.AsyncClient(base_url=self.base, headers=self.headers, timeout=15) as http:
            await asyncio.gather(*(self._loop(http, n) for n in range(tasks)))

    async def _loop(self, http: httpx.AsyncClient, n: int) -> None:
        number = 0
        while not self.stopping:
            number += 1
            body = {
                "account_id": self.account_id,
                "client_order_id": f"load-{n}-{number}-{uuid.uuid4().hex[:6]}",
                "symbol": "BTC-USD",
                "side": "buy",
                "type": "limit",
                "quantity": "0.001",
                "limit_price": "39000.00",  # rests below the market: acknowledged, never filled
                "time_in_force": "gtc",
            }
            while True:
                try:
                    response = await http.post("/api/orders", json=body)
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
                    continue
                data = response.json()
                self.answers.append(Sent(response.status_code, response.headers.get("retry-after"), data, time.monotonic()))
                if response.status_code in (200, 201):
                    self.acknowledged[data["id"]] = body["client_order_id"]
                if response.status_code != 503 or self.stopping:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.02)


async def _pump_quotes(settings: Settings, stop: asyncio.Event) -> None:
    """BTC-USD quotes every 0.1 s through a Redis of the test's own; publishing fails quietly while it is away."""
    runtime = Runtime.open(settings)
    try:
        while not stop.is_set():
            quote = Quote(
                "BTC-USD", Decimal(40000), Decimal(40001), Decimal(10), Decimal(10), Decimal(40000), Decimal(1), datetime.now(UTC)
            )
            with contextlib.suppress(Exception):
                await Publisher(runtime).publish("test", quote)
            await asyncio.sleep(0.1)
    finally:
        with contextlib.suppress(Exception):
            await runtime.close()


async def _filled(http: httpx.AsyncClient, order_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    order: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await http.get(f"/api/orders/{order_id}")
        if response.status_code == 200:
            order = response.json()
            if order["status"] == "filled":
                return order
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order_id} was not filled after the outages: {order}")


async def test_redis_and_postgres_outages_under_order_load(
    tmp_path: Path, processes: Processes, throwaway_postgres: ThrowawayPostgres, throwaway_redis: ThrowawayRedis
) -> None:
    env = process_env(
        tmp_path,
        TRADESTACK_DATABASE_URL=throwaway_postgres.url,
        TRADESTACK_REDIS_URL=throwaway_redis.url,
        TRADESTACK_MARKETDATA_FEEDS="[]",
        TRADESTACK_DATABASE_POOL_TIMEOUT_SECONDS="2",
    )
    cli_ok(env, tmp_path, "db", "upgrade")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = processes.start("api", ["serve", "api", "--port", str(port)], env)
    await wait_ready(base, api)
    engine = processes.start("engine", ["serve", "engine", "--shard", "0"], env)
    await wait_logged(engine, ENGINE_STARTED)
    headers, account = await trader_session(base, env, tmp_path, "1000000")
    other_headers, _ = await trader_session(base, env, tmp_path, "1000")
    pump_settings = Settings(database_url=throwaway_postgres.url, redis_url=throwaway_redis.url, data_dir=tmp_path / "pump")
    stop_pump = asyncio.Event()
    pump = asyncio.create_task(_pump_quotes(pump_settings, stop_pump))

    load = Load(base, headers, account)
    trading = asyncio.create_task(load.run())
    async with httpx.AsyncClient(base_url=base, timeout=15) as http:
        await asyncio.sleep(2)
        # A session logged out before the outage must stay logged out while Redis is away.
        assert (await http.post("/api/auth/logout", json={}, headers=other_headers)).status_code == 204

        throwaway_redis.kill()
        redis_down = time.monotonic()
        await asyncio.sleep(1)
        me = await http.get("/api/auth/me", headers=headers)
        assert me.status_code == 200, me.text  # authenticated from the database
        assert (await http.get("/api/auth/me", headers=other_headers)).status_code == 401
        ready = await http.get("/api/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["cache"]["detail"].startswith("degraded")
        await asyncio.sleep(OUTAGE_SECONDS - 1)
        throwaway_redis.start()
        redis_back = time.monotonic()
        await asyncio.sleep(2)

        throwaway_postgres.kill()
        database_down = time.monotonic()
        await asyncio.sleep(OUTAGE_SECONDS)
        database_away = [a for a in load.answers if a.at > database_down + 1]
        throwaway_postgres.start()
        database_back = time.monotonic()
        await asyncio.sleep(3)
        load.stopping = True
        await asyncio.wait_for(trading, 60)

        statuses = sorted({a.status for a in load.answers})
        assert 500 not in statuses, [a.body for a in load.answers if a.status >= 500][:3]
        assert set(statuses) <= {201, 503}, statuses
        during_redis = [a for a in load.answers if redis_down < a.at < redis_back]
        assert during_redis, "no order was answered while Redis was away"
        assert [a for a in database_away if a.status == 503], "no 503 while the database was away"
        for answer in database_away:
            if answer.status == 503:
                assert answer.retry_after is not None
                assert answer.body["error"] == "ServiceUnavailableError"
        assert [a for a in load.answers if a.at > database_back and a.status == 201], "no order accepted after recovery"

        # Every acknowledged order is in the database.
        books = await read_books(throwaway_postgres.url, tmp_path)
        missing = sorted(set(load.acknowledged) - set(books.orders))
        assert missing == [], f"{len(missing)} acknowledged orders are missing"

        # The engine survived both outages and matches: a marketable order fills.
        assert engine.poll() is None, "the engine exited"
        marketable = {
            "account_id": account,
            "client_order_id": f"after-{uuid.uuid4().hex[:8]}",
            "symbol": "BTC-USD",
            "side": "buy",
            "type": "limit",
            "quantity": "0.001",
            "limit_price": "40100.00",
            "time_in_force": "gtc",
        }
        placed = await http.post("/api/orders", json=marketable, headers=headers)
        assert placed.status_code == 201, placed.text
        http.headers.update(headers)
        await _filled(http, placed.json()["id"])
    stop_pump.set()
    await pump
    assert api.poll() is None
    assert engine.poll() is None
