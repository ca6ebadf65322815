"""Market hours as a user meets them, on both stacks: whichever of NASDAQ and the ASX is closed now
(they never overlap) refuses what cannot rest, takes what can, matches nothing, and says so in
/api/market/instruments; crypto trades meanwhile."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from tradestack.core.clock import SimClock
from tradestack.domain.marketdata import Side
from tradestack.domain.orders import OrderType, TimeInForce
from tradestack.identity.permissions import Role, permissions_of
from tradestack.identity.service import Caller, Principal
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.calendars import trading_hours
from tradestack.trading.repository import TradingRepository
from tradestack.trading.schemas import OrderCreate
from tradestack.trading.service import TradingService

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote, wait_for_order  # type: ignore[import-not-found]
from .test_orders import open_account  # type: ignore[import-not-found]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"market_hours_always_open": False})


def closed_now() -> tuple[str, str]:
    """(symbol, venue) of an equity whose venue is closed now and for the next few minutes."""
    now = datetime.now(UTC)
    for symbol, code in (("AAPL", "NASDAQ"), ("BHP", "ASX")):
        hours = trading_hours(code)
        if not hours.is_open(now) and not hours.is_open(now + timedelta(minutes=5)):
            return symbol, code
    pytest.fail("NASDAQ and the ASX are never open at once")  # pragma: no cover


def order(
    account: str, client_order_id: str, symbol: str, order_type: str, tif: str, limit: str | None = None
) -> dict[str, object]:
    body: dict[str, object] = {
        "account_id": account,
        "client_order_id": client_order_id,
        "symbol": symbol,
        "side": "buy",
        "type": order_type,
        "quantity": "1",
        "time_in_force": tif,
    }
    return body | ({"limit_price": limit} if limit else {})


async def test_a_closed_venue_refuses_what_cannot_rest_takes_the_rest_and_matches_nothing(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    symbol, code = closed_now()
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "1000000")
    await publish_quote("AUDUSD", "0.65000", "0.65010")
    await publish_quote(symbol, "40.00", "40.02")

    listed = (await client.get("/api/market/instruments", headers=trader.headers)).json()["instruments"]
    open_now = {i["symbol"]: i["open_now"] for i in listed}
    assert (open_now[symbol], open_now["BTC-USD"]) == (False, True)

    for client_order_id, terms in (("m-day", ("market", "day")), ("m-ioc", ("market", "ioc")), ("l-fok", ("limit", "fok"))):
        limit = "41.00" if terms[0] == "limit" else None
        refused = await client.post(
            "/api/orders", json=order(account, client_order_id, symbol, *terms, limit), headers=trader.headers
        )
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert f"{code} is closed until" in detail
        assert "send a limit order with time_in_force day or gtc" in detail
    # The advice works: a marketable limit day order is taken and rests.
    taken = await client.post(
        "/api/orders", json=order(account, "l-day", symbol, "limit", "day", "41.00"), headers=trader.headers
    )
    assert taken.status_code == 201, taken.text
    assert taken.json()["status"] == "accepted"

    # Quotes keep coming: crypto fills, the closed venue's marketable order does not.
    await publish_quote(symbol, "40.00", "40.02")
    await publish_quote("BTC-USD", "40000.00", "40001.00", size="5")
    btc = await client.post("/api/orders", json=order(account, "btc", "BTC-USD", "market", "ioc"), headers=trader.headers)
    assert btc.status_code == 201, btc.text
    filled = await wait_for_order(client, btc.json()["id"], trader.headers, lambda o: o["status"] in ("filled", "expired"))
    assert filled["status"] == "filled"
    await asyncio.sleep(0.2)
    resting = (await client.get(f"/api/orders/{taken.json()['id']}", headers=trader.headers)).json()
    assert (resting["status"], resting["filled_quantity"]) == ("accepted", "0")


async def status_of(runtime: Runtime, order_id: str) -> str | None:
    async with runtime.database.read_session() as session:
        row = await TradingRepository(session).get(order_id)
        return row.status if row else None


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
async def test_a_day_order_taken_while_closed_rests_through_the_weekend_and_expires_at_the_next_close(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    principal = Principal(trader.id, trader.email, Role.TRADER, permissions_of(Role.TRADER))
    request = OrderCreate(
        account_id=account,
        client_order_id="day-1",
        symbol="AAPL",
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=Decimal(1),
        limit_price=Decimal(100),
        time_in_force=TimeInForce.DAY,
    )
    clock = SimClock(datetime(2026, 11, 28, 15, 0, tzinfo=UTC))  # a Saturday
    runtime.clock = clock
    order, created = await TradingService(runtime).submit(principal, request, Caller())
    assert (created, order.status) == (True, "accepted")
    await asyncio.sleep(2.5)  # the engine checks sessions every second: the closed weekend does not expire it
    assert await status_of(runtime, order.id) == "accepted"
    clock.advance(2 * 86_400)  # Monday 15:00 UTC = 10:00 in New York
    await asyncio.sleep(1.5)
    assert await status_of(runtime, order.id) == "accepted"
    clock.advance(6.5 * 3600)  # 16:30 in New York: its session is over
    for _ in range(100):
        if await status_of(runtime, order.id) == "expired":
            break
        await asyncio.sleep(0.05)
    assert await status_of(runtime, order.id) == "expired"
