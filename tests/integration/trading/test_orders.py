"""Order entry over HTTP with the embedded paper engine, on both stacks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from sqlalchemy import select

from tradestack.audit.service import AuditService
from tradestack.identity.permissions import Role
from tradestack.kit.metrics import BATCHED, ORDERS
from tradestack.kit.runtime import Runtime
from tradestack.models.audit import AuditEntry
from tradestack.models.books import FillRow
from tradestack.ops.integrity import check_integrity

from ..api.test_hot_front import both_ways, counted  # type: ignore[import-not-found]
from ..conftest import MakeUser, TestUser  # type: ignore[import-not-found]
from .conftest import PublishQuote, wait_for_order  # type: ignore[import-not-found]


async def open_account(client: httpx.AsyncClient, user: TestUser, amount: str = "100000", currency: str = "USD") -> str:
    body = {"name": "orders", "base_currency": currency, "deposit": {"currency": currency, "amount": amount}}
    response = await client.post("/api/accounts", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def limit_buy(account: str, client_order_id: str, price: str = "100.00", quantity: str = "10", **extra: Any) -> dict[str, Any]:
    return {
        "account_id": account,
        "client_order_id": client_order_id,
        "symbol": "AAPL",
        "side": "buy",
        "type": "limit",
        "quantity": quantity,
        "limit_price": price,
        "time_in_force": "gtc",
        **extra,
    }


async def test_submit_is_idempotent_on_client_order_id(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "150.00", "150.02")
    first = await client.post("/api/orders", json=limit_buy(account, "c-1"), headers=trader.headers)
    assert first.status_code == 201, first.text
    order = first.json()
    assert (order["status"], order["quantity"], order["limit_price"], order["remaining_quantity"]) == (
        "accepted",
        "10",
        "100",
        "10",
    )

    again = await client.post("/api/orders", json=limit_buy(account, "c-1", price="100"), headers=trader.headers)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == order["id"]  # "100" and "100.00" are the same terms

    other = await client.post("/api/orders", json=limit_buy(account, "c-1", price="101.00"), headers=trader.headers)
    assert other.status_code == 409, other.text
    assert order["id"] in other.json()["detail"]

    events = (await client.get(f"/api/orders/{order['id']}/events", headers=trader.headers)).json()
    assert [e["kind"] for e in events] == ["submitted", "accepted"]
    assert events[0]["data"]["request"]["client_order_id"] == "c-1"


async def test_a_marketable_order_fills_and_books_balance(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "50000")
    await publish_quote("BTC-USD", "40000.00", "40001.00", size="5")
    body = {
        "account_id": account,
        "client_order_id": "btc-1",
        "symbol": "BTC-USD",
        "side": "buy",
        "type": "market",
        "quantity": "0.5",
        "time_in_force": "ioc",
    }
    created = await client.post("/api/orders", json=body, headers=trader.headers)
    assert created.status_code == 201, created.text
    order = await wait_for_order(client, created.json()["id"], trader.headers, lambda o: o["status"] in ("filled", "expired"))
    assert order["status"] == "filled", order
    assert order["average_fill_price"] == "40001"
    async with runtime.database.read_session() as session:
        fills = (
            await session.execute(select(FillRow.quantity, FillRow.price, FillRow.fee).where(FillRow.order_id == order["id"]))
        ).all()
    fee = Decimal("20.00")  # CRYPTO: 10 bps of 20000.5 = 20.0005 USD, booked in cents (half-even)
    assert [tuple(f) for f in fills] == [(Decimal("0.5"), Decimal(40001), fee)]
    accounts = {a["id"]: a for a in (await client.get("/api/accounts", headers=trader.headers)).json()}
    assert Decimal(accounts[account]["cash"]["USD"]) == Decimal(50000) - Decimal("20000.5") - fee
    report = await check_integrity(runtime.database)
    assert report.ok, report.problems


async def test_orders_the_checks_refuse_are_stored_as_denied_and_answered_422(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "1000")
    await publish_quote("AAPL", "150.00", "150.02")
    denied = await client.post(
        "/api/orders", json=limit_buy(account, "big", price="149.00", quantity="100"), headers=trader.headers
    )
    assert denied.status_code == 422, denied.text
    body = denied.json()
    assert body["check"] == "buying_power"
    assert "only 1,000.00 USD is available" in body["detail"]
    stored = (await client.get(f"/api/orders/{body['order_id']}", headers=trader.headers)).json()
    assert stored["status"] == "denied"
    assert "buying_power" in stored["reason"]
    # The same request again is the same (denied) order, not a new one.
    again = await client.post(
        "/api/orders", json=limit_buy(account, "big", price="149.00", quantity="100"), headers=trader.headers
    )
    assert again.status_code == 422
    assert again.json()["order_id"] == body["order_id"]


async def test_the_hot_path_answers_orders_as_the_route_does(
    app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "1000")
    await publish_quote("AAPL", "150.00", "150.02")
    stack = await counted(app, client)
    first = limit_buy(account, "n-1", quantity="1")
    new = await both_ways(app, client, "POST", "/api/orders", json=first, headers=trader.headers)
    assert [answer[0] for answer in new] == [201, 200]  # created on the hot path, the same order from the route
    assert new[0][1:] == new[1][1:]
    cases: list[tuple[dict[str, Any], dict[str, str]]] = [
        (limit_buy(account, "n-1", quantity="1"), trader.headers),  # the same order again: 200
        (limit_buy(account, "n-1", quantity="2"), trader.headers),  # other terms: 409
        (limit_buy(account, "big", price="149.00", quantity="100"), trader.headers),  # denied: 422
        (limit_buy("no-such-account", "x"), trader.headers),  # 404
        (limit_buy(account, "y"), {}),  # 401
        ({**limit_buy(account, "z"), "side": "hold"}, trader.headers),  # handed to the route: 422
    ]
    for body, headers in cases:
        hot, whole = await both_ways(app, client, "POST", "/api/orders", json=body, headers=headers)
        if body["client_order_id"] == "big":
            hot = (hot[0], orjson.dumps({**orjson.loads(hot[1]), "check": None}), *hot[2:])  # the first time names it
        assert hot == whole, (body, hot, whole)
    assert stack.paths == ["/api/orders"] * 7  # the rounds with overrides only


async def test_bad_orders_are_422_naming_the_problem(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    cases = [
        (limit_buy(account, "a", symbol="NOPE"), "unknown symbol"),
        (limit_buy(account, "b", price="100.005"), "tick size 0.01"),
        (limit_buy(account, "c", quantity="1.5"), "lot size 1"),
        (limit_buy(account, "d", quantity="-1"), "quantity"),
        ({**limit_buy(account, "e"), "limit_price": None}, "needs a limit price"),
        ({**limit_buy(account, "f"), "stop_price": "99"}, "takes no stop price"),
        ({**limit_buy(account, "g"), "type": "market", "limit_price": None}, "cannot be good-till-canceled"),
        (limit_buy(account, "bad id!"), "client_order_id"),
        ({**limit_buy(account, "h"), "side": "hold"}, "side"),
    ]
    for body, expected in cases:
        response = await client.post("/api/orders", json=body, headers=trader.headers)
        assert response.status_code == 422, (body, response.text)
        assert expected in response.text, (expected, response.text)
    missing = await client.post("/api/orders", json=limit_buy("no-such-account", "x"), headers=trader.headers)
    assert missing.status_code == 404


async def test_cancel_replace_and_cancel_all(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "150.00", "150.02")
    ids = []
    for n in range(3):
        response = await client.post("/api/orders", json=limit_buy(account, f"o{n}"), headers=trader.headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    replaced = await client.patch(
        f"/api/orders/{ids[0]}", json={"limit_price": "101.50", "quantity": "12"}, headers=trader.headers
    )
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["limit_price"], replaced.json()["quantity"]) == ("101.5", "12")
    bad = await client.patch(f"/api/orders/{ids[0]}", json={"limit_price": "101.505"}, headers=trader.headers)
    assert bad.status_code == 422
    assert "tick size" in bad.text
    empty = await client.patch(f"/api/orders/{ids[0]}", json={}, headers=trader.headers)
    assert empty.status_code == 422

    canceled = await client.delete(f"/api/orders/{ids[1]}", headers=trader.headers)
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    again = await client.delete(f"/api/orders/{ids[1]}", headers=trader.headers)
    assert again.status_code == 409

    everything = await client.delete(f"/api/orders?account_id={account}", headers=trader.headers)
    assert everything.status_code == 200
    assert sorted(o["id"] for o in everything.json()["canceled"]) == sorted([ids[0], ids[2]])
    page = (await client.get(f"/api/orders?account_id={account}&status=open", headers=trader.headers)).json()
    assert page["items"] == []
    events = (await client.get(f"/api/orders/{ids[0]}/events", headers=trader.headers)).json()
    assert [e["kind"] for e in events] == ["submitted", "accepted", "replaced", "canceled"]

    assert await AuditService(runtime.database, runtime.clock).settle()  # chained off the request path
    async with runtime.database.read_session() as session:
        actions = list(await session.scalars(select(AuditEntry.action).where(AuditEntry.target == f"order:{ids[0]}")))
    assert actions == ["order.submit", "order.replace", "order.cancel"]


async def test_pages_and_other_peoples_orders(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader, other = await make_user(Role.TRADER), await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "150.00", "150.02")
    ids = [
        (await client.post("/api/orders", json=limit_buy(account, f"p{n}"), headers=trader.headers)).json()["id"]
        for n in range(5)
    ]
    first = (await client.get("/api/orders?limit=2", headers=trader.headers)).json()
    second = (await client.get(f"/api/orders?limit=2&before={first['next']}", headers=trader.headers)).json()
    third = (await client.get(f"/api/orders?limit=2&before={second['next']}", headers=trader.headers)).json()
    seen = [o["id"] for page in (first, second, third) for o in page["items"]]
    assert seen == list(reversed(ids))
    assert third["next"] is None
    assert (await client.get(f"/api/orders/{ids[0]}", headers=other.headers)).status_code == 404
    assert (await client.delete(f"/api/orders/{ids[0]}", headers=other.headers)).status_code == 404
    assert (await client.get(f"/api/orders?account_id={account}", headers=other.headers)).status_code == 404
    assert (await client.get("/api/orders?status=nope", headers=trader.headers)).status_code == 422
    garbage = await client.get("/api/orders?before=garbage", headers=trader.headers)
    assert garbage.status_code == 422
    assert "the `next` of the previous page or an ISO 8601 time" in garbage.text
    # The same cursor as the books' lists: a time works as well (orders strictly before it).
    later = (await client.get("/api/orders", params={"before": "2999-01-01T00:00:00Z"}, headers=trader.headers)).json()
    assert [o["id"] for o in later["items"]] == list(reversed(ids))
    assert (await client.get("/api/orders", params={"before": "2000-01-01"}, headers=trader.headers)).json()["items"] == []


async def test_halt_cancels_open_orders_and_denies_new_ones(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader, risk = await make_user(Role.TRADER), await make_user(Role.RISK)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "150.00", "150.02")
    working = (await client.post("/api/orders", json=limit_buy(account, "w"), headers=trader.headers)).json()
    assert (
        await client.post("/api/risk/halt", json={"scope": account, "reason": "x"}, headers=trader.headers)
    ).status_code == 403

    halted = await client.post("/api/risk/halt", json={"scope": account, "reason": "runaway strategy"}, headers=risk.headers)
    assert halted.status_code == 200, halted.text
    assert (halted.json()["state"], halted.json()["canceled_orders"]) == ("halted", 1)
    assert (await client.get(f"/api/orders/{working['id']}", headers=trader.headers)).json()["status"] == "canceled"
    refused = await client.post("/api/orders", json=limit_buy(account, "after-halt"), headers=trader.headers)
    assert refused.status_code == 422
    assert refused.json()["check"] == "trading_state"

    resumed = await client.post("/api/risk/resume", json={"scope": account}, headers=risk.headers)
    assert resumed.status_code == 200
    assert resumed.json()["state"] == "active"
    ok = await client.post("/api/orders", json=limit_buy(account, "after-resume"), headers=trader.headers)
    assert ok.status_code == 201, ok.text

    globally = await client.post("/api/risk/halt", json={"scope": "global", "reason": "exchange outage"}, headers=risk.headers)
    assert globally.json()["canceled_orders"] >= 1
    refused = await client.post("/api/orders", json=limit_buy(account, "global-halt"), headers=trader.headers)
    assert refused.status_code == 422
    assert "all accounts" in refused.json()["detail"]
    await client.post("/api/risk/resume", json={"scope": "global"}, headers=risk.headers)
    unknown = await client.post("/api/risk/halt", json={"scope": "no-such", "reason": "x"}, headers=risk.headers)
    assert unknown.status_code == 404


async def test_limits_per_account(client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote) -> None:
    trader, risk = await make_user(Role.TRADER), await make_user(Role.RISK)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "150.00", "150.02")
    defaults = (await client.get(f"/api/risk/limits/{account}", headers=trader.headers)).json()
    assert (defaults["source"], defaults["currency"]) == ("default", "USD")
    limits = {
        "max_order_notional": "500",
        "max_position_quantity": "100",
        "max_gross_exposure": "100000",
        "price_collar_pct": "5",
        "max_orders_per_minute": 100,
        "daily_loss_limit": "1000",
    }
    assert (await client.put(f"/api/risk/limits/{account}", json=limits, headers=trader.headers)).status_code == 403
    put = await client.put(f"/api/risk/limits/{account}", json=limits, headers=risk.headers)
    assert put.status_code == 200, put.text
    assert (await client.get(f"/api/risk/limits/{account}", headers=trader.headers)).json()["max_order_notional"] == "500"
    too_big = await client.post(
        "/api/orders", json=limit_buy(account, "n1", price="100.00", quantity="6"), headers=trader.headers
    )
    assert too_big.status_code == 422, too_big.text
    assert too_big.json()["check"] == "max_order_notional"
    fat_finger = await client.post(
        "/api/orders", json=limit_buy(account, "n2", price="160.00", quantity="1"), headers=trader.headers
    )
    assert fat_finger.status_code == 422, fat_finger.text
    assert fat_finger.json()["check"] == "price_collar"
    bad = await client.put(f"/api/risk/limits/{account}", json={**limits, "price_collar_pct": "100"}, headers=risk.headers)
    assert bad.status_code == 422


async def test_short_selling_only_where_the_account_allows_it_and_metrics_count_orders(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    cash_only = await open_account(client, trader)
    body = {"name": "short ok", "base_currency": "USD", "deposit": {"currency": "USD", "amount": "100000"}, "allow_short": True}
    created = await client.post("/api/accounts", json=body, headers=trader.headers)
    assert created.status_code == 201, created.text
    may_short = created.json()["id"]
    assert created.json()["allow_short"] is True
    await publish_quote("AAPL", "150.00", "150.02")
    sell = {**limit_buy(cash_only, "s1", price="151.00"), "side": "sell"}
    refused = await client.post("/api/orders", json=sell, headers=trader.headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["check"] == "short_selling"
    allowed = await client.post("/api/orders", json={**sell, "account_id": may_short}, headers=trader.headers)
    assert allowed.status_code == 201, allowed.text

    metrics = (await client.get("/metrics")).text
    assert 'orders_total{status="denied",type="limit"}' in metrics
    assert 'orders_total{status="accepted",type="limit"}' in metrics
    assert "order_placement_latency_seconds_count" in metrics


def _sample(metrics: str, series: str) -> float:
    """The value of one series (``name{labels}``) in an exposition text; 0 when absent."""
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_order_metrics_batched_by_a_worker_are_all_in_its_metrics_answer(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, monkeypatch: Any
) -> None:
    # With several workers (BATCHED enabled) a submitted order's counter and latency wait in the batch: /metrics
    # writes them before it renders, so every order is counted there, once.
    monkeypatch.setattr(BATCHED, "enabled", True)
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "150.00", "150.02")
    accepted, latencies = 'orders_total{status="accepted",type="limit"}', "order_placement_latency_seconds_count"
    before = (await client.get("/metrics")).text
    for n in range(3):
        placed = await client.post("/api/orders", json=limit_buy(account, f"b{n}", price="100.00"), headers=trader.headers)
        assert placed.status_code == 201, placed.text
    assert ORDERS.labels(type="limit", status="accepted") in BATCHED._counts, "the order counter waits in the batch"
    after = (await client.get("/metrics")).text
    assert _sample(after, accepted) == _sample(before, accepted) + 3
    assert _sample(after, latencies) == _sample(before, latencies) + 3


async def test_open_sells_count_against_the_position_for_the_short_selling_check(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "150.00", "150.02")
    buy = {**limit_buy(account, "long", price="151.00", quantity="20"), "time_in_force": "ioc"}
    bought = await client.post("/api/orders", json=buy, headers=trader.headers)
    assert bought.status_code == 201, bought.text
    await wait_for_order(client, bought.json()["id"], trader.headers, lambda o: o["status"] == "filled")
    sell = {**limit_buy(account, "sell-1", price="160.00", quantity="15"), "side": "sell"}
    first = await client.post("/api/orders", json=sell, headers=trader.headers)
    assert first.status_code == 201, first.text
    second = await client.post("/api/orders", json={**sell, "client_order_id": "sell-2"}, headers=trader.headers)
    assert second.status_code == 422, second.text
    assert second.json()["check"] == "short_selling"
    third = await client.post("/api/orders", json={**sell, "client_order_id": "sell-3", "quantity": "5"}, headers=trader.headers)
    assert third.status_code == 201, third.text
