"""What a user trips over at order entry: the account they mean, partial limit changes, stops that
would trigger at once, and messages that say a thing once."""

from __future__ import annotations

import httpx

from tradestack.identity.permissions import Role

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote  # type: ignore[import-not-found]
from .test_orders import limit_buy, open_account  # type: ignore[import-not-found]


async def test_books_and_orders_default_to_the_only_account(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)  # has one paper account (AUD)
    await publish_quote("AAPL", "150.00", "150.02")
    await publish_quote("AUDUSD", "0.65000", "0.65010")
    only = (await client.get("/api/accounts", headers=trader.headers)).json()[0]["id"]
    for path in ("/api/portfolio", "/api/positions", "/api/fills", "/api/ledger", "/api/orders"):
        response = await client.get(path, headers=trader.headers)
        assert response.status_code == 200, (path, response.text)
    assert (await client.get("/api/portfolio", headers=trader.headers)).json()["account_id"] == only
    body = limit_buy(only, "no-account", price="140.00", quantity="1")
    del body["account_id"]
    placed = await client.post("/api/orders", json=body, headers=trader.headers)
    assert placed.status_code == 422, placed.text  # the demo-like account has no cash: denied, but stored on it
    stored = await client.get(f"/api/orders/{placed.json()['order_id']}", headers=trader.headers)
    assert stored.json()["account_id"] == only

    second = await open_account(client, trader)
    ambiguous = await client.get("/api/portfolio", headers=trader.headers)
    assert ambiguous.status_code == 422
    assert only in ambiguous.json()["detail"]
    assert second in ambiguous.json()["detail"]
    assert (await client.post("/api/orders", json=body | {"client_order_id": "x2"}, headers=trader.headers)).status_code == 422


async def test_patch_changes_some_risk_limits_and_keeps_the_others(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    trader = await make_user(Role.TRADER)
    risk = await make_user(Role.RISK)
    account = await open_account(client, trader)
    before = (await client.get(f"/api/risk/limits/{account}", headers=trader.headers)).json()
    patched = await client.patch(f"/api/risk/limits/{account}", json={"max_order_notional": "5000"}, headers=risk.headers)
    assert patched.status_code == 200, patched.text
    after = patched.json()
    assert after["source"] == "account"
    assert after["max_order_notional"] == "5000"
    for field in ("max_position_quantity", "max_gross_exposure", "price_collar_pct", "max_orders_per_minute", "daily_loss_limit"):
        assert after[field] == before[field], field
    assert (await client.patch(f"/api/risk/limits/{account}", json={}, headers=risk.headers)).status_code == 422
    again = await client.patch(f"/api/risk/limits/{account}", json={"price_collar_pct": "5"}, headers=risk.headers)
    assert (again.json()["max_order_notional"], again.json()["price_collar_pct"]) == ("5000", "5")
    refused = await client.patch(f"/api/risk/limits/{account}", json={"price_collar_pct": "5"}, headers=trader.headers)
    assert refused.status_code == 403


async def test_a_stop_on_the_wrong_side_of_the_market_is_refused_with_what_to_send(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("BTC-USD", "41498.00", "41499.00")
    stop = {
        "account_id": account,
        "client_order_id": "stop-1",
        "symbol": "BTC-USD",
        "side": "buy",
        "type": "stop",
        "quantity": "0.01",
        "stop_price": "100.00",
        "time_in_force": "gtc",
    }
    wrong = await client.post("/api/orders", json=stop, headers=trader.headers)
    assert wrong.status_code == 422, wrong.text
    detail = wrong.json()["detail"]
    assert "would trigger at once" in detail
    assert "above 41498" in detail
    sell = await client.post(
        "/api/orders", json=stop | {"client_order_id": "stop-2", "side": "sell", "stop_price": "50000.00"}, headers=trader.headers
    )
    assert sell.status_code == 422
    assert "below 41498" in sell.json()["detail"]
    right = await client.post("/api/orders", json=stop | {"stop_price": "45000.00"}, headers=trader.headers)
    assert right.status_code == 201, right.text
    assert right.json()["status"] == "accepted"
    moved = await client.patch(f"/api/orders/{right.json()['id']}", json={"stop_price": "40000.00"}, headers=trader.headers)
    assert moved.status_code == 422
    assert "would trigger at once" in moved.json()["detail"]


async def test_replacing_a_price_the_order_type_has_none_of_says_so_once(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "150.00", "150.02")
    placed = await client.post("/api/orders", json=limit_buy(account, "l-1", price="140.00"), headers=trader.headers)
    assert placed.status_code == 201, placed.text
    response = await client.patch(f"/api/orders/{placed.json()['id']}", json={"stop_price": "139.00"}, headers=trader.headers)
    assert response.status_code == 422
    assert response.json()["detail"] == "a limit order takes no stop price; remove it or change the order type"
