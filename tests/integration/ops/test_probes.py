"""Background probes (database_up, redis_up, disk, pool wait, cache hits) and /api/health/external."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import text as sql

from tradestack.api.app import create_app
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database, create_engine
from tradestack.kit.runtime import Runtime
from tradestack.ops import probes
from tradestack.ops.probes import probe_dependencies, probe_once, start_probes


def metric(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def closed_port() -> int:
    """A local port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class _VenueClock(BaseHTTPRequestHandler):
    """Answers Binance's public `GET /time` like the venue does."""

    def do_GET(self) -> None:
        body = json.dumps({"serverTime": 1_767_225_600_000}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def fake_venue() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _VenueClock)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v3"
    server.shutdown()
    server.server_close()


async def external_and_metrics(configured: Settings) -> tuple[httpx.Response, str]:
    """GET /api/health/external, then /metrics, on an app running with `configured`."""
    db = Database(configured)
    await migrations.upgrade(db.engine)
    await db.dispose()
    application = create_app(configured)
    transport = httpx.ASGITransport(app=application)
    lifespan = application.router.lifespan_context(application)
    async with lifespan, httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/api/health/external")
        return response, (await http.get("/metrics")).text


async def test_external_health_names_an_unreachable_ccxt_venue(settings: Settings) -> None:
    configured = settings.model_copy(
        update={"marketdata_feeds": ["ccxt"], "ccxt_api_urls": {"public": f"http://127.0.0.1:{closed_port()}/api/v3"}}
    )
    response, _ = await external_and_metrics(configured)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "ExternalDependencyDownError"
    assert body["detail"] == "unreachable: ccxt:binance"
    venue = next(target for target in body["targets"] if target["name"] == "ccxt:binance")
    assert venue["ok"] is False
    assert venue["required"] is True
    assert venue["last_success"] is None
    assert "ExchangeNotAvailable" in venue["error"]
    assert metric("broker_connected", venue="ccxt:binance") == 0


async def test_external_health_is_ok_when_the_venue_answers(settings: Settings, fake_venue: str) -> None:
    configured = settings.model_copy(update={"marketdata_feeds": ["ccxt"], "ccxt_api_urls": {"public": fake_venue}})
    response, metrics = await external_and_metrics(configured)
    assert response.status_code == 200, response.text
    body = response.json()
    venue = next(target for target in body["targets"] if target["name"] == "ccxt:binance")
    assert venue["ok"] is True
    assert venue["error"] is None
    assert venue["latency_ms"] > 0
    assert venue["last_success"] is not None
    # The market-data heartbeat is reported (nothing publishes here) but does not gate the answer.
    feed = next(target for target in body["targets"] if target["name"] == "marketdata")
    assert feed["ok"] is False
    assert feed["required"] is False
    assert 'broker_connected{venue="ccxt:binance"} 1.0' in metrics


async def test_external_health_without_venues_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health/external")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "targets": []}


async def test_probes_set_up_gauges_and_resources(app: FastAPI, client: httpx.AsyncClient, tmp_path: Path) -> None:
    runtime: Runtime = app.state.runtime
    (tmp_path / "blob").write_bytes(b"x" * 4096)
    await probe_once(runtime)
    assert metric("database_up") == 1
    if runtime.settings.redis_url is not None:
        assert metric("redis_up") == 1
    assert metric("data_dir_filesystem_size_bytes") > metric("data_dir_filesystem_avail_bytes") > 0  # type: ignore[operator]
    assert metric("data_dir_used_bytes") >= 4096  # type: ignore[operator]
    assert metric("memory_limit_bytes") > 0  # type: ignore[operator]
    # An engine of its own role: the app's background tasks check out "primary" connections at any time.
    engine = create_engine(runtime.database.url, runtime.settings, role="probe-test")
    try:
        waits_before = metric("database_pool_wait_seconds_count", database="probe-test") or 0
        async with engine.connect() as connection:
            await connection.execute(sql("SELECT 1"))
        assert metric("database_pool_wait_seconds_count", database="probe-test") == waits_before + 1
    finally:
        await engine.dispose()
    hits, misses = metric("cache_requests_total", result="hit") or 0, metric("cache_requests_total", result="miss") or 0
    await runtime.cache.set("probe-test", b"1")
    assert await runtime.cache.get("probe-test") == b"1"
    assert await runtime.cache.get("probe-test-absent") is None
    assert metric("cache_requests_total", result="hit") == hits + 1
    assert metric("cache_requests_total", result="miss") == misses + 1
    text = (await client.get("/metrics")).text
    for name in ("database_up", "database_pool_wait_seconds_bucket", "data_dir_filesystem_avail_bytes", "cache_requests_total"):
        assert name in text


async def test_database_and_redis_down_set_their_gauges_to_zero(settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file-not-a-directory"
    blocker.write_text("")
    broken = settings.model_copy(
        update={
            "database_url": f"sqlite+aiosqlite:///{blocker}/tradestack.db"
            if settings.effective_database_url.startswith("sqlite")
            else f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/nothing",
            "redis_url": f"redis://127.0.0.1:{closed_port()}/0" if settings.redis_url else None,
        }
    )
    runtime = Runtime.open(broken)
    try:
        results = await probe_dependencies(runtime)
    finally:
        await runtime.close()
    assert results["database"] is False
    assert metric("database_up") == 0
    if settings.redis_url is not None:
        assert results["redis"] is False
        assert metric("redis_up") == 0


async def test_the_probes_stop_even_when_a_probe_swallows_its_cancellation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe's Redis call was seen to swallow the stop's cancellation: the loop ran on and every stop waited out
    `Runtime.close`'s 15 s step bound. The stop ends the loop by its event and cancels again."""
    swallowed = 0

    async def slow_probe(runtime: Runtime) -> None:
        nonlocal swallowed
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            swallowed += 1  # and returns as if nothing happened

    monkeypatch.setattr(probes, "probe_once", slow_probe)
    runtime = Runtime.open(Settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    try:
        await start_probes(runtime)
        await asyncio.sleep(0.1)  # inside the first probe
        stopping = asyncio.create_task(runtime.closers.pop()())
        done, _ = await asyncio.wait({stopping}, timeout=5)  # not wait_for: its own cancellation would end the loop
        assert done, "the probes' stop did not return: the loop outlived its swallowed cancellation"
        assert swallowed == 1
    finally:
        await runtime.close()
