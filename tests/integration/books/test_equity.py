"""Recorded equity over time (`equity_points`, GET /api/portfolio/equity), on both stacks, with a SimClock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from tradestack.books.repository import JournalRepository
from tradestack.books.service import BooksService, record_equity
from tradestack.core.clock import SimClock
from tradestack.domain.ledger import fill_entry
from tradestack.domain.marketdata import Quote
from tradestack.domain.portfolio import PositionState
from tradestack.identity.permissions import Role
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.runner import Publisher
from tradestack.models.books import EquityPointRow

from ..conftest import MakeUser, TestUser  # type: ignore[import-not-found]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"equity_chart_points": 40})


def sim_clock() -> SimClock:
    """A SimClock at the current second (the login tokens the tests hold must stay valid at its time)."""
    return SimClock(datetime.now(UTC).replace(microsecond=0))


def z(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


async def open_aud_account(client: httpx.AsyncClient, user: TestUser, amount: str) -> str:
    body = {"name": "AUD book", "base_currency": "AUD", "deposit": {"currency": "AUD", "amount": amount}}
    created = await client.post("/api/accounts", json=body, headers=user.headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def publish_fx(runtime: Runtime, symbol: str, rate: str) -> None:
    """Publish a quote at one price (bid = ask = last) as the market-data runner would; a pair's is its FX rate."""
    price = Decimal(rate)
    quote = Quote(symbol, price, price, Decimal(1000), Decimal(1000), price, Decimal(1), runtime.clock.now())
    await Publisher(runtime).publish("test", quote)


async def equity_points(runtime: Runtime, account_id: str) -> list[tuple[datetime, Decimal]]:
    async with runtime.database.read_session() as session:
        rows = await session.execute(
            select(EquityPointRow.ts, EquityPointRow.equity).where(EquityPointRow.account_id == account_id).order_by("ts")
        )
        return [(ts, equity) for ts, equity in rows]


