"""/predict on both stacks: provided and live books, cache per book, rate limit per key, metrics, refusals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from prometheus_client import REGISTRY

from tradestack.domain.synthetic import OrderBookSimulator
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.schemas import book_json
from tradestack.marketdata.service import BOOK_KEY, MarketDataService
from tradestack.signals import predictor
from tradestack.signals.features.orderbook import Books
from tradestack.signals.service import PredictorService, SignalService

from ..conftest import MakeUser


async def _promote_a_model(runtime: Runtime) -> None:
    """Seed the instruments, train a small order-book model and promote it."""
    await MarketDataService(runtime).seed_instruments()
    trained = await PredictorService(runtime).train(snapshots=3_000, horizon=10, folds=2)
    await SignalService(runtime).promote(trained.model.version)


def _book() -> dict[str, list[list[str]]]:
    """Ten levels a side around 100/101, five of each."""
    return {"bids": [[str(100 - i), "5"] for i in range(10)], "asks": [[str(101 + i), "5"] for i in range(10)]}


def _levels(book: dict[str, list[list[str]]]) -> dict[str, list[list[str]]]:
    return {"bids": book["bids"][:10], "asks": book["asks"][:10]}


async def test_predict_from_provided_and_live_books(client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser) -> None:
    user = await make_user()
    await MarketDataService(runtime).seed_instruments()
    simulator = OrderBookSimulator("BTC-USD", Decimal(30000), Decimal("0.01"), seed=5, depth=20)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    first, second = (book_json(simulator.step(start + timedelta(seconds=i))) for i in range(2))

    refused = await client.post("/predict", json={"symbol": "BTC-USD", "book": _levels(second)}, headers=user.headers)
    assert refused.status_code == 409, refused.text
    assert "train-lob" in refused.json()["detail"]

    trained = await PredictorService(runtime).train(snapshots=3_000, horizon=10, folds=2)
    assert trained.evaluation.chosen in {"logistic", "lightgbm"}
    await SignalService(runtime).promote(trained.model.version)

    body = {"symbol": "BTC-USD", "book": _levels(second), "previous": _levels(first)}
    provided = await client.post("/predict", json=body, headers=user.headers)
    assert provided.status_code == 200, provided.text
    answer = provided.json()
    assert answer["model_version"] == trained.model.version
    assert answer["probability_up"] + answer["probability_down"] == pytest.approx(1.0)
    # Features and probability equal the predictor applied here to the same two snapshots.
    arrays = [[[float(level[i]) for level in b[side][:10]] for b in (first, second)] for side in ("bids", "asks") for i in (0, 1)]
    books = Books(*(np.array(a).T.copy() for a in arrays))
    x = predictor.features(books)[-1:]
    assert list(answer["features"].values()) == pytest.approx(list(x[0]), rel=1e-12)
    text = (trained.directory / "model.txt").read_text()
    assert answer["probability_up"] == pytest.approx(float(predictor.model_from_text(text).probability_up(x)[0]), rel=1e-12)

    # The live book, as the feed publishes it: answered once per book, then from the cache.
    await runtime.cache.set(BOOK_KEY + "BTC-USD", orjson.dumps(second))
    before = REGISTRY.get_sample_value("predictions_total", {"model": trained.model.version}) or 0.0
    live = [(await client.post("/predict", json={"symbol": "btc-usd"}, headers=user.headers)).json() for _ in range(3)]
    assert [a["cached"] for a in live] == [False, True, True]
    assert live[0]["book_ts"] == second["ts"]
    assert REGISTRY.get_sample_value("predictions_total", {"model": trained.model.version}) == before + 3
    third = book_json(simulator.step(start + timedelta(seconds=2)))
    await runtime.cache.set(BOOK_KEY + "BTC-USD", orjson.dumps(third))
    fresh = (await client.post("/predict", json={"symbol": "BTC-USD"}, headers=user.headers)).json()
    assert fresh["cached"] is False
    assert fresh["book_ts"] == third["ts"]


async def test_predict_refusals_and_the_rate_limit_per_caller(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    user, other = await make_user(), await make_user()
    await _promote_a_model(runtime)
    book = _book()
    crossed = {"bids": book["asks"], "asks": book["bids"]}
    bad = await client.post("/predict", json={"symbol": "BTC-USD", "book": crossed}, headers=user.headers)
    assert bad.status_code == 422
    short = {"bids": book["bids"][:3], "asks": book["asks"][:3]}
    assert (await client.post("/predict", json={"symbol": "BTC-USD", "book": short}, headers=user.headers)).status_code == 422
    no_book = await client.post("/predict", json={"symbol": "ETH-USD"}, headers=user.headers)
    assert no_book.status_code == 422
    assert "no order book" in no_book.json()["detail"]
    assert (await client.post("/predict", json={"symbol": "NOPE"}, headers=user.headers)).status_code == 422

    # 100 per minute per caller (the seed's limit): the refusals above counted too.
    statuses = [
        (await client.post("/predict", json={"symbol": "BTC-USD", "book": book}, headers=user.headers)).status_code
        for _ in range(97)
    ]
    assert statuses == [200] * 96 + [429]
    assert (await client.post("/predict", json={"symbol": "BTC-USD", "book": book}, headers=other.headers)).status_code == 200


async def test_the_predict_limit_is_counted_with_the_other_limits_in_one_go(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user()
    await _promote_a_model(runtime)
    book = _book()
    limiter = runtime.rate_limiter
    counted: list[list[str]] = []
    real_hit_many, real_hit_now = limiter.hit_many, limiter.hit_now

    async def hit_many(checks: Any, reads: Any = ()) -> Any:
        counted.append([identifiers[0] for _, identifiers in checks])
        return await real_hit_many(checks, reads)

    def hit_now(limit: str, *identifiers: str) -> Any:
        counted.append([identifiers[0]])
        return real_hit_now(limit, *identifiers)

    async def second_trip(*args: Any) -> Any:
        raise AssertionError("the /predict limit cost a round trip of its own")

    monkeypatch.setattr(limiter, "hit_many", hit_many)
    monkeypatch.setattr(limiter, "hit_now", hit_now)
    monkeypatch.setattr(limiter, "hit", second_trip)
    for via in ("hot path", "route"):
        counted.clear()
        # A content type with a charset hands the request to FastAPI's route: both count it once, in the middleware.
        kind = "application/json" if via == "hot path" else "application/json; charset=utf-8"
        content = orjson.dumps({"symbol": "BTC-USD", "book": book})
        answer = await client.post("/predict", content=content, headers={**user.headers, "content-type": kind})
        assert answer.status_code == 200, (via, answer.text)
        assert answer.headers["ratelimit-limit"] == "100"
        if limiter.counts_in_process:
            assert counted == [["ip"], ["principal"], ["predict"]], via
        else:
            assert counted == [["ip", "principal", "predict"]], via


async def test_a_configured_predict_limit_is_counted_once_per_request(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    user = await make_user()
    await _promote_a_model(runtime)
    window = f"{uuid.uuid4().int % 50 + 10} minutes"  # a window no other test uses in the shared Redis
    runtime.settings = runtime.settings.model_copy(update={"rate_limit_routes": {"POST /predict": f"3/{window}"}})
    book = _book()

    def refused(limit: str) -> float:
        return REGISTRY.get_sample_value("rate_limited_requests_total", {"limit": limit}) or 0.0

    before = {label: refused(label) for label in ("principal", "predict")}
    answers = [await client.post("/predict", json={"symbol": "BTC-USD", "book": book}, headers=user.headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["ratelimit-limit"] == "3"
    assert answers[2].headers["ratelimit-remaining"] == "0"
    # Refused by the route limit applied with authentication; the seed's default is not counted as well.
    assert refused("principal") == before["principal"] + 1
    assert refused("predict") == before["predict"]
    untouched = await runtime.rate_limiter.hit(f"3/{window}", "predict", f"user:{user.id}")
    assert untouched.allowed
    assert untouched.remaining == 2


async def test_ml_model_accuracy_follows_outcomes_as_their_horizon_passes(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    from tradestack.core.clock import SimClock

    user = await make_user()
    await MarketDataService(runtime).seed_instruments()
    trained = await PredictorService(runtime).train(snapshots=3_000, horizon=10, folds=2)
    await SignalService(runtime).promote(trained.model.version)
    clock = SimClock(runtime.clock.now())
    runtime.clock = clock
    horizon_seconds = 10 * runtime.settings.replay_tick_seconds
    simulator = OrderBookSimulator("BTC-USD", Decimal(30000), Decimal("0.01"), seed=11, depth=20)

    def accuracy() -> float | None:
        return REGISTRY.get_sample_value("ml_model_accuracy", {"model": trained.model.version})

    made: list[tuple[float, Decimal, float]] = []  # (when, mid, probability_up) of each live prediction
    mids: list[tuple[float, Decimal]] = []  # (from when, mid) of each published book
    seen: list[float | None] = []
    expected: list[float | None] = []
    for step in range(40):
        book = book_json(simulator.step(clock.now()))
        # Exact mids: in floats, two books with the same mid can differ by a rounding and count as a move.
        mid = (Decimal(book["bids"][0][0]) + Decimal(book["asks"][0][0])) / 2
        now = step * horizon_seconds / 4
        mids.append((now, mid))
        await runtime.cache.set(BOOK_KEY + "BTC-USD", orjson.dumps(book))
        response = await client.post("/predict", json={"symbol": "BTC-USD"}, headers=user.headers)
        assert response.status_code == 200, response.text
        answer = response.json()
        # Independent: predictions due by now, judged against the mid published at the time of judging.
        hits = counted = 0
        for when, then_mid, p_up in made:
            if when + horizon_seconds <= now:
                judged_mid = _mid_when_judged(when + horizon_seconds, mids, horizon_seconds / 4)
                if judged_mid != then_mid:
                    counted += 1
                    hits += int((judged_mid > then_mid) == (p_up >= 0.5))
        expected.append(hits / counted if counted else None)
        seen.append(accuracy())
        made.append((now, mid, answer["probability_up"]))
        clock.advance(horizon_seconds / 4)
    assert seen[:4] == [None] * 4  # nothing is due within the first horizon
    assert seen == pytest.approx(expected)
    assert len({value for value in seen if value is not None}) > 1  # it moves as outcomes arrive
    # The read endpoint the dashboard shows: the same figure, with its hits, calls and what still waits.
    listed = (await client.get("/api/trading/signals/accuracy", headers=user.headers)).json()
    assert listed["scope"] == "installation"
    (row,) = [m for m in listed["models"] if m["model_version"] == trained.model.version]
    assert row["kind"] == "orderbook"
    assert row["accuracy"] == pytest.approx(seen[-1])
    assert row["hits"] / row["calls"] == pytest.approx(seen[-1])
    assert row["pending"] == 4  # the last horizon's predictions (one every quarter horizon)


def _mid_when_judged(due: float, mids: list[tuple[float, Decimal]], step: float) -> Decimal:
    """Outcomes are judged on the first request at or after `due`: the mid of the book published then."""
    for when, mid in mids:
        if when >= due:
            return mid
    raise AssertionError("judged before any later book")


async def test_a_bearer_token_is_verified_once_per_predict(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tradestack.identity.service import components

    user = await make_user()
    await _promote_a_model(runtime)
    book = _book()
    body = {"symbol": "BTC-USD", "book": book}
    assert (await client.post("/predict", json=body, headers=user.headers)).status_code == 200  # the principal resolved
    tokens = components(runtime).tokens
    verified: list[str] = []
    real = tokens.verify

    def verify(token: str, *args: Any) -> Any:
        verified.append(token)
        return real(token, *args)

    monkeypatch.setattr(tokens, "verify", verify)
    for kind in ("application/json", "application/json; charset=utf-8"):  # the hot path, then the route
        verified.clear()
        answer = await client.post("/predict", content=orjson.dumps(body), headers={**user.headers, "content-type": kind})
        assert answer.status_code == 200, answer.text
        assert verified == [user.access_token], kind


async def test_the_predict_limit_is_per_api_key_and_per_user_for_bearer_tokens(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    # "100/min per key" (issue 16): an API key has its own budget, the user's bearer tokens share theirs.
    user = await make_user()
    await _promote_a_model(runtime)
    window = f"{uuid.uuid4().int % 50 + 10} minutes"  # a window no other test uses in the shared Redis
    runtime.settings = runtime.settings.model_copy(update={"rate_limit_routes": {"POST /predict": f"3/{window}"}})
    key = (await client.post("/api/keys", json={"name": "bot", "scopes": ["read"]}, headers=user.headers)).json()["key"]
    book = _book()

    async def status(headers: dict[str, str]) -> int:
        return (await client.post("/predict", json={"symbol": "BTC-USD", "book": book}, headers=headers)).status_code

    via_key = {"X-API-Key": key}
    assert [await status(via_key) for _ in range(4)] == [200, 200, 200, 429]
    assert [await status(user.headers) for _ in range(4)] == [200, 200, 200, 429]
