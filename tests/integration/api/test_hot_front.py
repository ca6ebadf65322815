"""HotFront: hot-route requests served at the entrance of the middleware stack, with everything the layers give.

A request is sent once through `HotFront` and once with ``app.dependency_overrides`` set (which sends
it through every layer and FastAPI's route); the answers must agree, headers included.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from starlette.types import Receive, Scope, Send

from tradestack.api.hot import HotFront
from tradestack.kit.logging import ACCESS_LOG
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import QUOTE_KEY, MarketDataService

from ..conftest import MakeUser
from .conftest import Open
from .test_security import fresh_ip, fresh_limit

QUOTES = "/api/market/quotes?symbols=AAPL"
VARYING = {"x-request-id", "ratelimit-remaining", "ratelimit-reset", "content-length", "date"}


def _unused() -> None:  # pragma: no cover - only its presence in dependency_overrides matters
    """A dependency no route has: overriding it sends every request through the whole stack."""


class Counted:
    """Counts the requests `HotFront` hands to the whole stack behind it."""

    def __init__(self, app: FastAPI) -> None:
        front = app.middleware_stack
        assert isinstance(front, HotFront)
        self.front, self.inner, self.paths = front, front.app, list[str]()
        front.app = self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.inner(scope, receive, send)


async def counted(app: FastAPI, client: httpx.AsyncClient) -> Counted:
    assert (await client.get("/api/health")).status_code == 200  # builds the middleware stack
    return Counted(app)


async def both_ways(app: FastAPI, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> list[Any]:
    answers = []
    for whole_stack in (False, True):
        if whole_stack:
            app.dependency_overrides[_unused] = _unused
        try:
            response = await client.request(method, url, **kwargs)
        finally:
            app.dependency_overrides.clear()
        headers = {name: value for name, value in response.headers.items() if name not in VARYING}
        answers.append((response.status_code, response.content, headers, "x-request-id" in response.headers))
    return answers


async def test_hot_requests_get_every_header_and_the_same_answer(
    app: FastAPI, client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    user = await make_user()
    await MarketDataService(runtime).seed_instruments()
    await runtime.cache.set(QUOTE_KEY + "AAPL", orjson.dumps({"symbol": "AAPL", "bid": "1.5", "ask": "1.6"}))
    stack = await counted(app, client)
    urls = [QUOTES, QUOTES + ",NOPE", QUOTES, QUOTES, "/api/health"]
    headers: list[dict[str, str]] = [user.headers, user.headers, {}, {"Authorization": "Bearer not-a-token"}, {}]
    for url, sent in zip(urls, headers, strict=True):
        front, whole = await both_ways(app, client, "GET", url, headers=sent)
        assert front == whole, url
        assert front[3], url
    assert stack.paths == [url.split("?")[0] for url in urls]  # the rounds with overrides only
    stack.paths.clear()
    answer = await client.get(QUOTES, headers={**user.headers, "X-Request-ID": "trace-42"})
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "trace-42"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["ratelimit-limit"]
    assert stack.paths == []


async def test_a_revoked_token_is_refused_on_the_hot_path(
    app: FastAPI, client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    user = await make_user()
    await MarketDataService(runtime).seed_instruments()
    stack = await counted(app, client)
    assert (await client.get(QUOTES, headers=user.headers)).status_code == 200
    assert (await client.post("/api/auth/logout", headers=user.headers)).status_code == 204
    refused = await client.get(QUOTES, headers=user.headers)
    assert refused.status_code == 401
    assert refused.json()["error"] == "AuthenticationError"
    assert "revoked" in refused.json()["detail"]
    assert stack.paths == ["/api/auth/logout"]


async def test_hot_requests_are_logged_and_counted(
    app: FastAPI, client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    await MarketDataService(runtime).seed_instruments()
    stack = await counted(app, client)
    lines: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(ACCESS_LOG, "request", lambda request_id, **fields: lines.append((request_id, fields)))
    labels = {"method": "GET", "route": "/api/market/quotes", "status_class": "4xx"}
    before = REGISTRY.get_sample_value("api_requests_total", labels) or 0.0
    answer = await client.get(QUOTES, headers={"X-Request-ID": "log-me"})
    assert answer.status_code == 401
    assert REGISTRY.get_sample_value("api_requests_total", labels) == before + 1
    assert [(request_id, fields["route"], fields["status"]) for request_id, fields in lines] == [
        ("log-me", "/api/market/quotes", 401)
    ]
    assert stack.paths == []


async def test_the_rate_limit_refuses_hot_requests_with_429(open_app: Open) -> None:
    async with open_app(client_ip=fresh_ip(), rate_limit_per_ip=fresh_limit(2)) as (app, http):
        await MarketDataService(app.state.runtime).seed_instruments()
        stack = await counted(app, http)  # /api/health is not limited
        statuses = [(await http.get(QUOTES)).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        refused = await http.post("/predict", json={"symbol": "BTC-USD"})
        assert refused.status_code == 429
        assert refused.json()["error"] == "RateLimitedError"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["x-content-type-options"] == "nosniff"
        assert "x-request-id" in refused.headers
        assert stack.paths == []


async def test_a_bad_predict_body_gets_a_clear_422(app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    stack = await counted(app, client)
    answer = await client.post("/predict", json={"symbol": 5, "book": {"bids": "no"}}, headers=user.headers)
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "ValidationFailedError"
    assert "body.symbol" in body["detail"]
    assert "body.book.bids" in body["detail"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert stack.paths == []  # handed to the route by the hot path, behind HotFront


async def test_requests_a_layer_treats_specially_take_the_whole_stack(open_app: Open) -> None:
    async with open_app(
        client_ip=fresh_ip(),
        base_url="http://api.example.com",
        allowed_hosts=["api.example.com"],
        cors_origins=["https://app.example.com"],
        max_request_body_bytes=64,
    ) as (app, http):
        stack = await counted(app, http)
        assert (await http.get(QUOTES)).status_code == 401
        assert stack.paths == []
        wrong_host = await http.get(QUOTES, headers={"Host": "evil.example.com"})
        assert wrong_host.status_code == 400
        cors = await http.get(QUOTES, headers={"Origin": "https://app.example.com"})
        assert cors.headers["access-control-allow-origin"] == "https://app.example.com"
        large = await http.post("/predict", content=b"{" + b" " * 100 + b"}", headers={"Content-Type": "application/json"})
        assert large.status_code == 413
        assert stack.paths == [QUOTES.split("?")[0], QUOTES.split("?")[0], "/predict"]


async def test_an_unknown_layer_sends_every_request_through_the_whole_stack(app: FastAPI) -> None:
    class Extra:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await self.app(scope, receive, send)

    app.add_middleware(Extra)
    front = app.build_middleware_stack()
    assert isinstance(front, HotFront)
    assert front._layers is None


async def test_a_failing_hot_request_gets_the_error_boundary_answer(
    app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user()
    stack = await counted(app, client)
    hot = app.router.middleware_stack
    route, _ = hot.routes[("GET", "/api/market/quotes")]

    async def broken(_request: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setitem(hot.routes, ("GET", "/api/market/quotes"), (route, broken))
    answer = await client.get(QUOTES, headers={**user.headers, "X-Request-ID": "bug-1"})
    assert answer.status_code == 500
    assert answer.json()["error"] == "InternalServerError"
    assert "bug-1" in answer.json()["detail"]
    assert answer.headers["x-request-id"] == "bug-1"
    assert stack.paths == []


async def test_fastapi_telemetry_asks_nothing_per_request(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # FastAPI's native OpenTelemetry asks the global providers (reading environment variables) on every request
    # unless it is turned off; we export Prometheus metrics instead.
    from opentelemetry import _logs, metrics, trace

    asked: list[str] = []
    for module, name in ((trace, "get_tracer_provider"), (metrics, "get_meter_provider"), (_logs, "get_logger_provider")):
        real = getattr(module, name)

        def counting(*args: Any, _real: Any = real, _name: str = name) -> Any:
            asked.append(_name)
            return _real(*args)

        monkeypatch.setattr(module, name, counting)
    for _ in range(3):
        assert (await client.get("/api/health")).status_code == 200
    assert asked == []
