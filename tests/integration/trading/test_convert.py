"""POST /api/accounts/{id}/convert: cash changes currency at the live rate, as one balanced FX entry."""

from __future__ import annotations

from decimal import Decimal

import httpx

from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.ops.integrity import check_integrity

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote, wait_for_order  # type: ignore[import-not-found]
from .test_orders import open_account  # type: ignore[import-not-found]


async def test_converting_aud_to_usd_books_one_balanced_fx_entry(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "10000", currency="AUD")
    body = {"from_currency": "AUD", "to_currency": "USD", "amount": "1000"}
    no_rate = await client.post(f"/api/accounts/{account}/convert", json=body, headers=trader.headers)
    assert no_rate.status_code == 422
    assert "no quote for AUDUSD yet" in no_rate.json()["detail"]

    await publish_quote("AUDUSD", "0.64990", "0.65010", last="0.65000")
    converted = await client.post(f"/api/accounts/{account}/convert", json=body, headers=trader.headers)
    assert converted.status_code == 200, converted.text
    out = converted.json()
    fee_bps = Decimal(out["fee_bps"])
    expected = (Decimal(650) * (1 - fee_bps / 10_000)).quantize(Decimal("0.01"))
    assert (out["rate"], out["bought_amount"]) == ("0.65", str(expected))
    assert out["cash"] == {"AUD": "9000", "USD": str(expected)}
    ledger = (await client.get("/api/ledger", params={"account_id": account}, headers=trader.headers)).json()["items"]
    fx = next(e for e in ledger if e["kind"] == "fx")
    for currency in ("AUD", "USD"):
        assert sum(Decimal(p["amount"]) for p in fx["postings"] if p["currency"] == currency) == 0
    assert (await check_integrity(runtime.database)).ok

    for bad, says in (
        ({"amount": "20000"}, "holds 9000 AUD"),
        ({"amount": "1.001"}, "at most 2 decimal places"),
        ({"to_currency": "XYZ"}, "unknown currency 'XYZ'"),
        ({"to_currency": "AUD"}, "must differ"),
    ):
        refused = await client.post(f"/api/accounts/{account}/convert", json=body | bad, headers=trader.headers)
        assert refused.status_code == 422, refused.text
        assert says in refused.json()["detail"]
    other = await make_user(Role.TRADER)
    assert (await client.post(f"/api/accounts/{account}/convert", json=body, headers=other.headers)).status_code == 404


async def test_buying_a_currency_pair_converts_cash_and_holds_no_position(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "10000", currency="USD")
    await publish_quote("EURUSD", "1.08000", "1.08010", size="100000", last="1.08005")

    async def trade(client_order_id: str, side: str, quantity: str, price: str) -> httpx.Response:
        body = {"account_id": account, "client_order_id": client_order_id, "symbol": "EURUSD", "side": side,
                "type": "limit", "quantity": quantity, "limit_price": price, "time_in_force": "gtc"}  # fmt: skip
        return await client.post("/api/orders", json=body, headers=trader.headers)

    bought = await trade("eur-1", "buy", "2000", "1.08010")
    assert bought.status_code == 201, bought.text
    await wait_for_order(client, bought.json()["id"], trader.headers, lambda o: o["status"] == "filled")
    portfolio = (await client.get("/api/portfolio", params={"account_id": account}, headers=trader.headers)).json()
    assert portfolio["positions"] == []  # EUR is cash, not a position in a symbol
    fees = Decimal(portfolio["fees"].get("USD", "0"))
    assert portfolio["cash"]["EUR"] == "2000"
    assert Decimal(portfolio["cash"]["USD"]) == 10000 - Decimal("2160.2") - fees
    ledger = (await client.get("/api/ledger", params={"account_id": account}, headers=trader.headers)).json()["items"]
    fill = next(e for e in ledger if e["kind"] == "fill")
    assert {p["account"] for p in fill["postings"]} >= {"cash:EUR", "fx:EUR", "fx:USD", "cash:USD"}
    assert not any(p["account"].startswith("position:") for p in fill["postings"])

    too_many = await trade("eur-2", "sell", "3000", "1.08000")  # more EUR than the account holds
    assert too_many.status_code == 422, too_many.text
    assert "short" in too_many.json()["detail"]
    sold = await trade("eur-3", "sell", "2000", "1.08000")
    assert sold.status_code == 201, sold.text
    await wait_for_order(client, sold.json()["id"], trader.headers, lambda o: o["status"] == "filled")
    cash = (await client.get("/api/portfolio", params={"account_id": account}, headers=trader.headers)).json()["cash"]
    assert Decimal(cash["EUR"]) == 0
    assert (await check_integrity(runtime.database)).ok
