"""Many clients of one account at once get the answers one client would get alone: no denial from concurrency.

Each of 16 clients trades round trips on one account: a marketable IOC buy of 1 AAPL, then (after its
201) a marketable IOC sell of the 1 it bought. Alone, every one of these orders passes: the buy fills
before the sell is sent, and the account holds far more cash than 16 open buys need. Concurrently
they must pass too: a sell must never be refused as a short sale because the buy it follows was
acknowledged but not yet filled, and acknowledged IOC orders must not keep reserving buying power.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx

from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.ops.integrity import check_integrity

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote  # type: ignore[import-not-found]
from .test_orders import open_account  # type: ignore[import-not-found]

CLIENTS = 16
ROUNDS = 3


async def test_sixteen_concurrent_clients_of_one_account_get_no_spurious_denial(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "100000")
    await publish_quote("AAPL", "100.00", "100.01", size="100000", last="100.00")

    async def order(number: int, side: str) -> httpx.Response:
        body = {
            "account_id": account, "client_order_id": f"c-{number}-{side}", "symbol": "AAPL", "side": side,
            "type": "limit", "quantity": "1", "limit_price": "100.01" if side == "buy" else "100.00",
            "time_in_force": "ioc",
        }  # fmt: skip
        return await client.post("/api/orders", json=body, headers=trader.headers)

    async def round_trips(who: int) -> list[httpx.Response]:
        answers = []
        for round_number in range(ROUNDS):
            number = who * ROUNDS + round_number
            answers.append(await order(number, "buy"))
            answers.append(await order(number, "sell"))
        return answers

    answers = [a for per_client in await asyncio.gather(*(round_trips(who) for who in range(CLIENTS))) for a in per_client]
    refused = [(a.status_code, a.json().get("detail")) for a in answers if a.status_code != 201]
    assert refused == [], (len(refused), refused[:5])
    portfolio = (await client.get("/api/portfolio", params={"account_id": account}, headers=trader.headers)).json()
    assert portfolio["positions"] == []  # every buy was sold again
    assert Decimal(portfolio["cash"]["USD"]) < Decimal(100000)  # each round trip paid the spread
    report = await check_integrity(runtime.database)
    assert report.ok, report.problems


async def test_concurrent_resting_buys_never_reserve_more_than_the_cash(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    """40 buys at once, each reserving about a tenth of the cash: as many pass as the cash covers, no more."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "10000")
    await publish_quote("AAPL", "1000.00", "1000.01", last="1000.00")

    async def buy(number: int) -> httpx.Response:
        body = {
            "account_id": account, "client_order_id": f"rest-{number}", "symbol": "AAPL", "side": "buy", "type": "limit",
            "quantity": "1", "limit_price": "990.00", "time_in_force": "gtc",
        }  # fmt: skip
        return await client.post("/api/orders", json=body, headers=trader.headers)

    answers = await asyncio.gather(*(buy(n) for n in range(40)))
    accepted = [a for a in answers if a.status_code == 201]
    denied = [a for a in answers if a.status_code == 422]
    assert len(accepted) + len(denied) == 40, [a.text for a in answers if a.status_code not in (201, 422)][:3]
    assert all("buying_power" in a.json()["detail"] for a in denied), {a.json()["detail"] for a in denied}
    # 990 plus the fee reserved per order: 10 fit in 10,000 only without a fee; with one, 10 never fit.
    assert 1 <= len(accepted) <= 10
    reserved = sum(Decimal(a.json()["limit_price"]) * Decimal(a.json()["quantity"]) for a in accepted)
    assert reserved <= Decimal(10000)
    second = await buy(99)  # decided against the same books after the burst: the same answer as sequentially
    assert second.status_code == 422 or len(accepted) < 10
