"""The acceptance walk of issue 10, through the HTTP API on what `tradestack up` serves (SQLite, the demo
trader and their 100,000 AUD account, the shipped history replayed, synthetic prices for the rest, real
market hours), on an injected clock so that it runs the same on any day of the week.

The clock starts on a weekday morning when the ASX and the NSE are open and NASDAQ is closed: the walk
buys BTC-USD, BHP and INFY (filled at once), is told that a market order for AAPL cannot wait for the
open and follows the advice (a day limit order, which rests), converts AUD to USD, then moves to
NASDAQ's open, where the replay prints again and AAPL fills. The portfolio must then read as a
human expects: cash per currency that no purchase left negative, AUD equity close to the deposit less
what the walk paid in fees, positions worth what their fills cost give or take the market's moves.
Finally the trader changes their password and signs in with the new one.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tradestack.api.app import create_app
from tradestack.books.flows import DEMO_DEPOSIT_AUD, seed_first_users
from tradestack.core.money import decimal_places
from tradestack.identity.service import DEMO_TRADER_EMAIL
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.marketdata import datasets
from tradestack.marketdata.calendars import trading_hours
from tradestack.marketdata.flows import import_datasets
from tradestack.ops.integrity import check_integrity
from tradestack.ops.service import InstanceService

from ...conftest import Stack  # type: ignore[import-not-found]

WALK_DAY = datetime(2026, 3, 4, tzinfo=UTC)
"""A Wednesday: the walk starts on it whatever day the test runs."""


class SteppingClock:
    """Real time flowing from `start`, moved forward on demand (to the next session); monotonic time stays real."""

    def __init__(self, start: datetime) -> None:
        self._start, self._origin, self._jumped = start, time.monotonic(), 0.0

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._origin + self._jumped)

    def monotonic(self) -> float:
        return time.monotonic()

    def jump_to(self, at: datetime) -> None:
        self._jumped += max(0.0, (at - self.now()).total_seconds())


def asx_and_nse_open_nasdaq_closed(day: datetime) -> datetime:
    """The first instant of `day` (5-minute steps) with the ASX and the NSE open for the next 30 minutes, NASDAQ closed."""
    asx, nse, nasdaq = trading_hours("ASX"), trading_hours("NSE"), trading_hours("NASDAQ")
    for step in range(24 * 12):
        at = day + timedelta(minutes=5 * step)
        later = at + timedelta(minutes=30)
        if all(v.is_open(t) for v in (asx, nse) for t in (at, later)) and not nasdaq.is_open(at):
            return at
    raise AssertionError(f"the ASX and the NSE are never open together on {day:%Y-%m-%d}")


@pytest.fixture
def stack(sqlite_url: str) -> Stack:
    return Stack("embedded", sqlite_url, None)  # `tradestack up`: SQLite and in-process backends


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # What `tradestack up` runs: the feeds and the engine in process, real market hours, default fees and slippage.
    return settings.model_copy(
        update={
            "marketdata_in_process": True,
            "marketdata_feeds": ["replay", "synthetic"],
            "engine_in_process": True,
            "market_hours_always_open": False,
            "paper_slippage_bps": Settings.model_fields["paper_slippage_bps"].default,
        }
    )


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock(asx_and_nse_open_nasdaq_closed(WALK_DAY) + timedelta(minutes=1))


@pytest.fixture
async def demo(settings: Settings, clock: SteppingClock) -> AsyncIterator[tuple[FastAPI, str]]:
    """`tradestack up` on a fresh data directory: migrate, seed the instance and the demo trader, import the
    shipped history, serve. Yields the app and the demo trader's generated password."""
    runtime = Runtime.open(settings, clock=clock)
    try:
        await migrations.upgrade(runtime.database.engine)
        async with runtime.database.session() as session:
            await InstanceService(session, clock).ensure_seeded()
        seeded = await seed_first_users(runtime)
        await import_datasets(runtime, [datasets.load(name) for name in datasets.DEMO])
    finally:
        await runtime.close()
    password = next(user.password for user in seeded if user.email == DEMO_TRADER_EMAIL)
    assert password is not None
    application = create_app(settings, runtime_factory=lambda: Runtime.open(settings, clock=clock))
    async with application.router.lifespan_context(application):
        yield application, password