async def test_recorded_equity_is_the_portfolio_equity_at_each_moment(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    trader = await make_user(Role.TRADER)
    account_id = await open_aud_account(client, trader, "10000.00")
    clock = sim_clock()
    start = clock.now()
    runtime.clock = clock

    # Hold USD as well: 6,500 AUD of the 10,000 become 4,225 USD (at 0.65).
    async with runtime.database.session() as session:
        books = BooksService(session, clock)
        await books.lock(account_id)
        await books.convert(account_id, ("AUD", Decimal("6500.00")), ("USD", Decimal("4225.00")))

    # No AUD/USD rate yet: the USD cannot be valued in AUD, so no point is invented.
    await record_equity(runtime)
    assert await equity_points(runtime, account_id) == []

    await publish_fx(runtime, "AUDUSD", "0.65")
    await record_equity(runtime)
    portfolio = (await client.get(f"/api/portfolio?account_id={account_id}", headers=trader.headers)).json()
    assert Decimal(portfolio["equity"]) == Decimal("10000.00")

    clock.advance(60)
    await publish_fx(runtime, "AUDUSD", "0.625")  # the AUD weakens: 4,225 USD are now 6,760 AUD
    await record_equity(runtime)
    portfolio = (await client.get(f"/api/portfolio?account_id={account_id}", headers=trader.headers)).json()
    assert Decimal(portfolio["equity"]) == Decimal("10260.00")

    assert await equity_points(runtime, account_id) == [
        (start, Decimal("10000.00")),
        (start + timedelta(seconds=60), Decimal("10260.00")),
    ]
    answer = await client.get(
        "/api/portfolio/equity",
        params={"account_id": account_id, "from": z(start - timedelta(hours=1)), "to": z(start + timedelta(hours=1))},
        headers=trader.headers,
    )
    assert answer.status_code == 200, answer.text
    series = answer.json()
    assert series["base_currency"] == "AUD"
    assert series["recorded_since"] == z(start)
    assert series["downsampled"] is False
    assert [(p["ts"], p["equity"]) for p in series["points"]] == [
        (z(start), "10000"),
        (z(start + timedelta(seconds=60)), "10260"),
    ]
    assert Decimal(series["points"][-1]["equity"]) == Decimal(portfolio["equity"])

    # Without a range: the 30 days up to now (the SimClock's now).
    default = (await client.get(f"/api/portfolio/equity?account_id={account_id}", headers=trader.headers)).json()
    assert default["end"] == z(start + timedelta(seconds=60))
    assert len(default["points"]) == 2


async def test_a_position_without_a_live_quote_gets_no_point_until_one_is_quoted(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    trader = await make_user(Role.TRADER)
    body = {"name": "USD book", "base_currency": "USD", "deposit": {"currency": "USD", "amount": "5000.00"}}
    account_id = (await client.post("/api/accounts", json=body, headers=trader.headers)).json()["id"]
    clock = sim_clock()
    runtime.clock = clock
    async with runtime.database.session() as session:  # 10 AAPL bought at 100 USD, booked as a fill would be
        await BooksService(session, clock).lock(account_id)
        entry = fill_entry(
            "fill-e1", clock.now(), "AAPL", "buy", Decimal(10), Decimal(100), "USD", Decimal(0), "USD", PositionState("AAPL")
        )
        await JournalRepository(session).add(account_id, entry)

    await record_equity(runtime)  # the portfolio would value AAPL at cost: not a figure for the chart
    assert await equity_points(runtime, account_id) == []

    await publish_fx(runtime, "AAPL", "123.45")
    clock.advance(1)
    await record_equity(runtime)  # 4,000 USD of cash and 10 x 123.45
    assert await equity_points(runtime, account_id) == [(clock.now(), Decimal("5234.50"))]
    portfolio = (await client.get(f"/api/portfolio?account_id={account_id}", headers=trader.headers)).json()
    assert Decimal(portfolio["equity"]) == Decimal("5234.50")


async def test_a_long_range_is_downsampled_keeping_the_newest_point(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    trader = await make_user(Role.TRADER)
    account_id = await open_aud_account(client, trader, "100.00")
    clock = sim_clock()
    start = clock.now()
    runtime.clock = clock
    most = runtime.settings.equity_chart_points
    for _ in range(most + 5):
        await record_equity(runtime)
        clock.advance(0.5)
    answer = await client.get(
        "/api/portfolio/equity",
        params={"account_id": account_id, "from": z(start), "to": z(clock.now())},
        headers=trader.headers,
    )
    series = answer.json()
    assert series["downsampled"] is True
    assert len(series["points"]) <= most
    assert series["points"][-1]["ts"] == z(clock.now() - timedelta(seconds=0.5))


async def test_bad_equity_ranges_are_422_and_others_accounts_404(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    trader, other = await make_user(Role.TRADER), await make_user(Role.TRADER)
    account_id = await open_aud_account(client, trader, "100.00")
    reversed_range = await client.get(
        "/api/portfolio/equity",
        params={"account_id": account_id, "from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        headers=trader.headers,
    )
    assert reversed_range.status_code == 422
    assert "from: must not be after to" in reversed_range.json()["detail"]
    not_a_time = await client.get(
        "/api/portfolio/equity", params={"account_id": account_id, "from": "yesterday"}, headers=trader.headers
    )
    assert not_a_time.status_code == 422
    assert "from" in str(not_a_time.json()["detail"])
    several = await client.get("/api/portfolio/equity", headers=trader.headers)  # the seeded account and this one
    assert several.status_code == 422
    assert "account_id: you have 2 accounts" in several.json()["detail"]
    hidden = await client.get(f"/api/portfolio/equity?account_id={account_id}", headers=other.headers)
    assert hidden.status_code == 404


class TestRecorderInTheEngineProcess:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"engine_in_process": True, "equity_record_seconds": 1})

    async def test_the_process_running_the_engine_records_periodically(
        self, client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
    ) -> None:
        trader = await make_user(Role.TRADER)
        account_id = await open_aud_account(client, trader, "250.00")
        for _ in range(100):
            points = await equity_points(runtime, account_id)
            if len(points) >= 2:
                break
            await asyncio.sleep(0.05)
        assert len(points) >= 2, points
        assert {equity for _, equity in points} == {Decimal("250.00")}
