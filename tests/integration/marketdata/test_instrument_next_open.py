"""Instruments say when a closed venue opens next and what the paper fee is (the dashboard's ticket)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import httpx

from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime

from ..conftest import MakeUser  # type: ignore[import-not-found]


async def test_closed_venues_carry_their_next_open_and_open_ones_none(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    user = await make_user(Role.VIEWER)
    listed = (await client.get("/api/market/instruments", headers=user.headers)).json()["instruments"]
    now = runtime.clock.now()
    by_symbol = {i["symbol"]: i for i in listed}
    assert by_symbol["BTC-USD"]["next_open"] is None  # crypto never closes
    assert any(not i["open_now"] for i in listed)  # NASDAQ, NSE and ASX sessions never all overlap
    for instrument in listed:
        if instrument["open_now"]:
            assert instrument["next_open"] is None, instrument["symbol"]
        else:
            assert datetime.fromisoformat(instrument["next_open"]) > now, instrument["symbol"]


async def test_instruments_carry_their_venues_paper_fees(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    user = await make_user(Role.VIEWER)
    listed = (await client.get("/api/market/instruments", headers=user.headers)).json()["instruments"]
    by_symbol = {i["symbol"]: i for i in listed}
    bps, minimum = runtime.settings.paper_fees["NASDAQ"]
    assert (Decimal(by_symbol["AAPL"]["fee_bps"]), Decimal(by_symbol["AAPL"]["fee_minimum"])) == (bps, minimum)
    assert Decimal(by_symbol["BTC-USD"]["fee_bps"]) == runtime.settings.paper_fees["CRYPTO"][0]
