"""FX policy of an account: auto-convert (the default) buys the quote currency a purchase needs with the
base currency at fill time, as its own FX entry; multi-currency lets the quote currency go negative."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import orjson
import pytest

from tradestack.domain.marketdata import Quote
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.schemas import quote_json
from tradestack.marketdata.service import QUOTE_KEY
from tradestack.ops.integrity import check_integrity

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote, wait_for_order  # type: ignore[import-not-found]
from .test_orders import limit_buy  # type: ignore[import-not-found]


@pytest.mark.parametrize("policy", ["auto_convert", "multi_currency", None])
async def test_buying_a_usd_stock_from_an_aud_account_follows_its_fx_policy(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime, policy: str | None
) -> None:
    trader = await make_user(Role.TRADER)
    body: dict[str, object] = {"name": "fx", "base_currency": "AUD", "deposit": {"currency": "AUD", "amount": "10000"}}
    if policy is not None:
        body["fx_policy"] = policy
    created = await client.post("/api/accounts", json=body, headers=trader.headers)
    assert created.status_code == 201, created.text
    assert created.json()["fx_policy"] == (policy or "auto_convert")
    account = created.json()["id"]
    await publish_quote("AUDUSD", "0.64990", "0.65010", last="0.65000")
    await publish_quote("AAPL", "150.00", "150.02")
    placed = await client.post(
        "/api/orders", json=limit_buy(account, "aapl", price="151.00", quantity="10"), headers=trader.headers
    )
    assert placed.status_code == 201, placed.text
    order = await wait_for_order(client, placed.json()["id"], trader.headers, lambda o: o["status"] == "filled")
    spent = Decimal(order["average_fill_price"]) * 10
    portfolio = (await client.get("/api/portfolio", params={"account_id": account}, headers=trader.headers)).json()
    cash = {currency: Decimal(amount) for currency, amount in portfolio["cash"].items()}
    ledger = (await client.get("/api/ledger", params={"account_id": account}, headers=trader.headers)).json()["items"]
    fx_entries = [e for e in ledger if e["kind"] == "fx"]
    if policy == "multi_currency":
        assert cash["USD"] < 0
        assert cash["AUD"] == 10000
        assert fx_entries == []
    else:
        assert cash.get("USD", Decimal(0)) == 0
        assert 10000 - cash["AUD"] > spent / Decimal("0.65")  # the USD bought, at 1 AUD = 0.65 USD, plus the FX fee
        assert len(fx_entries) == 1
        assert cash["AUD"] == cash["AUD"].quantize(Decimal("0.01"))
    totals = [Decimal(portfolio[k]) for k in ("cash_base", "market_value_base", "unrealized_pnl_base", "equity")]
    assert all(t == t.quantize(Decimal("0.01")) for t in totals), totals  # as a broker shows AUD
    assert totals[3] == totals[0] + totals[1]
    assert (await check_integrity(runtime.database)).ok


async def test_a_fill_converts_at_the_cached_rate_when_the_engine_missed_the_pair_on_the_bus(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    trader = await make_user(Role.TRADER)
    body = {"name": "fx", "base_currency": "AUD", "deposit": {"currency": "AUD", "amount": "10000"}}
    account = (await client.post("/api/accounts", json=body, headers=trader.headers)).json()["id"]
    # AUDUSD is in the cache only: the bus drops the oldest quotes for a subscriber that falls behind.
    audusd = Quote("AUDUSD", Decimal("0.6499"), Decimal("0.6501"), Decimal(1000), Decimal(1000), Decimal("0.65"),
                   Decimal(1), datetime.now(UTC))  # fmt: skip
    await runtime.cache.set(QUOTE_KEY + "AUDUSD", orjson.dumps(quote_json(audusd)), 300)
    await publish_quote("AAPL", "150.00", "150.02")
    placed = await client.post("/api/orders", json=limit_buy(account, "cached-rate", price="151.00"), headers=trader.headers)
    assert placed.status_code == 201, placed.text
    await wait_for_order(client, placed.json()["id"], trader.headers, lambda o: o["status"] == "filled")
    portfolio = (await client.get("/api/portfolio", params={"account_id": account}, headers=trader.headers)).json()
    assert Decimal(portfolio["cash"].get("USD", "0")) == 0, portfolio["cash"]  # converted at fill time, not left negative
    ledger = (await client.get("/api/ledger", params={"account_id": account}, headers=trader.headers)).json()["items"]
    assert [e["kind"] for e in ledger].count("fx") == 1


@pytest.mark.parametrize("policy", ["auto_convert", "multi_currency"])
async def test_buying_power_follows_the_fx_policy_third_currency_cash_is_not_spent_by_auto_convert(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime, policy: str
) -> None:
    trader = await make_user(Role.TRADER)
    body = {"name": "fx", "base_currency": "AUD", "deposit": {"currency": "AUD", "amount": "10000"}, "fx_policy": policy}
    account = (await client.post("/api/accounts", json=body, headers=trader.headers)).json()["id"]
    await publish_quote("AUDUSD", "0.64990", "0.65010", last="0.65000")
    await publish_quote("EURUSD", "1.07990", "1.08010", last="1.08000")
    await publish_quote("AAPL", "150.00", "150.02")
    to_eur = {"from_currency": "AUD", "to_currency": "EUR", "amount": "9500"}
    assert (await client.post(f"/api/accounts/{account}/convert", json=to_eur, headers=trader.headers)).status_code == 200
    # 10 AAPL cost about 1,510 USD = 2,323 AUD: more than the 500 AUD left, less than all the cash (EUR included).
    placed = await client.post("/api/orders", json=limit_buy(account, "third", price="151.00"), headers=trader.headers)
    if policy == "auto_convert":
        assert placed.status_code == 422, placed.text
        detail = placed.json()["detail"]
        assert "buying_power" in detail
        assert "counted: USD and AUD cash, AUD net of the" in detail
        assert "convert other currencies first" in detail
    else:
        assert placed.status_code == 201, placed.text
        await wait_for_order(client, placed.json()["id"], trader.headers, lambda o: o["status"] == "filled")
    portfolio = (await client.get("/api/portfolio", params={"account_id": account}, headers=trader.headers)).json()
    cash = portfolio["cash"]
    assert Decimal(cash["AUD"]) == 500  # no purchase spent AUD the account did not have
    assert (Decimal(cash.get("USD", "0")) < 0) == (policy == "multi_currency")
    # The portfolio's buying power follows the same rule as the checks, per currency.
    power = {currency: Decimal(amount) for currency, amount in portfolio["buying_power"].items()}
    assert portfolio["fx_policy"] == policy
    if policy == "auto_convert":
        assert power["AUD"] == 500  # the EUR is not spent on an AUD purchase
        assert Decimal(cash["EUR"]) < power["EUR"] < Decimal(cash["EUR"]) + 500 * Decimal("0.65") / Decimal("1.08")
    else:
        cash_base = Decimal(portfolio["cash_base"])
        assert cash_base - Decimal("0.01") <= power["AUD"] <= cash_base  # every currency pooled, USD debt included
        assert power["AUD"] < 10000 - 2300
    assert (await check_integrity(runtime.database)).ok
