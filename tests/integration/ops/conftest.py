"""Helpers of the operations tests: an installation that has traded."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import httpx

from tradestack.audit.service import AuditService
from tradestack.domain.marketdata import Quote
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.runner import Publisher

from ..conftest import MakeUser  # type: ignore[import-not-found]


async def trade(client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser) -> None:
    """A trader with an account, a filled market order and a resting limit order; the audit chain drained."""
    trader = await make_user(Role.TRADER)
    body = {"name": "bk", "base_currency": "USD", "deposit": {"currency": "USD", "amount": "50000"}}
    account = (await client.post("/api/accounts", json=body, headers=trader.headers)).json()["id"]
    quote = Quote(
        "BTC-USD", Decimal(40000), Decimal(40001), Decimal(5), Decimal(5), Decimal(40000), Decimal(1), datetime.now(UTC)
    )
    await Publisher(runtime).publish("test", quote)
    order = {"account_id": account, "client_order_id": "m-1", "symbol": "BTC-USD", "side": "buy", "type": "market"}
    created = await client.post("/api/orders", json={**order, "quantity": "0.5", "time_in_force": "ioc"}, headers=trader.headers)
    assert created.status_code == 201, created.text
    for _ in range(200):
        status = (await client.get(f"/api/orders/{created.json()['id']}", headers=trader.headers)).json()["status"]
        if status == "filled":
            break
        await asyncio.sleep(0.05)
    assert status == "filled"
    limit = {
        **order,
        "client_order_id": "l-1",
        "type": "limit",
        "limit_price": "30000",
        "quantity": "0.1",
        "time_in_force": "gtc",
    }
    assert (await client.post("/api/orders", json=limit, headers=trader.headers)).status_code == 201
    assert await AuditService(runtime.database, runtime.clock).settle()
