"""Security headers, trusted hosts, CORS, body size limit and per-IP rate limits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tradestack.api.app import create_app
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database

Open = Callable[..., Any]


@pytest.fixture
def open_app(settings: Settings) -> Open:
    """Start an app with some settings changed; yields a client with a chosen client IP."""

    @asynccontextmanager
    async def open_with(
        client_ip: str = "10.1.2.3", base_url: str = "http://testserver", **changes: Any
    ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        changed = settings.model_copy(update=changes)
        db = Database(changed)
        await migrations.upgrade(db.engine)
        await db.dispose()
        app = create_app(changed)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(client_ip, 1234))
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
                yield app, http

    return open_with


HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "cross-origin-opener-policy": "same-origin",
}


async def test_security_headers_on_success_and_error(client: httpx.AsyncClient) -> None:
    for path, status in (("/api/health", 200), ("/api/nothing", 404)):
        response = await client.get(path)
        assert response.status_code == status
        for name, value in HEADERS.items():
            assert response.headers[name] == value
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "strict-transport-security" not in response.headers


async def test_hsts_only_over_https(open_app: Open) -> None:
    async with open_app(base_url="https://testserver") as (_, http):
        response = await http.get("/api/health")
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")


async def test_untrusted_host_is_refused(open_app: Open) -> None:
    async with open_app(allowed_hosts=["api.example.com", "*.internal.example"]) as (_, http):
        bad = await http.get("/api/health", headers={"Host": "evil.example"})
        assert bad.status_code == 400
        assert bad.json() == {
            "error": "BadRequestError",
            "detail": "host 'evil.example' is not allowed: set TRADESTACK_ALLOWED_HOSTS",
        }
        assert bad.headers["x-request-id"]
        assert (await http.get("/api/health", headers={"Host": "api.example.com:8443"})).status_code == 200
        assert (await http.get("/api/health", headers={"Host": "a.internal.example"})).status_code == 200


async def test_body_over_the_limit_is_413_declared_or_streamed(open_app: Open) -> None:
    async with open_app(max_request_body_bytes=1024) as (_, http):
        declared = await http.post("/api/auth/login", content=b"x" * 2048, headers={"content-type": "application/json"})
        assert declared.status_code == 413
        assert "1024 bytes" in declared.json()["detail"]

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"y" * 512

        streamed = await http.post("/api/auth/login", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        small = await http.post("/api/auth/login", json={"email": "a@example.com", "password": "x"})
        assert small.status_code == 401


async def test_per_ip_limit_counts_down_then_429(open_app: Open) -> None:
    ip = f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    limit = f"3/{uuid.uuid4().int % 50 + 10} minutes"  # a fresh window in the shared Redis
    async with open_app(client_ip=ip, rate_limit_per_ip=limit) as (app, http):
        remaining = [(await http.get("/api/auth/me")).headers["ratelimit-remaining"] for _ in range(3)]
        assert remaining == ["2", "1", "0"]
        refused = await http.get("/api/auth/me")
        assert refused.status_code == 429
        assert refused.json()["error"] == "RateLimitedError"
        assert int(refused.headers["retry-after"]) >= 1
        assert (await http.get("/api/health")).status_code == 200  # probes are exempt
        other = httpx.ASGITransport(app=app, client=("10.200.0.1", 1))
        async with httpx.AsyncClient(transport=other, base_url="http://testserver") as second:
            assert (await second.get("/api/auth/me")).status_code == 401  # another IP is unaffected


async def test_auth_routes_get_the_stricter_limit(open_app: Open) -> None:
    ip = f"10.8.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    limit = f"2/{uuid.uuid4().int % 50 + 10} minutes"
    async with open_app(client_ip=ip, rate_limit_auth=limit) as (_, http):
        codes = [(await http.post("/api/auth/refresh", json={"refresh_token": "x"})).status_code for _ in range(3)]
        assert codes == [401, 401, 429]
        assert "/api/auth" in (await http.post("/api/auth/refresh", json={"refresh_token": "x"})).json()["detail"]


async def test_cors_allows_only_listed_origins(open_app: Open) -> None:
    async with open_app(cors_origins=["https://app.example.com"]) as (_, http):
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        allowed = await http.options("/api/auth/login", headers={"Origin": "https://app.example.com", **preflight})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        refused = await http.options("/api/auth/login", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in refused.headers


async def test_limiter_outage_fails_open(app: FastAPI, client: httpx.AsyncClient) -> None:
    class BrokenLimiter:
        async def hit(self, *_: object) -> None:
            raise ConnectionError("redis is down")

    runtime = app.state.runtime
    original, runtime.rate_limiter = runtime.rate_limiter, BrokenLimiter()
    try:
        assert (await client.get("/api/version")).status_code == 200
        assert (await client.get("/api/auth/me")).status_code == 401  # reached the app
    finally:
        runtime.rate_limiter = original
