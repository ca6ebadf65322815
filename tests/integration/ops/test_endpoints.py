"""Health, readiness, database health, version and metrics on both stacks."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from tradestack.kit import migrations
from tradestack.kit.runtime import Runtime


async def test_health_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_everything_is_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert {name for name, check in body["checks"].items() if check["ok"]} == {"database", "cache", "migrations"}


async def test_not_ready_while_draining(app: FastAPI, client: httpx.AsyncClient) -> None:
    app.state.drain.begin()
    response = await client.get("/api/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "NotReadyError"
    assert body["detail"] == "failing checks: draining"
    assert body["checks"]["database"]["ok"] is True


async def test_not_ready_when_schema_is_behind_head(app: FastAPI, client: httpx.AsyncClient) -> None:
    runtime: Runtime = app.state.runtime
    await migrations.downgrade(runtime.database.engine, "base")
    response = await client.get("/api/ready")
    assert response.status_code == 503
    body = response.json()
    assert "migrations" in body["detail"]
    assert "tradestack db upgrade" in body["checks"]["migrations"]["detail"]


async def test_not_ready_when_database_is_unreachable(app: FastAPI, client: httpx.AsyncClient) -> None:
    runtime: Runtime = app.state.runtime
    url = runtime.database.engine.url
    if url.get_backend_name() == "sqlite":
        blocker = Path(str(url.database)).with_name("a-file-not-a-directory")
        blocker.write_text("")
        broken = f"sqlite+aiosqlite:///{blocker}/tradestack.db"
    else:
        broken = url.set(port=1).render_as_string(hide_password=False)
    from tradestack.kit.config import Settings
    from tradestack.kit.db import Database

    original = runtime.database
    runtime.database = Database(Settings(database_url=broken, database_pool_timeout_seconds=1))
    try:
        response = await client.get("/api/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["checks"]["database"]["ok"] is False
        assert "database" in body["detail"]
        health = await client.get("/api/health/database")
        assert health.status_code == 503
        assert health.json()["primary"]["ok"] is False
        assert (await client.get("/api/health")).status_code == 200
    finally:
        await runtime.database.dispose()
        runtime.database = original


async def test_database_health_and_its_alias(client: httpx.AsyncClient) -> None:
    for path in ("/api/health/database", "/api/db/health"):
        response = await client.get(path)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert body["primary"]["ok"] is True
        assert body["primary"]["latency_ms"] > 0
        assert body["primary"]["pool"]["size"] >= 1
        assert body["primary"]["dialect"] in {"sqlite", "postgresql"}
        assert body["replica"] is None


async def test_version_reports_package_and_schema(client: httpx.AsyncClient) -> None:
    import tradestack

    body = (await client.get("/api/version")).json()
    assert body["version"] == tradestack.__version__
    assert body["schema_revision"] == body["schema_head"] == migrations.head_revisions()[0]
    assert body["environment"] == "development"


async def test_metrics_show_route_templates(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await client.get("/api/health")
    await client.get("/api/no-such-thing/123")
    text = (await client.get("/metrics")).text
    assert 'api_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/health",status_class="2xx"}' in text
    assert 'api_requests_total{method="GET",route="unmatched",status_class="4xx"}' in text
    assert "/api/no-such-thing/123" not in text
    assert "database_connections_active" in text


async def test_metric_labels_stay_bounded_for_odd_methods(client: httpx.AsyncClient) -> None:
    await client.request("FOO123", "/api/health")
    text = (await client.get("/metrics")).text
    assert "FOO123" not in text
    assert 'api_requests_total{method="OTHER",route="/api/health",status_class="4xx"}' in text
