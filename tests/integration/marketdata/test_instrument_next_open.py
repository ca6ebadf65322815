"""Instruments say when a closed venue opens next and what the paper fee is (the dashboard's ticket)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx

from tradestack.core.clock import SimClock
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


async def test_a_half_day_closes_early_and_each_instrument_says_how_far_its_calendar_reaches(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    async def at(when: datetime) -> dict[str, dict[str, object]]:
        runtime.clock = SimClock(when)
        user = await make_user(Role.VIEWER)  # signed in at that time
        listed = (await client.get("/api/market/instruments", headers=user.headers)).json()["instruments"]
        return {i["symbol"]: i for i in listed}

    thanksgiving = await at(datetime(2026, 11, 26, 15, 0, tzinfo=UTC))
    assert thanksgiving["AAPL"]["open_now"] is False
    assert thanksgiving["AAPL"]["next_open"] == "2026-11-27T14:30:00Z"
    assert thanksgiving["AAPL"]["next_close"] is None
    half_day = await at(datetime(2026, 11, 27, 15, 0, tzinfo=UTC))
    assert half_day["AAPL"]["open_now"] is True
    assert half_day["AAPL"]["next_close"] == "2026-11-27T18:00:00Z"  # 13:00 New York, not 16:00
    assert half_day["BTC-USD"]["next_close"] is None  # crypto never closes
    assert half_day["EURUSD"]["calendar_until"] is None  # the weekly FX session only
    assert half_day["INFY"]["calendar_until"] >= "2026-12-31"  # type: ignore[operator]  # NSE: as far as it has published
    assert half_day["AAPL"]["calendar_until"] > half_day["INFY"]["calendar_until"]  # type: ignore[operator]
