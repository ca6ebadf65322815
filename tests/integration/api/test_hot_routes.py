"""Hot routes (/api/health, quotes, /predict): answered without FastAPI's router, and exactly as the routes answer.

Each request is sent twice: once as it comes (the hot path answers it or hands it over), once with
``app.dependency_overrides`` set, which sends every request through FastAPI's route. Status, body
and the headers that describe the answer must match, refusals included.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from tradestack.api.hot import HotRoutes
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import QUOTE_KEY, MarketDataService
from tradestack.signals.service import PredictorService, SignalService

from ..conftest import MakeUser

COMPARED_HEADERS = ("content-type", "www-authenticate", "allow", "ratelimit-limit")


def _unused() -> None:  # pragma: no cover - only its presence in dependency_overrides matters
    """A dependency no route has: overriding it sends every request through the full route."""


def hot_routes(app: FastAPI) -> HotRoutes:
    hot = app.router.middleware_stack
    assert isinstance(hot, HotRoutes)
    return hot


async def both_ways(app: FastAPI, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> list[Any]:
    answers = []
    for full_route in (False, True):
        if full_route:
            app.dependency_overrides[_unused] = _unused
        try:
            response = await client.request(method, url, **kwargs)
        finally:
            app.dependency_overrides.clear()
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        if isinstance(body, dict):
            body.pop("latency_ms", None)
        answers.append((response.status_code, body, {name: response.headers.get(name) for name in COMPARED_HEADERS}))
    return answers


async def test_hot_routes_skip_the_router_and_hand_unusual_requests_over(
    app: FastAPI, client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    hot = hot_routes(app)
    assert {("GET", "/api/health"), ("GET", "/api/market/quotes"), ("POST", "/predict")} <= set(hot.routes)
    routed: list[str] = []
    inner = hot._inner

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        routed.append(scope["path"])
        await inner(scope, receive, send)

    user = await make_user()
    await MarketDataService(runtime).seed_instruments()
    hot._inner = counting
    assert (await client.get("/api/health")).status_code == 200
    quotes = await client.get("/api/market/quotes", params={"symbols": "AAPL"}, headers=user.headers)
    assert quotes.status_code == 200, quotes.text
    assert routed == []
    other = await client.get("/api/market/quotes", params={"symbols": "AAPL", "x": "1"}, headers=user.headers)
    assert other.status_code == 200
    assert (await client.get("/api/version")).status_code == 200
    assert routed == ["/api/market/quotes", "/api/version"]


async def test_quotes_and_health_answer_as_their_routes(
    app: FastAPI, client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    user, admin = await make_user(), await make_user(Role.ADMIN)
    await MarketDataService(runtime).seed_instruments()
    await runtime.cache.set(QUOTE_KEY + "AAPL", orjson.dumps({"symbol": "AAPL", "bid": "1.5", "ask": "1.6"}))
    bearer = user.headers
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/health", {}),
        ("GET", "/api/market/quotes?symbols=AAPL,MSFT", {"headers": bearer}),
        ("GET", "/api/market/quotes?symbols=aapl", {"headers": admin.headers}),
        ("GET", "/api/market/quotes?symbols=AAPL,NOPE", {"headers": bearer}),
        ("GET", "/api/market/quotes?symbols=", {"headers": bearer}),
        ("GET", "/api/market/quotes?symbols=" + "A" * 4001, {"headers": bearer}),
        ("GET", "/api/market/quotes?symbols=" + ",".join(["AAPL"] * 101), {"headers": bearer}),
        ("GET", "/api/market/quotes", {"headers": bearer}),
        ("GET", "/api/market/quotes?symbols=AAPL&symbols=MSFT", {"headers": bearer}),
        ("GET", "/api/market/quotes?symbols=AAPL", {}),
        ("GET", "/api/market/quotes?symbols=AAPL", {"headers": {"Authorization": "Bearer not-a-token"}}),
        ("GET", "/api/market/quotes?symbols=AAPL", {"headers": {"Authorization": "Basic abc"}}),
        ("GET", "/api/market/quotes?symbols=AAPL", {"headers": {"X-API-Key": "ts_nope_nope"}}),
        ("GET", "/api/market/quotes", {}),
    ]
    for method, url, kwargs in requests:
        hot, routed = await both_ways(app, client, method, url, **kwargs)
        assert hot == routed, url


async def test_predict_answers_as_its_route(
    app: FastAPI, client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    user = await make_user()
    await MarketDataService(runtime).seed_instruments()
    book = {"bids": [[str(100 - i), "5"] for i in range(10)], "asks": [[str(101 + i), str(5 + i)] for i in range(10)]}
    previous = {"bids": [[str(100 - i), "4"] for i in range(10)], "asks": [[str(101 + i), "6"] for i in range(10)]}
    valid = {"symbol": "BTC-USD", "book": book, "previous": previous}
    no_model = await both_ways(app, client, "POST", "/predict", json=valid, headers=user.headers)
    assert no_model[0] == no_model[1]
    assert no_model[0][0] == 409
    trained = await PredictorService(runtime).train(snapshots=3_000, horizon=10, folds=2)
    await SignalService(runtime).promote(trained.model.version)
    json_type = {**user.headers, "Content-Type": "application/json"}
    requests: list[dict[str, Any]] = [
        {"json": valid, "headers": user.headers},
        {"json": {"symbol": "BTC-USD", "book": book}, "headers": user.headers},
        {"json": {"symbol": "BTC-USD", "book": {"bids": book["asks"], "asks": book["bids"]}}, "headers": user.headers},
        {"json": {"symbol": "BTC-USD", "book": book, "extra": 1}, "headers": user.headers},
        {"json": {"symbol": "BTC-USD", "book": {"bids": [["x", "1"]], "asks": book["asks"]}}, "headers": user.headers},
        {"json": {"symbol": "BTC-USD", "previous": book}, "headers": user.headers},
        {"content": b"{not json", "headers": json_type},
        {"content": b"", "headers": json_type},
        {"content": b'{"symbol": "BTC-USD", "book": {"bids": [[NaN, 1]], "asks": []}}', "headers": json_type},
        {"content": orjson.dumps(valid), "headers": user.headers},  # no content type
        {"content": orjson.dumps(valid), "headers": {**user.headers, "Content-Type": "application/json; charset=utf-8"}},
        {"json": valid},
        {"json": {"symbol": 5}},
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        # Odd bodies the model accepts or refuses in its own words.
        {
            "json": {"symbol": "BTC-USD", "book": {"bids": [[True, 1], *book["bids"][1:]], "asks": book["asks"]}},
            "headers": user.headers,
        },
        {"json": {"symbol": "BTC-USD", "book": {"bids": book["bids"] * 6, "asks": book["asks"]}}, "headers": user.headers},
        {"json": {"symbol": "B" * 33, "book": book}, "headers": user.headers},
        {
            "json": {"symbol": "BTC-USD", "book": {"bids": book["bids"], "asks": [[101, 5], *book["asks"][1:]]}},
            "headers": user.headers,
        },
        {"json": {"symbol": "BTC-USD", "book": book, "previous": None}, "headers": user.headers},
        {"json": {"symbol": "BTC-USD", "book": {"bids": [["100", "5", "1"]], "asks": book["asks"]}}, "headers": user.headers},
    ]
    for kwargs in requests:
        hot, routed = await both_ways(app, client, "POST", "/predict", **kwargs)
        assert hot == routed, kwargs
    answer = (await client.post("/predict", json=valid, headers=user.headers)).json()
    assert set(answer) == {
        "symbol", "probability_up", "probability_down", "direction", "features", "model_version", "model_type",
        "horizon_snapshots", "book_ts", "cached", "latency_ms",
    }  # fmt: skip
    assert answer["model_version"] == trained.model.version
    assert answer["latency_ms"] > 0


@pytest.mark.parametrize("path", ["/api/health", "/api/market/quotes"])
async def test_head_and_other_methods_take_the_route(app: FastAPI, client: httpx.AsyncClient, path: str) -> None:
    hot, routed = await both_ways(app, client, "DELETE", path)
    assert hot == routed
    assert hot[0] == 405


async def test_quotes_are_read_with_the_limits_in_one_round_trip_on_redis(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user()
    await MarketDataService(runtime).seed_instruments()
    quote = orjson.dumps({"symbol": "AAPL", "bid": "1", "ask": "2"})
    await runtime.cache.set(QUOTE_KEY + "AAPL", quote)
    cache = runtime.cache
    reads: list[list[str]] = []
    real_get_many = cache.get_many

    async def get_many(keys: Any) -> Any:
        reads.append(list(keys))
        return await real_get_many(keys)

    monkeypatch.setattr(cache, "get_many", get_many)
    answer = await client.get("/api/market/quotes", params={"symbols": "aapl,MSFT"}, headers=user.headers)
    assert answer.status_code == 200, answer.text
    assert answer.content == b'{"quotes":[' + quote + b'],"unavailable":["MSFT"]}'
    if runtime.rate_limiter.counts_in_process:
        assert reads == [[QUOTE_KEY + "AAPL", QUOTE_KEY + "MSFT"]]  # in process: no round trip to save
    else:
        assert reads == []  # read by the rate-limit middleware's script, with the limits
    # A request the hot path hands over (an extra parameter) reads them itself.
    reads.clear()
    other = await client.get("/api/market/quotes", params={"symbols": "AAPL", "x": "1"}, headers=user.headers)
    assert other.status_code == 200
    assert reads == [[QUOTE_KEY + "AAPL"]]
