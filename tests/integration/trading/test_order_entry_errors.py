"""Order entry never answers 500: numbers that cannot be stored, and cash that cannot be valued, are 422s."""

from __future__ import annotations

import httpx
import pytest

from tradestack.identity.permissions import Role

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote  # type: ignore[import-not-found]
from .test_orders import limit_buy, open_account  # type: ignore[import-not-found]


@pytest.mark.parametrize(
    ("field", "terms", "limits"),
    [
        ("limit_price", {"quantity": "1", "price": "1e30"}, "14 integer digits"),
        ("limit_price", {"quantity": "1", "price": "100000000000000"}, "14 integer digits"),
        ("limit_price", {"quantity": "1", "price": "1e-11"}, "10 decimal places"),
        ("quantity", {"quantity": "99999999999999999999999999999999", "price": "100.00"}, "20 integer digits"),
        ("quantity", {"quantity": "1E+20", "price": "100.00"}, "20 integer digits"),
    ],
)
async def test_numbers_that_do_not_fit_their_column_are_422_naming_field_and_limits(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, field: str, terms: dict[str, str], limits: str
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "150.00", "150.02")
    response = await client.post("/api/orders", json=limit_buy(account, "huge", **terms), headers=trader.headers)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]
    assert limits in response.json()["detail"]


async def test_the_largest_storable_order_is_recorded_as_denied(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "150.00", "150.02")
    body = limit_buy(account, "largest", price="99999999999999.99", quantity="99999999999999999999")
    response = await client.post("/api/orders", json=body, headers=trader.headers)
    assert response.status_code == 422, response.text
    stored = (await client.get(f"/api/orders/{response.json()['order_id']}", headers=trader.headers)).json()
    assert stored["status"] == "denied"
    assert stored["limit_price"] == "99999999999999.99"


@pytest.mark.parametrize(("policy", "missing"), [("multi_currency", "converting INR to AUD"), ("auto_convert", "AUDUSD")])
async def test_orders_on_cash_without_an_fx_rate_to_the_base_are_422_saying_what_is_missing(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, policy: str, missing: str
) -> None:
    trader = await make_user(Role.TRADER)
    body = {"name": "x", "base_currency": "AUD", "deposit": {"currency": "INR", "amount": "5000000"}, "fx_policy": policy}
    created = await client.post("/api/accounts", json=body, headers=trader.headers)
    assert created.status_code == 201, created.text
    await publish_quote("AAPL", "150.00", "150.02")
    response = await client.post("/api/orders", json=limit_buy(created.json()["id"], "inr-1"), headers=trader.headers)
    assert response.status_code == 422, response.text
    # Margin values every currency held (INR first); auto-convert spends only USD and AUD, so it needs AUD/USD.
    assert missing in response.json()["detail"]


async def test_nse_stocks_trade_from_an_aud_account_through_the_usd_pivot_and_a_missing_quote_is_named(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "100000", currency="AUD")
    await publish_quote("INFY", "1800.00", "1800.05")
    await publish_quote("AUDUSD", "0.65000", "0.65010")
    body = limit_buy(account, "infy-1", price="1790.00", quantity="1") | {"symbol": "INFY"}
    missing = await client.post("/api/orders", json=body, headers=trader.headers)
    assert missing.status_code == 422, missing.text
    assert "no quote for USDINR yet (INR/USD)" in missing.json()["detail"]
    await publish_quote("USDINR", "84.0000", "84.0100")
    placed = await client.post("/api/orders", json=body | {"client_order_id": "infy-2"}, headers=trader.headers)
    assert placed.status_code == 201, placed.text
    assert placed.json()["status"] == "accepted"
