"""What an attacker tries on orders and limits: other users' ids, existence probes, odd digits, absurd limits."""

from __future__ import annotations

import httpx
import pytest

from tradestack.identity.permissions import Role

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote  # type: ignore[import-not-found]
from .test_orders import limit_buy, open_account  # type: ignore[import-not-found]

LIMITS = {
    "max_order_notional": "500",
    "max_position_quantity": "100",
    "max_gross_exposure": "100000",
    "price_collar_pct": "5",
    "max_orders_per_minute": 100,
    "daily_loss_limit": "1000",
}


async def test_another_users_order_answers_like_one_that_does_not_exist(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    victim, attacker = await make_user(Role.TRADER), await make_user(Role.TRADER)
    account = await open_account(client, victim)
    await publish_quote("AAPL", "150.00", "150.02")
    placed = await client.post("/api/orders", json=limit_buy(account, "mine"), headers=victim.headers)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    nowhere = "00000000-0000-0000-0000-000000000000"
    for suffix in ("", "/events"):
        theirs = await client.get(f"/api/orders/{order_id}{suffix}", headers=attacker.headers)
        missing = await client.get(f"/api/orders/{nowhere}{suffix}", headers=attacker.headers)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["detail"] == missing.json()["detail"].replace(nowhere, order_id)
        assert account not in theirs.text
    cancel = await client.delete(f"/api/orders/{order_id}", headers=attacker.headers)
    assert cancel.status_code == 404
    assert account not in cancel.text
    assert (await client.get(f"/api/orders/{order_id}", headers=victim.headers)).json()["status"] != "canceled"


async def test_limits_do_not_show_who_set_them_to_the_trader(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    trader, risk = await make_user(Role.TRADER), await make_user(Role.RISK)
    account = await open_account(client, trader)
    put = await client.put(f"/api/risk/limits/{account}", json=LIMITS, headers=risk.headers)
    assert put.status_code == 200, put.text
    assert put.json()["updated_by"] == risk.id
    as_trader = await client.get(f"/api/risk/limits/{account}", headers=trader.headers)
    assert as_trader.status_code == 200
    assert as_trader.json()["updated_by"] is None
    assert risk.id not in as_trader.text
    assert (await client.get(f"/api/risk/limits/{account}", headers=risk.headers)).json()["updated_by"] == risk.id


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_order_notional", "1e37"),
        ("max_order_notional", 1e37),
        ("max_gross_exposure", "1000000000000000.1"),
        ("daily_loss_limit", "-0"),
        ("daily_loss_limit", "-0.0"),
        ("max_position_quantity", "0.000000001"),
        ("max_position_quantity", "\u0661\u0660"),
        ("price_collar_pct", "\uff15"),
    ],
)
async def test_limits_out_of_bounds_are_refused(
    client: httpx.AsyncClient, make_user: MakeUser, field: str, value: object
) -> None:
    trader, risk = await make_user(Role.TRADER), await make_user(Role.RISK)
    account = await open_account(client, trader)
    refused = await client.put(f"/api/risk/limits/{account}", json={**LIMITS, field: value}, headers=risk.headers)
    assert refused.status_code == 422, refused.text
    assert field in refused.text


@pytest.mark.parametrize("quantity", ["\u0661", "\uff11", "1\u0660", " 1", "1_0"])
async def test_quantity_in_other_digits_is_refused(client: httpx.AsyncClient, make_user: MakeUser, quantity: str) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    refused = await client.post("/api/orders", json=limit_buy(account, "digits", quantity=quantity), headers=trader.headers)
    assert refused.status_code == 422, refused.text
    assert "quantity" in refused.text