async def _eventually(what: str, probe: Any, seconds: float = 30) -> Any:
    """Poll the coroutine function `probe` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + seconds
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        await asyncio.sleep(0.1)


async def test_the_demo_walk_works_as_a_new_user_meets_it(demo: tuple[FastAPI, str], clock: SteppingClock) -> None:
    app, password = demo
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        # Log in as the demo trader.
        login = await client.post("/api/auth/login", json={"email": DEMO_TRADER_EMAIL, "password": password})
        assert login.status_code == 200, login.text
        tokens = login.json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        (account,) = (await client.get("/api/accounts", headers=headers)).json()
        assert (account["base_currency"], account["fx_policy"], account["cash"]) == (
            "AUD",
            "auto_convert",
            {"AUD": str(DEMO_DEPOSIT_AUD)},
        )

        async def quotes() -> dict[str, dict[str, Any]] | None:
            symbols = "BTC-USD,AAPL,BHP,INFY,AUDUSD,USDINR"
            body = (await client.get("/api/market/quotes", params={"symbols": symbols}, headers=headers)).json()
            return {q["symbol"]: q for q in body["quotes"]} if not body["unavailable"] else None

        quoted = await _eventually("a quote for every symbol of the walk", quotes)

        async def place(body: dict[str, Any]) -> httpx.Response:
            return await client.post("/api/orders", json={"side": "buy"} | body, headers=headers)

        async def filled(order_id: str) -> dict[str, Any]:
            async def done() -> dict[str, Any] | None:
                order: dict[str, Any] = (await client.get(f"/api/orders/{order_id}", headers=headers)).json()
                assert order["status"] not in ("canceled", "denied", "expired", "rejected"), order
                return order if order["status"] == "filled" else None

            found: dict[str, Any] = await _eventually(f"order {order_id} filling", done)
            return found

        def above(symbol: str, pct: str = "1.02") -> str:
            return str((Decimal(quoted[symbol]["ask"]) * Decimal(pct)).quantize(Decimal("0.01")))

        # Buy BTC-USD (crypto trades around the clock).
        btc = await place({"client_order_id": "walk-btc", "symbol": "BTC-USD", "type": "market", "quantity": "0.05",
                           "time_in_force": "day"})  # fmt: skip
        assert btc.status_code == 201, btc.text
        btc_order = await filled(btc.json()["id"])

        # Buy AAPL while NASDAQ is closed: a market order is refused with advice; the advice is taken.
        nasdaq_open = trading_hours("NASDAQ").next_open(clock.now())
        refused = await place({"client_order_id": "walk-aapl-mkt", "symbol": "AAPL", "type": "market", "quantity": "10",
                               "time_in_force": "day"})  # fmt: skip
        assert refused.status_code == 422, refused.text
        advice = refused.json()["detail"]
        assert f"NASDAQ is closed until {nasdaq_open:%Y-%m-%d %H:%M} UTC" in advice
        advised_tif = re.search(r"send a limit order with time_in_force (\w+)", advice)
        assert advised_tif is not None, advice
        aapl = await place({"client_order_id": "walk-aapl", "symbol": "AAPL", "type": "limit", "quantity": "10",
                            "limit_price": above("AAPL", "1.05"), "time_in_force": advised_tif.group(1)})  # fmt: skip
        assert aapl.status_code == 201, aapl.text
        assert aapl.json()["status"] == "accepted"  # resting until the open

        # Buy BHP (ASX, AUD) and INFY (NSE, INR: the AUD it needs is converted through USD at fill time).
        bhp = await place({"client_order_id": "walk-bhp", "symbol": "BHP", "type": "limit", "quantity": "50",
                           "limit_price": above("BHP"), "time_in_force": "day"})  # fmt: skip
        assert bhp.status_code == 201, bhp.text
        infy = await place({"client_order_id": "walk-infy", "symbol": "INFY", "type": "limit", "quantity": "5",
                            "limit_price": above("INFY"), "time_in_force": "day"})  # fmt: skip
        assert infy.status_code == 201, infy.text
        bhp_order, infy_order = await filled(bhp.json()["id"]), await filled(infy.json()["id"])
        aapl_now = (await client.get(f"/api/orders/{aapl.json()['id']}", headers=headers)).json()
        assert aapl_now["status"] == "accepted", aapl_now  # nothing matches while NASDAQ is closed

        # Convert AUD to USD.
        converted = await client.post(
            f"/api/accounts/{account['id']}/convert",
            json={"from_currency": "AUD", "to_currency": "USD", "amount": "10000"},
            headers=headers,
        )
        assert converted.status_code == 200, converted.text
        usd_bought = Decimal(converted.json()["bought_amount"])
        audusd = Decimal(converted.json()["rate"])
        assert Decimal("0.4") < audusd < Decimal("1"), audusd  # a plausible AUD/USD rate
        assert 10000 * audusd * Decimal("0.99") < usd_bought <= 10000 * audusd

        # The next session: NASDAQ opens, the replay prints again and the resting AAPL order fills.
        clock.jump_to(nasdaq_open + timedelta(seconds=1))
        refreshed = await client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text  # hours later the access token has expired
        tokens = refreshed.json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        aapl_order = await filled(aapl.json()["id"])
        fills = (await client.get("/api/fills", params={"symbol": "AAPL"}, headers=headers)).json()["items"]
        assert fills
        assert all(datetime.fromisoformat(f["ts"]) >= nasdaq_open for f in fills)

        # Cash per currency and AUD equity a human finds plausible.
        portfolio = (await client.get("/api/portfolio", headers=headers)).json()
        cash = {currency: Decimal(amount) for currency, amount in portfolio["cash"].items()}
        assert all(amount >= 0 for amount in cash.values()), cash  # auto-convert: no purchase leaves a debt
        aapl_cost = Decimal(aapl_order["average_fill_price"]) * 10
        aapl_fee = sum(Decimal(f["fee"]) for f in fills)
        assert cash["USD"] == usd_bought - aapl_cost - aapl_fee  # paid from the USD converted, nothing more
        assert cash.get("INR", Decimal(0)) == 0  # INFY's INR was bought exactly, at fill time
        assert {p["symbol"]: p["quantity"] for p in portfolio["positions"]} == {
            "AAPL": "10", "BHP": "50", "BTC-USD": "0.05", "INFY": "5",
        }  # fmt: skip
        rates = {pair: Decimal(rate) for pair, rate in portfolio["fx_rates"].items()}
        usd_in_aud = 1 / rates["AUD/USD"]
        to_aud = {"AUD": Decimal(1), "USD": usd_in_aud, "INR": usd_in_aud / rates["USD/INR"]}  # INR through USD
        paid = {
            "USD": Decimal(btc_order["average_fill_price"]) * Decimal("0.05") + aapl_cost,
            "AUD": Decimal(bhp_order["average_fill_price"]) * 50,
            "INR": Decimal(infy_order["average_fill_price"]) * 5,
        }
        cost_aud = sum(amount * to_aud[currency] for currency, amount in paid.items())
        market_value = Decimal(portfolio["market_value_base"])
        assert cost_aud * Decimal("0.9") < market_value < cost_aud * Decimal("1.1"), (market_value, cost_aud)
        equity = Decimal(portfolio["equity"])
        assert equity == Decimal(portfolio["cash_base"]) + market_value
        # The deposit less fees and FX costs (well under 1 % of what was traded), give or take the market's moves.
        assert abs(equity - (DEMO_DEPOSIT_AUD - (cost_aud - market_value))) < cost_aud * Decimal("0.01"), equity
        assert DEMO_DEPOSIT_AUD * Decimal("0.95") < equity < DEMO_DEPOSIT_AUD * Decimal("1.05")
        assert cash["AUD"] < DEMO_DEPOSIT_AUD - 10000 - Decimal(bhp_order["average_fill_price"]) * 50
        # Money as a broker shows it: cash in whole minor units, valuations rounded to cents (AUD, USD, INR).
        minor = {"AUD": 2, "USD": 2, "INR": 2}
        assert all(decimal_places(amount) <= minor[currency] for currency, amount in cash.items()), cash
        for position in portfolio["positions"]:
            for field in ("cost_basis", "market_value", "unrealized_pnl", "market_value_base", "unrealized_pnl_base"):
                assert decimal_places(Decimal(position[field])) <= 2, (field, position)
        # Buying power per the auto-convert policy: an AUD purchase may spend the AUD cash, a USD one the USD as well.
        power = {currency: Decimal(amount) for currency, amount in portfolio["buying_power"].items()}
        assert power["AUD"] == cash["AUD"]
        assert cash["USD"] < power["USD"] < cash["USD"] + cash["AUD"] * rates["AUD/USD"]

        # Every tradable instrument of the catalogue takes an order from the demo account (bids below the market
        # rest, whether or not their venue is open now); then they are canceled.
        listed = (await client.get("/api/market/instruments", headers=headers)).json()["instruments"]
        tradable = {i["symbol"]: i for i in listed if i["tradable"]}
        assert {"AAPL", "BHP", "INFY", "RELIANCE", "BTC-USD", "EURUSD", "AUDUSD", "USDINR"} <= set(tradable)
        symbols = ",".join(tradable)
        bids = (await client.get("/api/market/quotes", params={"symbols": symbols}, headers=headers)).json()["quotes"]
        for quote in bids:
            tick = Decimal(tradable[quote["symbol"]]["tick_size"])
            price = (Decimal(quote["bid"]) * Decimal("0.9") / tick).to_integral_value(ROUND_FLOOR) * tick
            resting = await place({"client_order_id": f"catalogue-{quote['symbol']}", "symbol": quote["symbol"],
                                   "type": "limit", "quantity": tradable[quote["symbol"]]["lot_size"],
                                   "limit_price": str(price), "time_in_force": "gtc"})  # fmt: skip
            assert resting.status_code == 201, (quote["symbol"], resting.text)
        assert {q["symbol"] for q in bids} == set(tradable)
        canceled = await client.delete("/api/orders", headers=headers)
        assert canceled.status_code == 200, canceled.text

        # Change the password, then sign in with the new one (and no longer with the old).
        changed = await client.post(
            "/api/auth/password",
            json={"current_password": password, "new_password": "a new and longer passphrase"},
            headers=headers,
        )
        assert changed.status_code == 200, changed.text
        old = await client.post("/api/auth/login", json={"email": DEMO_TRADER_EMAIL, "password": password})
        assert old.status_code == 401, old.text
        new = await client.post("/api/auth/login", json={"email": DEMO_TRADER_EMAIL, "password": "a new and longer passphrase"})
        assert new.status_code == 200, new.text
    assert (await check_integrity(app.state.runtime.database)).ok
