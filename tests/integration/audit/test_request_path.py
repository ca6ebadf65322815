"""On both stacks: with the chainer stuck, sign-up, sign-in, account opening and order entry still answer, their
audit entries wait committed in the outbox, and once the chainer is back they are chained and the chain verifies."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tradestack.audit.service import AuditService
from tradestack.domain.marketdata import Quote
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.runner import Publisher
from tradestack.models import AuditEntry, AuditOutbox

from ..conftest import MakeUser  # type: ignore[import-not-found]


async def test_requests_never_wait_for_a_stuck_chainer(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = asyncio.Event()
    real_chain_batch = AuditService.chain_batch

    async def stuck(self: AuditService, limit: int = 1000, *, holder: str | None = None) -> int:
        await released.wait()  # the chainer hangs until the test lets it go
        return await real_chain_batch(self, limit, holder=holder)

    monkeypatch.setattr(AuditService, "chain_batch", stuck)

    async def place_an_order() -> dict[str, Any]:
        trader = await make_user(Role.TRADER)
        body = {"name": "audit", "base_currency": "USD", "deposit": {"currency": "USD", "amount": "100000"}}
        account = await client.post("/api/accounts", json=body, headers=trader.headers)
        assert account.status_code == 201, account.text
        quote = Quote(
            "AAPL", Decimal(100), Decimal("100.05"), Decimal(500), Decimal(500), Decimal(100), Decimal(1), datetime.now(UTC)
        )
        await Publisher(runtime).publish("test", quote)
        order = {
            "account_id": account.json()["id"],
            "client_order_id": "audit-1",
            "symbol": "AAPL",
            "side": "buy",
            "type": "limit",
            "quantity": "1",
            "limit_price": "90.00",
            "time_in_force": "gtc",
        }
        created = await client.post("/api/orders", json=order, headers=trader.headers)
        assert created.status_code == 201, created.text
        result: dict[str, Any] = created.json()
        return result

    order = await asyncio.wait_for(place_an_order(), timeout=60)  # generous: a wait for the chainer would never end

    async with runtime.database.session() as session:
        staged = [json.loads(text)["action"] for text in (await session.scalars(select(AuditOutbox.fields))).all()]
        chained = (await session.scalars(select(AuditEntry.action))).all()
    assert {"user.created", "auth.login", "account.open", "order.submit"} <= set(staged)
    assert "order.submit" not in chained

    released.set()
    audit = AuditService(runtime.database, runtime.clock)
    assert await audit.settle(wait_seconds=30)
    async with runtime.database.session() as session:
        targets = (await session.scalars(select(AuditEntry.target).where(AuditEntry.action == "order.submit"))).all()
    assert targets == [f"order:{order['id']}"]
    assert (await audit.verify()).ok
