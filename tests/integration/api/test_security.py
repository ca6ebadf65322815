"""Security headers, trusted hosts, CORS, body size limit and per-IP rate limits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from prometheus_client import REGISTRY
from starlette.responses import Response

from tradestack.api import security
from tradestack.api.app import create_app
from tradestack.api.security import RATE_LIMIT_EXEMPT_PATHS, host_is_allowed
from tradestack.core.errors import ConfigurationError
from tradestack.identity.permissions import Role
from tradestack.identity.service import Caller, identity_session
from tradestack.kit.config import Settings

from .conftest import Open


def fresh_ip() -> str:
    """A client address no other test (or earlier run against the shared Redis) has used."""
    value = uuid.uuid4().int
    return f"10.{value % 250}.{(value >> 8) % 250}.{(value >> 16) % 250 + 1}"


def fresh_limit(amount: int) -> str:
    """``amount`` per a window length unlikely to be shared with another test in the same Redis."""
    return f"{amount}/{uuid.uuid4().int % 500 + 10} minutes"


def rate_limited(label: str) -> float:
    return REGISTRY.get_sample_value("rate_limited_requests_total", {"limit": label}) or 0.0


HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
    "cross-origin-opener-policy": "same-origin",
}


# --- security headers ----------------------------------------------------------------------------


async def test_security_headers_on_success_and_error(client: httpx.AsyncClient, settings: Settings) -> None:
    for path, status in (("/api/health", 200), ("/api/nothing", 404)):
        response = await client.get(path)
        assert response.status_code == status
        for name, value in HEADERS.items():
            assert response.headers.get_list(name) == [value]
        assert response.headers["content-security-policy"] == settings.content_security_policy
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "strict-transport-security" not in response.headers  # plain http


async def test_headers_the_app_set_are_not_duplicated(app: FastAPI, client: httpx.AsyncClient) -> None:
    @app.get("/probe/framed")
    async def framed() -> Response:
        return Response("embed me", headers={"X-Frame-Options": "SAMEORIGIN"})

    response = await client.get("/probe/framed")
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_hsts_only_over_https(open_app: Open) -> None:
    async with open_app(base_url="https://testserver") as (_, http):
        secure = await http.get("/api/health")
        missing = await http.get("/api/nothing")
    assert secure.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert missing.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    async with open_app(base_url="https://testserver", hsts_seconds=0) as (_, http):
        assert "strict-transport-security" not in (await http.get("/api/health")).headers
    async with open_app(base_url="http://testserver", hsts_seconds=600) as (_, http):
        assert "strict-transport-security" not in (await http.get("/api/health")).headers


# --- trusted hosts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("api.example.com", True),
        ("API.Example.com:8443", True),
        ("a.internal.example", True),
        ("a.b.internal.example", True),
        ("internal.example", False),
        ("evil.example", False),
        ("api.example.com.evil.example", False),
        ("", False),
    ],
)
def test_host_patterns(host: str, allowed: bool) -> None:
    assert host_is_allowed(host, ["api.example.com", "*.internal.example"]) is allowed


def test_host_wildcard_and_ipv6() -> None:
    assert host_is_allowed("anything:1", ["*"])
    assert host_is_allowed("[::1]:8000", ["[::1]"])
    assert not host_is_allowed("[::2]:8000", ["[::1]"])


async def test_untrusted_host_is_refused(open_app: Open) -> None:
    async with open_app(allowed_hosts=["api.example.com", "*.internal.example"]) as (_, http):
        bad = await http.get("/api/health", headers={"Host": "evil.example"})
        assert bad.status_code == 400
        assert bad.json() == {
            "error": "BadRequestError",
            "detail": "host 'evil.example' is not allowed: set TRADESTACK_ALLOWED_HOSTS",
        }
        assert bad.headers["x-request-id"]  # the request-context middleware stays outermost
        assert (await http.get("/api/health", headers={"Host": "api.example.com:8443"})).status_code == 200
        assert (await http.get("/api/health", headers={"Host": "a.internal.example"})).status_code == 200


# --- body size -----------------------------------------------------------------------------------


async def test_body_over_the_limit_is_413_declared_or_streamed(open_app: Open) -> None:
    async with open_app(max_request_body_bytes=1024) as (app, http):
        seen: list[int] = []

        @app.post("/probe/upload")
        async def upload(request: Request) -> dict[str, int]:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                seen.append(size)
            return {"size": size}

        declared = await http.post("/probe/upload", content=b"x" * 2048)
        assert declared.status_code == 413
        assert declared.json() == {
            "error": "PayloadTooLargeError",
            "detail": "request body is larger than the limit of 1024 bytes (TRADESTACK_MAX_REQUEST_BODY_BYTES): "
            "send a smaller body",
        }
        assert declared.headers["x-request-id"]
        assert seen == []  # refused before the app ran

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b"y" * 400

        streamed = await http.post("/probe/upload", content=chunks())
        assert streamed.status_code == 413
        assert streamed.json()["error"] == "PayloadTooLargeError"
        assert max(seen) <= 1024  # the app never saw more than the limit

        exact = await http.post("/probe/upload", content=b"z" * 1024)
        assert exact.status_code == 200
        assert exact.json() == {"size": 1024}


async def test_streamed_json_body_over_the_limit_is_413_not_400(open_app: Open) -> None:
    async with open_app(max_request_body_bytes=1024) as (_, http):

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"y" * 512

        streamed = await http.post("/api/auth/login", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert streamed.json()["error"] == "PayloadTooLargeError"
        small = await http.post("/api/auth/login", json={"email": f"{uuid.uuid4().hex}@example.com", "password": "x"})
        assert small.status_code == 401


# --- rate limits ---------------------------------------------------------------------------------


async def test_per_ip_limit_counts_down_then_429(open_app: Open) -> None:
    ip = fresh_ip()
    limit = fresh_limit(3)
    before = rate_limited("ip")
    async with open_app(client_ip=ip, rate_limit_per_ip=limit) as (app, http):
        answers = [await http.get("/api/auth/me") for _ in range(3)]
        assert [answer.status_code for answer in answers] == [401, 401, 401]
        assert [answer.headers["ratelimit-remaining"] for answer in answers] == ["2", "1", "0"]
        assert all(answer.headers["ratelimit-limit"] == "3" for answer in answers)
        assert all(int(answer.headers["ratelimit-reset"]) >= 1 for answer in answers)

        refused = await http.get("/api/users")
        assert refused.status_code == 429
        body = refused.json()
        assert body["error"] == "RateLimitedError"
        assert body["detail"].startswith("more than 3 requests per ")
        assert f"client {ip}: retry after " in body["detail"]
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit-limit"] == "3"
        assert refused.headers["ratelimit-remaining"] == "0"
        assert int(refused.headers["ratelimit-reset"]) >= 1
        assert refused.headers["x-request-id"]
        assert refused.headers["x-content-type-options"] == "nosniff"
        assert rate_limited("ip") == before + 1

        for path in ("/api/health", "/api/ready", "/api/version", "/metrics"):
            probe = await http.get(path)
            assert probe.status_code != 429, path  # load-balancer probes are exempt
            assert "ratelimit-limit" not in probe.headers

        other = httpx.ASGITransport(app=app, client=(fresh_ip(), 1))
        async with httpx.AsyncClient(transport=other, base_url="http://testserver") as second:
            assert (await second.get("/api/auth/me")).status_code == 401  # another IP is unaffected


async def test_an_exempt_load_generator_meets_no_per_ip_limit_but_still_its_users_limits(open_app: Open) -> None:
    ip, email = fresh_ip(), f"load-{uuid.uuid4().hex[:10]}@example.com"
    tight = {
        "rate_limit_per_ip": fresh_limit(2),
        "rate_limit_auth": fresh_limit(2),
        "login_ip_limits": fresh_limit(2),
        "rate_limit_per_principal": fresh_limit(3),
    }
    async with open_app(client_ip=ip, rate_limit_exempt_ips=[ip], **tight) as (app, http):
        async with identity_session(app.state.runtime, Caller()) as service:
            await service.create_user(email, "correct horse battery staple", Role.TRADER)
        anonymous = [await http.get("/api/users") for _ in range(4)]
        assert [answer.status_code for answer in anonymous] == [401] * 4
        assert all("ratelimit-limit" not in answer.headers for answer in anonymous)
        sign_ins = [
            await http.post("/api/auth/login", json={"email": email, "password": "correct horse battery staple"})
            for _ in range(4)
        ]
        assert [answer.status_code for answer in sign_ins] == [200] * 4  # neither /api/auth/* nor sign-ins per IP
        bearer = {"Authorization": f"Bearer {sign_ins[-1].json()['access_token']}"}
        answers = [await http.get("/api/auth/me", headers=bearer) for _ in range(4)]
        assert [answer.status_code for answer in answers] == [200, 200, 200, 429]  # the user's own limit applies
        assert answers[0].headers["ratelimit-limit"] == "3"

        other = httpx.ASGITransport(app=app, client=(fresh_ip(), 1))
        async with httpx.AsyncClient(transport=other, base_url="http://testserver") as second:
            assert [(await second.get("/api/users")).status_code for _ in range(3)] == [401, 401, 429]


def test_exempt_paths_are_the_probes() -> None:
    assert frozenset({"/api/health", "/api/ready", "/api/version", "/metrics"}) == RATE_LIMIT_EXEMPT_PATHS


async def test_auth_routes_get_the_stricter_limit(open_app: Open) -> None:
    ip = fresh_ip()
    before = rate_limited("auth_ip")
    async with open_app(client_ip=ip, rate_limit_auth=fresh_limit(2), rate_limit_per_ip=fresh_limit(50)) as (_, http):
        answers = [await http.post("/api/auth/refresh", json={"refresh_token": "x"}) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [401, 401, 429]
        assert [answer.headers["ratelimit-remaining"] for answer in answers] == ["1", "0", "0"]  # the tighter limit
        assert answers[0].headers["ratelimit-limit"] == "2"
        assert f"for /api/auth/* from client {ip}: retry after" in answers[2].json()["detail"]
        assert rate_limited("auth_ip") == before + 1

        elsewhere = await http.get("/api/users")  # the per-IP limit still has room
        assert elsewhere.status_code == 401
        assert elsewhere.headers["ratelimit-limit"] == "50"


async def test_tightest_limit_includes_the_endpoints_own(app: FastAPI, client: httpx.AsyncClient) -> None:
    @app.get("/probe/principal-limited")
    async def principal_limited(request: Request) -> dict[str, bool]:
        request.state.rate_limit_headers = {"RateLimit-Limit": "10", "RateLimit-Remaining": "4", "RateLimit-Reset": "30"}
        return {"ok": True}

    @app.get("/probe/own-headers")
    async def own_headers() -> Response:
        return Response("mine", headers={"RateLimit-Limit": "7", "RateLimit-Remaining": "6", "RateLimit-Reset": "9"})

    limited = await client.get("/probe/principal-limited")
    assert (limited.headers["ratelimit-limit"], limited.headers["ratelimit-remaining"]) == ("10", "4")
    own = await client.get("/probe/own-headers")
    assert own.headers.get_list("ratelimit-limit") == ["7"]
    assert own.headers.get_list("ratelimit-remaining") == ["6"]


class _BrokenLimiter:
    counts_in_process = False

    async def hit(self, *_: object) -> None:
        raise ConnectionError("redis is down")

    async def hit_many(self, *_: object) -> None:
        raise ConnectionError("redis is down")


class _RecordingLog:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))


async def test_limiter_outage_fails_open(app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = _RecordingLog()
    monkeypatch.setattr(security, "log", recorded)
    runtime = app.state.runtime
    monkeypatch.setattr(runtime, "rate_limiter", _BrokenLimiter())
    first = await client.get("/api/users")
    assert first.status_code == 401  # reached the app
    assert "ratelimit-limit" not in first.headers
    assert (await client.get("/api/auth/me")).status_code == 401
    assert len(recorded.warnings) == 1  # throttled: one warning per interval, not one per request
    event, fields = recorded.warnings[0]
    assert event == "rate_limiter_unavailable"
    assert fields["error"] == "ConnectionError"
    assert "fail open" in fields["action"]


def test_invalid_limit_setting_is_refused_at_start(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="TRADESTACK_RATE_LIMIT_AUTH"):
        create_app(settings.model_copy(update={"rate_limit_auth": "plenty"}))


# --- CORS ----------------------------------------------------------------------------------------


async def test_cors_allows_only_listed_origins(open_app: Open) -> None:
    async with open_app(cors_origins=["https://app.example.com"]) as (_, http):
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, x-api-key"}
        allowed = await http.options("/api/auth/login", headers={"Origin": "https://app.example.com", **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "access-control-allow-credentials" not in allowed.headers
        assert allowed.headers["x-content-type-options"] == "nosniff"

        refused = await http.options("/api/auth/login", headers={"Origin": "https://evil.example", **preflight})
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        assert refused.json()["error"] == "BadRequestError"
        assert "TRADESTACK_CORS_ORIGINS" in refused.json()["detail"]

        simple = await http.get("/api/health", headers={"Origin": "https://app.example.com"})
        assert simple.headers["access-control-allow-origin"] == "https://app.example.com"
        exposed = {name.strip().lower() for name in simple.headers["access-control-expose-headers"].split(",")}
        assert {"x-request-id", "retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= exposed


async def test_no_cors_without_configured_origins(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in response.headers
