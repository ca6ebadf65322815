"""Reading an account's books: positions, portfolio valuation with FX, fills and the journal, on both stacks.

The books are built directly (journal entries through `JournalRepository.add`, fill and order
rows) and quotes are put in the cache the way the market-data publisher does, so every figure
below is worked out by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson

from tradestack.books.repository import JournalRepository
from tradestack.books.service import BooksService
from tradestack.domain.ledger import deposit, fill_entry
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import QUOTE_KEY
from tradestack.models.books import FillRow
from tradestack.models.trading import OrderRow

from ..conftest import MakeUser, TestUser  # type: ignore[import-not-found]

T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 20, 15, 0, 0, 123456, tzinfo=UTC)
T2 = T1 + timedelta(minutes=1)
T3 = T1 + timedelta(minutes=2)
T4 = T1 + timedelta(minutes=3)
QUOTE_TS = "2026-11-20T16:00:00Z"


async def _account_of(runtime: Runtime, user: TestUser, base_currency: str | None = None) -> str:
    """The account every trader starts with (AUD), or a new one in `base_currency`."""
    async with runtime.database.session() as session:
        books = BooksService(session, runtime.clock)
        if base_currency is None:
            return (await books.accounts_of(user.id))[0].id
        return (await books.open_account(user.id, f"in {base_currency}", base_currency)).id


async def _deposit(runtime: Runtime, account_id: str, currency: str, amount: str) -> None:
    async with runtime.database.session() as session:
        entry = deposit(f"dep-{currency}-{account_id}", T0, currency, Decimal(amount))
        await JournalRepository(session).add(account_id, entry)


async def _fill(
    runtime: Runtime,
    account_id: str,
    fill_id: str,
    ts: datetime,
    symbol: str,
    side: str,
    qty: str,
    price: str,
    fee: str,
    ccy: str,
) -> None:
    """One filled order: its order row, its fill row and its journal entry, in one transaction."""
    quantity, fill_price, fee_amount = Decimal(qty), Decimal(price), Decimal(fee)
    order_id = f"o-{fill_id}-{account_id[:8]}"
    async with runtime.database.session() as session:
        session.add(
            OrderRow(
                id=order_id, account_id=account_id, client_order_id=f"c-{fill_id}", fingerprint="{}", symbol=symbol,
                side=side, type="market", time_in_force="day", quantity=quantity, limit_price=None, stop_price=None,
                status="filled", filled_quantity=quantity, average_fill_price=fill_price, reason=None, version=3,
                created_at=ts, updated_at=ts,
            )
        )  # fmt: skip
        await session.flush()
        session.add(
            FillRow(
                id=fill_id, order_id=order_id, account_id=account_id, symbol=symbol, side=side, quantity=quantity,
                price=fill_price, fee=fee_amount, fee_currency=ccy, liquidity="taker", ts=ts,
            )
        )  # fmt: skip
        journal = JournalRepository(session)
        before = await journal.position(account_id, symbol)
        entry = fill_entry(
            f"e-{fill_id}-{account_id[:8]}",
            ts,
            symbol,
            side,
            quantity,
            fill_price,
            ccy,
            fee_amount,
            ccy,
            before,
            reference=fill_id,
        )
        await journal.add(account_id, entry)


async def _quote(runtime: Runtime, symbol: str, bid: str, ask: str, last: str | None) -> None:
    data: dict[str, Any] = {"symbol": symbol, "bid": bid, "ask": ask, "bid_size": "100", "ask_size": "100", "ts": QUOTE_TS}
    if last is not None:
        data |= {"last": last, "last_size": "1"}
    await runtime.cache.set(QUOTE_KEY + symbol, orjson.dumps(data))


async def _books(runtime: Runtime, user: TestUser) -> str:
    """The trader's AUD account: AUD and USD cash, AAPL (USD) bought, added to and partly sold, BHP (AUD), MSFT (USD).

    USD cash: 20000 - 1902.5 - 1 - 1000 - 1 + 1260 - 1 - 300 = 18054.5; AUD cash: 50000 - 4550 - 2 = 45448.
    AAPL: 15 at cost 2902.5 (average 193.5); selling 6 releases 1161 and realizes 6 x 210 - 1161 = 99.
    """
    account_id = await _account_of(runtime, user)
    await _deposit(runtime, account_id, "AUD", "50000")
    await _deposit(runtime, account_id, "USD", "20000")
    await _fill(runtime, account_id, "f-1", T1, "AAPL", "buy", "10", "190.25", "1", "USD")
    await _fill(runtime, account_id, "f-2", T2, "AAPL", "buy", "5", "200", "1", "USD")
    await _fill(runtime, account_id, "f-3", T3, "AAPL", "sell", "6", "210", "1", "USD")
    await _fill(runtime, account_id, "f-4a", T4, "MSFT", "buy", "3", "100", "0", "USD")
    await _fill(runtime, account_id, "f-4b", T4, "BHP", "buy", "100", "45.5", "2", "AUD")
    return account_id


async def _get(client: httpx.AsyncClient, user: TestUser, path: str, **params: Any) -> httpx.Response:
    return await client.get(path, params=params, headers=user.headers)


async def test_portfolio_marks_positions_and_converts_to_the_base_currency(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    user = await make_user(Role.TRADER)
    account_id = await _books(runtime, user)
    await _quote(runtime, "AAPL", "219.9", "220.1", "220")  # marked at last
    await _quote(runtime, "BHP", "45.9", "46.1", None)  # no last trade: marked at mid
    await _quote(runtime, "AUDUSD", "0.6249", "0.6251", "0.6252")  # FX at mid: 1 AUD = 0.625 USD, so 1 USD = 1.6 AUD
    # MSFT has no quote: valued at cost.

    response = await _get(client, user, "/api/portfolio", account_id=account_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["account_id"] == account_id
    assert body["base_currency"] == "AUD"
    assert body["cash"] == {"AUD": "45448", "USD": "18054.5"}
    assert body["realized_pnl"] == {"USD": "99"}
    assert body["fees"] == {"AUD": "2", "USD": "3"}
    assert body["fx_rates"] == {"AUD/USD": "0.625"}
    aapl, bhp, msft = body["positions"]
    assert aapl == {
        "symbol": "AAPL", "quantity": "9", "average_cost": "193.5", "cost_basis": "1741.5", "quote_currency": "USD",
        "mark_price": "220", "mark_source": "last", "mark_ts": QUOTE_TS, "market_value": "1980",
        "unrealized_pnl": "238.5", "market_value_base": "3168", "unrealized_pnl_base": "381.6",
    }  # fmt: skip
    assert bhp == {
        "symbol": "BHP", "quantity": "100", "average_cost": "45.5", "cost_basis": "4550", "quote_currency": "AUD",
        "mark_price": "46", "mark_source": "mid", "mark_ts": QUOTE_TS, "market_value": "4600",
        "unrealized_pnl": "50", "market_value_base": "4600", "unrealized_pnl_base": "50",
    }  # fmt: skip
    assert msft == {
        "symbol": "MSFT", "quantity": "3", "average_cost": "100", "cost_basis": "300", "quote_currency": "USD",
        "mark_price": "100", "mark_source": "cost", "mark_ts": None, "market_value": "300",
        "unrealized_pnl": "0", "market_value_base": "480", "unrealized_pnl_base": "0",
    }  # fmt: skip
    # Cash: 45448 + 18054.5 x 1.6 = 74335.2; positions: 3168 + 4600 + 480 = 8248.
    assert (body["cash_base"], body["market_value_base"], body["unrealized_pnl_base"]) == ("74335.2", "8248", "431.6")
    assert body["equity"] == "82583.2"
    assert body["problems"] == ["no live quote for MSFT: valued at its average cost"]

    positions = await _get(client, user, "/api/positions", account_id=account_id)
    assert positions.status_code == 200, positions.text
    assert positions.json() == {
        "account_id": account_id,
        "base_currency": "AUD",
        "positions": [aapl, bhp, msft],
        "problems": ["no live quote for MSFT: valued at its average cost"],
    }


async def test_a_currency_without_fx_rate_leaves_equity_null_and_names_the_rate(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    user = await make_user(Role.TRADER)
    account_id = await _account_of(runtime, user, "EUR")
    await _deposit(runtime, account_id, "USD", "1000")
    await _fill(runtime, account_id, "f-eur", T1, "AAPL", "buy", "2", "100", "0", "USD")
    await _quote(runtime, "AAPL", "109", "111", "110")

    body = (await _get(client, user, "/api/portfolio", account_id=account_id)).json()
    assert body["cash"] == {"USD": "800"}
    assert (body["cash_base"], body["market_value_base"], body["unrealized_pnl_base"], body["equity"]) == (None,) * 4
    assert [p["market_value"] for p in body["positions"]] == ["220"]  # still valued in its own currency
    assert [p["market_value_base"] for p in body["positions"]] == [None]
    assert len(body["problems"]) == 1
    assert body["problems"][0].startswith("no FX rate for USD/EUR")
    assert "EUR totals and equity are null" in body["problems"][0]

    await _quote(runtime, "EURUSD", "1.2499", "1.2501", None)  # 1 EUR = 1.25 USD
    body = (await _get(client, user, "/api/portfolio", account_id=account_id)).json()
    assert body["problems"] == []
    assert (body["cash_base"], body["market_value_base"], body["unrealized_pnl_base"]) == ("640", "176", "16")
    assert body["equity"] == "816"


async def test_an_empty_account_has_an_empty_portfolio(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    user = await make_user(Role.TRADER)
    account_id = await _account_of(runtime, user)
    body = (await _get(client, user, "/api/portfolio", account_id=account_id)).json()
    assert (body["cash"], body["positions"], body["realized_pnl"], body["fees"], body["problems"]) == ({}, [], {}, {}, [])
    assert body["equity"] == "0"
    assert (await _get(client, user, "/api/fills", account_id=account_id)).json() == {"items": [], "next": None}
    assert (await _get(client, user, "/api/ledger", account_id=account_id)).json() == {"items": [], "next": None}


async def _pages(client: httpx.AsyncClient, user: TestUser, path: str, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    while True:
        response = await _get(client, user, path, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["id"] for item in body["items"]])
        if body["next"] is None:
            return pages
        params["before"] = body["next"]


async def test_fills_page_newest_first(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    user = await make_user(Role.TRADER)
    account_id = await _books(runtime, user)

    first = (await _get(client, user, "/api/fills", account_id=account_id)).json()
    assert [f["id"] for f in first["items"]] == ["f-4b", "f-4a", "f-3", "f-2", "f-1"]
    assert first["next"] is None
    assert first["items"][-1] == {
        "id": "f-1", "order_id": f"o-f-1-{account_id[:8]}", "symbol": "AAPL", "side": "buy", "quantity": "10",
        "price": "190.25", "fee": "1", "fee_currency": "USD", "liquidity": "taker", "ts": "2026-11-20T15:00:00.123456Z",
    }  # fmt: skip

    # Two fills share T4: the id breaks the tie, so a page boundary between them loses nothing.
    assert await _pages(client, user, "/api/fills", account_id=account_id, limit=1) == [
        ["f-4b"], ["f-4a"], ["f-3"], ["f-2"], ["f-1"]
    ]  # fmt: skip
    assert await _pages(client, user, "/api/fills", account_id=account_id, limit=2) == [["f-4b", "f-4a"], ["f-3", "f-2"], ["f-1"]]
    assert await _pages(client, user, "/api/fills", account_id=account_id, limit=2, symbol="aapl") == [["f-3", "f-2"], ["f-1"]]
    # An exact multiple of the page size ends with a null `next`, not an empty page.
    assert await _pages(client, user, "/api/fills", account_id=account_id, limit=3, symbol="AAPL") == [["f-3", "f-2", "f-1"]]
    # A plain time: fills strictly before it.
    before_t3 = await _get(client, user, "/api/fills", account_id=account_id, before="2026-11-20T15:02:00.123456Z")
    assert [f["id"] for f in before_t3.json()["items"]] == ["f-2", "f-1"]
    naive = await _get(client, user, "/api/fills", account_id=account_id, before="2026-11-20T15:01:00.123457")
    assert [f["id"] for f in naive.json()["items"]] == ["f-2", "f-1"]


async def test_ledger_pages_entries_with_their_postings(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    user = await make_user(Role.TRADER)
    account_id = await _books(runtime, user)
    suffix = account_id[:8]

    everything = (await _get(client, user, "/api/ledger", account_id=account_id)).json()
    ids = [e["id"] for e in everything["items"]]
    fills = [f"e-{f}-{suffix}" for f in ("f-4b", "f-4a", "f-3", "f-2", "f-1")]
    assert ids == [*fills, f"dep-USD-{account_id}", f"dep-AUD-{account_id}"]
    assert everything["next"] is None
    assert await _pages(client, user, "/api/ledger", account_id=account_id, limit=3) == [ids[:3], ids[3:6], ids[6:]]

    sell = everything["items"][2]
    assert {k: sell[k] for k in ("ts", "kind", "reference", "reverses")} == {
        "ts": "2026-11-20T15:02:00.123456Z", "kind": "fill", "reference": "f-3", "reverses": None,
    }  # fmt: skip
    assert sell["postings"] == [
        {"account": "position:AAPL", "currency": "USD", "amount": "-1161", "quantity": "-6"},
        {"account": "cash:USD", "currency": "USD", "amount": "1260", "quantity": None},
        {"account": "realized_pnl:USD", "currency": "USD", "amount": "-99", "quantity": None},
        {"account": "fees:USD", "currency": "USD", "amount": "1", "quantity": None},
        {"account": "cash:USD", "currency": "USD", "amount": "-1", "quantity": None},
    ]
    assert everything["items"][-1]["postings"] == [
        {"account": "cash:AUD", "currency": "AUD", "amount": "50000", "quantity": None},
        {"account": "deposits:AUD", "currency": "AUD", "amount": "-50000", "quantity": None},
    ]


async def test_other_peoples_accounts_are_404_unless_you_read_all(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    owner = await make_user(Role.TRADER)
    account_id = await _books(runtime, owner)
    other, viewer, risk, admin = [await make_user(role) for role in (Role.TRADER, Role.VIEWER, Role.RISK, Role.ADMIN)]
    paths = ["/api/positions", "/api/portfolio", "/api/fills", "/api/ledger"]
    for path in paths:
        for stranger in (other, viewer):
            response = await _get(client, stranger, path, account_id=account_id)
            assert response.status_code == 404, (path, response.text)
            assert response.json() == {
                "error": "NotFoundError",
                "detail": f"no account {account_id}: GET /api/accounts lists yours",
            }
        unknown = await _get(client, owner, path, account_id="no-such-account")
        assert unknown.status_code == 404
        assert unknown.json()["detail"].startswith("no account no-such-account")
        for reader in (risk, admin):
            assert (await _get(client, reader, path, account_id=account_id)).status_code == 200, path
    assert (await client.get("/api/portfolio", params={"account_id": account_id})).status_code == 401


async def test_bad_query_parameters_are_422(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    user = await make_user(Role.TRADER)
    account_id = await _account_of(runtime, user)
    for path in ("/api/positions", "/api/portfolio", "/api/fills", "/api/ledger"):
        missing = await _get(client, user, path)  # the user's only account (see test_order_entry_advice)
        assert missing.status_code == 200, path
        for bad in ("", "a b", "x" * 37):
            response = await _get(client, user, path, account_id=bad)
            assert response.status_code == 422, (path, bad)
            assert response.json()["detail"].startswith("query.account_id: String should")
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/api/fills", {"limit": 0}, "query.limit"),
        ("/api/fills", {"limit": 1001}, "query.limit"),
        ("/api/fills", {"limit": "ten"}, "query.limit"),
        ("/api/ledger", {"limit": 1001}, "query.limit"),
        ("/api/fills", {"before": "yesterday"}, "before: give the `next` of the previous page or an ISO 8601 time"),
        ("/api/ledger", {"before": "2026-11-20T15:00:00Z~"}, "before: give the `next`"),
        ("/api/ledger", {"before": "2026-11-20T15:00:00Z~a\x00b"}, "before: give the `next`"),
        ("/api/fills", {"before": "0001-01-01T00:00:00+01:00"}, "before: give the `next`"),
        ("/api/fills", {"symbol": "NOPE"}, "unknown symbol 'NOPE'"),
    ]
    for path, params, expected in cases:
        response = await _get(client, user, path, account_id=account_id, **params)
        assert response.status_code == 422, (path, params, response.text)
        assert response.json()["error"] == "ValidationFailedError"
        assert expected in response.json()["detail"], (params, response.json())
