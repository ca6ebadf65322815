"""GET /api/audit/verify: the chain status the Operations screen shows (risk and admin only)."""

from __future__ import annotations

import httpx

from tradestack.identity.permissions import Role

from ..conftest import MakeUser  # type: ignore[import-not-found]


async def test_risk_reads_the_chain_status_and_a_trader_cannot(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    risk = await make_user(Role.RISK)
    report = await client.get("/api/audit/verify", headers=risk.headers)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["ok"] is True
    assert body["first_bad_id"] is None
    assert (body["head_hash"] is None) == (body["checked"] == 0)
    trader = await make_user(Role.TRADER)
    assert (await client.get("/api/audit/verify", headers=trader.headers)).status_code == 403
