"""Account creation knows its currencies: ISO 4217 codes (and traded crypto), amounts in the
currency's minor unit, and balances written without exponents."""

from __future__ import annotations

import httpx
import pytest

from tradestack.identity.permissions import Role

from ..conftest import MakeUser  # type: ignore[import-not-found]


def account(base: str, currency: str, amount: str) -> dict[str, object]:
    return {"name": "x", "base_currency": base, "deposit": {"currency": currency, "amount": amount}}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (account("XYZ", "AUD", "100"), "unknown currency 'XYZ'"),
        (account("AUD", "QQQ", "100"), "unknown currency 'QQQ'"),
        (account("AUD", "AUD", "0.001"), "more than 2 decimal places, the minor unit of AUD"),
        (account("JPY", "JPY", "100.5"), "more than 0 decimal places, the minor unit of JPY"),
    ],
)
async def test_unknown_currencies_and_amounts_finer_than_the_minor_unit_are_422(
    client: httpx.AsyncClient, make_user: MakeUser, body: dict[str, object], says: str
) -> None:
    trader = await make_user(Role.TRADER)
    response = await client.post("/api/accounts", json=body, headers=trader.headers)
    assert response.status_code == 422, response.text
    assert says in response.json()["detail"]


async def test_balances_are_sent_without_exponent_notation(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    trader = await make_user(Role.TRADER)
    created = await client.post("/api/accounts", json=account("aud", "aud", "1e11"), headers=trader.headers)
    assert created.status_code == 201, created.text
    assert created.json()["base_currency"] == "AUD"
    assert created.json()["cash"] == {"AUD": "100000000000"}
    listed = (await client.get("/api/accounts", headers=trader.headers)).json()
    assert {"AUD": "100000000000"} in [a["cash"] for a in listed]
    kwd = await client.post("/api/accounts", json=account("KWD", "KWD", "1.125"), headers=trader.headers)
    assert kwd.status_code == 201, kwd.text
