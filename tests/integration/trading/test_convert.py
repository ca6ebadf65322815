"""POST /api/accounts/{id}/convert: cash changes currency at the live rate, as one balanced FX entry."""

from __future__ import annotations

from decimal import Decimal

import httpx

from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.ops.integrity import check_integrity

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote  # type: ignore[import-not-found]
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
