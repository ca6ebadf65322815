"""Money in minor units, as the API shows it: cash moves in whole cents (the rest of a fill's exact amount is
booked to rounding:CCY so every entry still sums to zero), valuations and realized P&L come rounded
half-even to their currency's minor unit, and averages to 8 decimal places."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from tradestack.core.money import decimal_places
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.ops.integrity import check_integrity

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote, wait_for_order  # type: ignore[import-not-found]
from .test_orders import open_account  # type: ignore[import-not-found]


def places(text: str) -> int:
    return decimal_places(Decimal(text))


async def test_fills_move_cash_in_cents_and_the_api_shows_rounded_valuations_and_averages(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "100000", currency="USD")
    await publish_quote("BTC-USD", "41000.05", "41000.07", last="41000.06")
    await publish_quote("AAPL", "100.00", "100.01")

    async def buy(client_order_id: str, symbol: str, quantity: str, price: str) -> dict[str, Any]:
        body = {"account_id": account, "client_order_id": client_order_id, "symbol": symbol, "side": "buy",
                "type": "limit", "quantity": quantity, "limit_price": price, "time_in_force": "gtc"}  # fmt: skip
        placed = await client.post("/api/orders", json=body, headers=trader.headers)
        assert placed.status_code == 201, placed.text
        return await wait_for_order(client, placed.json()["id"], trader.headers, lambda o: o["status"] == "filled")

    await buy("btc", "BTC-USD", "0.0015", "41000.07")  # 61.500105 USD exactly
    await buy("aapl-1", "AAPL", "2", "100.01")
    # The engine hears the new quote on the bus, maybe only after the next order: that buy's limit is below the ask
    # before, so it fills at 100.00 whether it is taken before the quote (it rests until then) or after.
    await publish_quote("AAPL", "99.99", "100.00")
    await buy("aapl-2", "AAPL", "1", "100.00")  # 3 AAPL for 300.02: an average of 100.00666...
    await publish_quote("AAPL", "100.10", "100.12", last="100.11")

    ledger = (await client.get("/api/ledger", params={"account_id": account}, headers=trader.headers)).json()["items"]
    btc_fill = next(e for e in ledger if e["kind"] == "fill" and any(p["account"] == "position:BTC-USD" for p in e["postings"]))
    legs = [(p["account"], p["amount"]) for p in btc_fill["postings"]]
    assert ("position:BTC-USD", "61.500105") in legs  # the position keeps its exact cost
    assert ("cash:USD", "-61.5") in legs  # cash moves in whole cents
    assert ("rounding:USD", "-0.000105") in legs
    for entry in ledger:
        for posting in entry["postings"]:
            if posting["account"].startswith("cash:"):
                assert places(posting["amount"]) <= 2, entry
        for currency in {p["currency"] for p in entry["postings"]}:
            assert sum(Decimal(p["amount"]) for p in entry["postings"] if p["currency"] == currency) == 0, entry

    portfolio = (await client.get("/api/portfolio", params={"account_id": account}, headers=trader.headers)).json()
    assert all(places(amount) <= 2 for amount in [*portfolio["cash"].values(), *portfolio["fees"].values()]), portfolio
    positions = {p["symbol"]: p for p in portfolio["positions"]}
    aapl, btc = positions["AAPL"], positions["BTC-USD"]
    assert aapl["average_cost"] == "100.00666667"  # 300.02 / 3, to 8 places
    assert (aapl["cost_basis"], aapl["market_value"], aapl["unrealized_pnl"]) == ("300.02", "300.33", "0.31")
    assert (btc["cost_basis"], btc["market_value"]) == ("61.5", "61.5")  # 61.500105 and 61.50009, in cents
    for position in portfolio["positions"]:
        for field in ("cost_basis", "market_value", "unrealized_pnl", "market_value_base", "unrealized_pnl_base"):
            assert places(position[field]) <= 2, (field, position)
    for field in ("cash_base", "market_value_base", "unrealized_pnl_base", "equity"):
        assert places(portfolio[field]) <= 2, (field, portfolio[field])
    orders = (await client.get("/api/orders", params={"account_id": account}, headers=trader.headers)).json()["items"]
    assert all(places(o["average_fill_price"]) <= 8 for o in orders)
    assert (await check_integrity(runtime.database)).ok
