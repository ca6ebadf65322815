"""Opening paper accounts with a deposit (journal-backed cash), on both stacks."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from tradestack.audit.service import AuditService
from tradestack.books.repository import JournalRepository
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.models.audit import AuditEntry

from ..conftest import MakeUser  # type: ignore[import-not-found]


async def test_open_a_paper_account_with_a_deposit(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    user = await make_user(Role.TRADER)
    body = {"name": "US swing", "base_currency": "usd", "deposit": {"currency": "usd", "amount": "100000.25"}}
    created = await client.post("/api/accounts", json=body, headers=user.headers)
    assert created.status_code == 201, created.text
    account = created.json()
    assert (account["name"], account["base_currency"], account["kind"]) == ("US swing", "USD", "paper")
    assert account["cash"] == {"USD": "100000.25"}

    listed = (await client.get("/api/accounts", headers=user.headers)).json()
    by_id = {a["id"]: a for a in listed}
    assert by_id[account["id"]]["cash"] == {"USD": "100000.25"}
    assert any(a["base_currency"] == "AUD" and a["cash"] == {} for a in listed)  # the seeded trader account

    assert await AuditService(runtime.database, runtime.clock).settle()  # chained off the request path
    async with runtime.database.read_session() as session:
        journal = JournalRepository(session)
        assert await journal.count_unbalanced() == 0
        assert await journal.entries() >= 1
        actions = (await session.scalars(select(AuditEntry.action).where(AuditEntry.target == f"account:{account['id']}"))).all()
    assert list(actions) == ["account.open"]


async def test_bad_account_requests_are_422(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user(Role.TRADER)
    good = {"name": "x", "base_currency": "AUD", "deposit": {"currency": "AUD", "amount": "10"}}
    cases = [
        ({**good, "base_currency": "AU"}, "base_currency"),
        ({**good, "name": ""}, "name"),
        ({**good, "deposit": {"currency": "AUD", "amount": "0"}}, "amount"),
        ({**good, "deposit": {"currency": "AUD", "amount": "-5"}}, "amount"),
        ({**good, "deposit": {"currency": "AUD", "amount": "1.123456789"}}, "amount"),
        ({**good, "deposit": {"currency": "AUD", "amount": "1e13"}}, "amount"),
        ({**good, "deposit": {"currency": "A1D", "amount": "10"}}, "currency"),
    ]
    for body, field in cases:
        response = await client.post("/api/accounts", json=body, headers=user.headers)
        assert response.status_code == 422, (body, response.text)
        assert field in response.json()["detail"], (field, response.json())
    listed = (await client.get("/api/accounts", headers=user.headers)).json()
    assert len(listed) == 1  # nothing half-created: only the account every trader starts with


async def test_viewers_cannot_open_accounts(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    viewer = await make_user(Role.VIEWER)
    body = {"name": "x", "base_currency": "AUD", "deposit": {"currency": "AUD", "amount": "10"}}
    response = await client.post("/api/accounts", json=body, headers=viewer.headers)
    assert response.status_code == 403
    assert "trade:own" in response.json()["detail"]
    assert (await client.get("/api/accounts", headers=viewer.headers)).json() == []
