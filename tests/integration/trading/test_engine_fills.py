"""The engine's group commit: the executions of one step written in one transaction, each decided as on its own (an
account's cash after the earlier fills of the group, an order's fills in order), one failing event recorded apart."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Connection

from tradestack.books import booking
from tradestack.domain.matching import Fill, Liquidity, Triggered
from tradestack.domain.portfolio import FxRates
from tradestack.identity.permissions import Role
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import MarketDataService
from tradestack.ops.integrity import check_integrity
from tradestack.trading import engine as engine_module
from tradestack.trading.commands import Change
from tradestack.trading.engine import EngineShard
from tradestack.trading.executions import Recorded, record, record_many
from tradestack.trading.repository import ConcurrentUpdate, TradingRepository

from ..conftest import MakeUser, TestUser  # type: ignore[import-not-found]
from .conftest import PublishQuote, engine_listeners  # type: ignore[import-not-found]
from .test_engine import BTC, _fill  # type: ignore[import-not-found]
from .test_orders import limit_buy, open_account  # type: ignore[import-not-found]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"engine_in_process": False})  # the test's shard is the only one matching


@contextmanager
def fills_per_commit() -> Iterator[list[int]]:
    """The number of fills each committed transaction wrote (those that wrote none left out), while in the block: the
    rows its INSERTs into ``fills`` wrote (their row counts), counted on its connection from its BEGIN to its COMMIT."""
    committed: list[int] = []

    def begun(connection: Connection) -> None:
        connection.info["fills_written"] = 0

    def executed(connection: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO FILLS"):
            connection.info["fills_written"] = connection.info.get("fills_written", 0) + cursor.rowcount

    def committed_counted(connection: Connection) -> None:
        written = connection.info.pop("fills_written", 0)
        if written:
            committed.append(written)

    with engine_listeners(("begin", begun), ("after_cursor_execute", executed), ("commit", committed_counted)):
        yield committed


def market_buy(account: str, client_order_id: str, quantity: str) -> dict[str, Any]:
    """A day market buy of BTC-USD (no limit: any fill price is one the order admits)."""
    return {"account_id": account, "client_order_id": client_order_id, "symbol": "BTC-USD", "side": "buy",
            "type": "market", "quantity": quantity, "time_in_force": "day"}  # fmt: skip


async def _resting(client: httpx.AsyncClient, trader: TestUser, account: str, name: str, price: str, quantity: str) -> str:
    response = await client.post(
        "/api/orders", json=limit_buy(account, name, price=price, quantity=quantity), headers=trader.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _shard_with_resting(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime, accounts: int, each: int
) -> tuple[EngineShard, list[str]]:
    """A shard whose AAPL book holds `each` resting buys (limit 100.00) of each of `accounts` accounts."""
    await publish_quote("AAPL", "100.50", "101.00")
    shard = EngineShard(runtime)
    shard.instruments = await MarketDataService(runtime).instruments()
    orders: list[str] = []
    for _ in range(accounts):
        trader = await make_user(Role.TRADER)
        account = await open_account(client, trader)
        for n in range(each):
            order_id = await _resting(client, trader, account, f"rest-{n}", "100.00", "1")
            shard.note_changed(Change(account, order_id))
            orders.append(order_id)
    await shard.step()
    assert all(shard.engines["AAPL"].working_order(order_id) is not None for order_id in orders)
    return shard, orders


async def _statuses(runtime: Runtime, order_ids: list[str]) -> dict[str, str]:
    """The stored status of each order, by id."""
    async with runtime.database.read_session() as session:
        loaded = await TradingRepository(session).load_many(order_ids)
    return {order_id: order.status.value for order_id, order in loaded.items()}


@pytest.mark.parametrize(
    ("group_most", "commits"),
    [
        (None, {"postgresql": [9], "sqlite": [9]}),  # one transaction for the quote's nine fills, where each had its
        # own; on SQLite too (`SQLITE_GROUP_MOST` 10: a group decided in memory holds the process's one writer briefly)
        (20, {"postgresql": [9], "sqlite": [9]}),  # the grouping itself, on both
        (4, {"postgresql": [4, 4, 1], "sqlite": [4, 4, 1]}),  # a group holds its accounts' locks while it writes: bounded
    ],
    ids=["defaults", "groups-of-20", "groups-of-4"],
)
async def test_the_fills_of_one_quote_are_written_in_one_transaction_or_groups_of_at_most_group_most(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    publish_quote: PublishQuote,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    group_most: int | None,
    commits: dict[str, list[int]],
) -> None:
    shard, orders = await _shard_with_resting(client, make_user, publish_quote, runtime, accounts=3, each=3)
    if group_most is not None:
        monkeypatch.setattr(engine_module, "GROUP_MOST", group_most)
        monkeypatch.setattr(engine_module, "SQLITE_GROUP_MOST", group_most)
    shard.on_quote(await publish_quote("AAPL", "99.50", "99.90"))
    with fills_per_commit() as committed:
        await shard.step()
    assert committed == commits[runtime.database.dialect]
    assert set((await _statuses(runtime, orders)).values()) == {"filled"}
    assert all(shard.engines["AAPL"].working_order(order_id) is None for order_id in orders)
    report = await check_integrity(runtime.database)
    assert report.ok, report.problems


async def test_an_event_that_fails_in_the_group_is_recorded_apart_and_the_others_are_written(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    publish_quote: PublishQuote,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shard, orders = await _shard_with_resting(client, make_user, publish_quote, runtime, accounts=2, each=2)
    bad = orders[1]
    fill_entry = booking.fill_entry

    def failing(*args: Any, **kwargs: Any) -> Any:
        if str(kwargs["reference"]).startswith(bad):  # the fill's id: its order's and a number
            raise RuntimeError("the journal is unwell")
        return fill_entry(*args, **kwargs)

    monkeypatch.setattr(booking, "fill_entry", failing)
    shard.on_quote(await publish_quote("AAPL", "99.50", "99.90"))
    with fills_per_commit() as committed:
        await shard.step()
    assert committed == [1, 1, 1]  # the group rolled back; the others then each in a transaction of its own
    assert await _statuses(runtime, orders) == {order_id: "accepted" if order_id == bad else "filled" for order_id in orders}
    assert shard.engines["AAPL"].working_order(bad) is None  # left the book: reconciliation reloads it
    report = await check_integrity(runtime.database)
    assert report.ok, report.problems


async def test_a_fill_the_account_cannot_pay_for_cancels_the_order(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "1000")
    await publish_quote("BTC-USD", "19999.00", "20000.00", size="1")
    response = await client.post("/api/orders", json=market_buy(account, "small", "0.04"), headers=trader.headers)
    assert response.status_code == 201, response.text
    order_id = response.json()["id"]
    # A market order filled at a price far beyond what was reserved (as if the market had gapped): the cash guard
    # refuses it.
    result = await record(runtime, account, BTC, _fill(order_id, 1, "0.04", "40000"), FxRates({}))
    assert result.outcome is Recorded.CANCELED
    assert result.order is not None
    assert result.order.status == "canceled"
    assert "not enough cash" in (result.order.reason or "")
    accounts = {a["id"]: a for a in (await client.get("/api/accounts", headers=trader.headers)).json()}
    assert accounts[account]["cash"] == {"USD": "1000"}


async def test_a_fill_that_costs_exactly_the_cash_is_booked(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "1000")
    await publish_quote("BTC-USD", "9999.00", "10000.00", size="1")
    ids = []
    for name in ("one-too-many", "exact"):
        response = await client.post("/api/orders", json=market_buy(account, name, "0.04"), headers=trader.headers)
        assert response.status_code == 201, response.text  # ~400 reserved each
        ids.append(response.json()["id"])
    # Market orders filled far above the quote they were priced at (as if the market had gapped): 0.04 x 24,975 = 999
    # of the 1,000 USD.
    # With a fee of 2 that is one dollar more than the account has.
    now = datetime.now(UTC)
    short = Fill(ids[0], f"{ids[0]}-1", Decimal("0.04"), Decimal(24975), Decimal(2), Liquidity.TAKER, now)
    assert (await record(runtime, account, BTC, short, FxRates({}))).outcome is Recorded.CANCELED
    # With a fee of 1 it takes every last cent, which is enough.
    fill = Fill(ids[1], f"{ids[1]}-1", Decimal("0.04"), Decimal(24975), Decimal(1), Liquidity.TAKER, now)
    result = await record(runtime, account, BTC, fill, FxRates({}))
    assert result.outcome is Recorded.APPLIED
    assert result.order is not None
    assert result.order.status == "filled"
    assert result.fill is not None
    assert (result.fill.fill_id, result.fill.quantity, result.fill.price, result.fill.fee) == (
        f"{ids[1]}-1",
        Decimal("0.04"),
        Decimal(24975),
        Decimal(1),
    )
    # What the engine publishes on the portfolio channel: cash and positions after the fill.
    assert result.books is not None
    books = {name: {k: v if k == "currency" else Decimal(v) for k, v in b.items()} for name, b in result.books.items()}
    assert books == {
        "cash:USD": {"currency": "USD", "amount": Decimal(0)},
        "position:BTC-USD": {"currency": "USD", "amount": Decimal(999), "quantity": Decimal("0.04")},
    }
    accounts = {a["id"]: a for a in (await client.get("/api/accounts", headers=trader.headers)).json()}
    assert accounts[account]["cash"] == {"USD": "0"}
    # The order is over: a late fill or trigger for it is dropped, and books nothing.
    late = await record(runtime, account, BTC, Fill(ids[1], f"{ids[1]}-2", Decimal("0.01"), Decimal(1), Decimal(0),
                                                    Liquidity.TAKER, now), FxRates({}))  # fmt: skip
    assert (late.outcome, late.order, late.books) == (Recorded.GONE, None, None)
    assert (await record(runtime, account, BTC, Triggered(ids[0], now), FxRates({}))).outcome is Recorded.GONE


async def test_a_group_sees_the_cash_its_earlier_fills_spent_and_applies_an_orders_fills_in_order(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "1000")
    await publish_quote("BTC-USD", "4999.00", "5000.00", size="1")
    ids = []
    for name in ("first", "second", "third"):
        response = await client.post("/api/orders", json=market_buy(account, name, "0.04"), headers=trader.headers)
        assert response.status_code == 201, response.text  # ~200 reserved each
        ids.append(response.json()["id"])
    # Market orders filled far above the quote they were priced at (as if the market had gapped): 0.01 + 0.03 of the
    # first at 10,000 (400 USD), then 0.04 of the second (400 USD): 800 of the 1,000. The third's 400 more is more than
    # the 200 the others left.
    events = [
        _fill(ids[0], 1, "0.01", "10000"),
        _fill(ids[1], 1, "0.04", "10000"),
        _fill(ids[0], 2, "0.03", "10000"),
        _fill(ids[2], 1, "0.04", "10000"),
    ]
    with fills_per_commit() as committed:
        results = await record_many(runtime, BTC, [(account, fill) for fill in events], FxRates({}))
    assert [result.outcome for result in results] == [Recorded.APPLIED] * 3 + [Recorded.CANCELED]
    assert committed == [3]
    assert [result.order.status if result.order else None for result in results] == [
        "partially_filled",
        "filled",
        "filled",
        "canceled",
    ]
    assert "not enough cash" in (results[3].order.reason or "" if results[3].order else "")
    async with runtime.database.read_session() as session:
        first = await TradingRepository(session).load(ids[0])
    assert first is not None
    assert (first.fill_ids, first.filled_quantity) == ({f"{ids[0]}-1", f"{ids[0]}-2"}, Decimal("0.04"))
    accounts = {a["id"]: a for a in (await client.get("/api/accounts", headers=trader.headers)).json()}
    assert accounts[account]["cash"] == {"USD": "200"}
    # Written again (a replay), nothing is booked twice.
    again = await record_many(runtime, BTC, [(account, fill) for fill in events], FxRates({}))
    assert [result.outcome for result in again] == [Recorded.GONE] * 4
    report = await check_integrity(runtime.database)
    assert report.ok, report.problems


_WRITE = re.compile(r"\b(UPDATE|INSERT INTO)\s+(\w+)")
_ORDER_PATH = {"trading_accounts", "orders", "order_events", "fills", "journal_entries", "postings", "balances"}


@contextmanager
def statements_by_table() -> Iterator[dict[str, int]]:
    """The statements writing the order path's tables every connection runs while in the block, by what they do and
    to which table (``INSERT fills``, ``UPDATE orders``, ...; an executemany counts once)."""
    counted: dict[str, int] = {}

    def executing(_: Connection, __: Any, statement: str, *___: Any) -> None:
        write = _WRITE.search(statement)
        if write is not None and write[2] in _ORDER_PATH:
            key = f"{write[1].split()[0]} {write[2]}"
            counted[key] = counted.get(key, 0) + 1

    with engine_listeners(("before_cursor_execute", executing)):
        yield counted


async def test_a_group_writes_each_table_in_one_statement_whatever_its_number_of_fills(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    publish_quote: PublishQuote,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shard, orders = await _shard_with_resting(client, make_user, publish_quote, runtime, accounts=3, each=3)
    monkeypatch.setattr(engine_module, "SQLITE_GROUP_MOST", 20)  # one group of nine on both backends
    shard.on_quote(await publish_quote("AAPL", "99.50", "99.90"))
    with statements_by_table() as written, fills_per_commit() as committed:
        await shard.step()
    assert committed == [9]
    # The three accounts locked in one statement; each table written once for the nine fills (the balances too: each
    # account's cash, position and rounding once, at the group's net), where each fill cost a statement or more a table.
    assert written == {
        "UPDATE trading_accounts": 1,
        "UPDATE orders": 1,
        "INSERT order_events": 1,
        "INSERT fills": 1,
        "INSERT journal_entries": 1,
        "INSERT postings": 1,
        "INSERT balances": 1,
    }
    assert set((await _statuses(runtime, orders)).values()) == {"filled"}
    report = await check_integrity(runtime.database)
    assert report.ok, report.problems


async def test_an_order_changed_since_the_group_read_it_fails_the_group_and_alone_is_gone(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    publish_quote: PublishQuote,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("BTC-USD", "30000.00", "30001.00", size="1")
    ids = []
    for name in ("kept", "changed"):
        body = {**limit_buy(account, name, price="30000.00", quantity="0.01"), "symbol": "BTC-USD"}
        response = await client.post("/api/orders", json=body, headers=trader.headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    kept, changed = ids
    versions_of = TradingRepository.versions_of

    async def read_before_a_change(self: TradingRepository, order_ids: Any) -> dict[str, int]:
        """The versions as read before someone appended to `changed`: its stored row is one ahead."""
        versions = await versions_of(self, order_ids)
        return {order_id: version - 1 if order_id == changed else version for order_id, version in versions.items()}

    monkeypatch.setattr(TradingRepository, "versions_of", read_before_a_change)
    events = [(account, _fill(kept, 1, "0.01", "30000")), (account, _fill(changed, 1, "0.01", "30000"))]
    with fills_per_commit() as committed, pytest.raises(ConcurrentUpdate):
        await record_many(runtime, BTC, events, FxRates({}))
    assert committed == []  # rolled back: the other order's fill too
    assert await _statuses(runtime, ids) == {kept: "accepted", changed: "accepted"}
    # Each on its own, as the engine then records them: the changed order's event is dropped, nothing of it written.
    with fills_per_commit() as committed:
        alone = [await record_many(runtime, BTC, [one], FxRates({})) for one in events]
    assert [result.outcome for [result] in alone] == [Recorded.APPLIED, Recorded.GONE]
    assert committed == [1]
    assert await _statuses(runtime, ids) == {kept: "filled", changed: "accepted"}
    report = await check_integrity(runtime.database)
    assert report.ok, report.problems


async def test_a_fill_matched_on_terms_a_replace_changed_is_not_booked_and_the_order_works_on_with_its_new_terms(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    """A replace acknowledged before the engine heard of it: the quote the engine matches the old terms against (a buy
    at 100.00) fills nothing the new terms (99.00) refuse; the engine reads the order again, places its stored terms,
    and fills them when the market reaches them."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "100.50", "101.00")
    order_id = await _resting(client, trader, account, "replaced", "100.00", "10")
    shard = EngineShard(runtime)
    shard.instruments = await MarketDataService(runtime).instruments()
    shard.note_changed(Change(account, order_id))
    await shard.step()
    replaced = await client.patch(f"/api/orders/{order_id}", json={"limit_price": "99.00"}, headers=trader.headers)
    assert replaced.status_code == 200, replaced.text  # acknowledged; this shard is not told (as if it had not heard yet)
    book = shard.engines["AAPL"]
    assert (book.working_order(order_id) or pytest.fail("not in the book")).limit_price == Decimal("100.00")
    shard.on_quote(await publish_quote("AAPL", "99.20", "99.50"))  # crosses the old limit, not the new one
    await shard.step()
    async with runtime.database.read_session() as session:
        stored = await TradingRepository(session).load(order_id)
    assert stored is not None
    assert (stored.status.value, stored.filled_quantity, stored.fill_ids) == ("accepted", Decimal(0), frozenset())
    working = book.working_order(order_id)  # read again in the same step: the stored terms
    assert working is not None
    assert (working.limit_price, working.remaining) == (Decimal("99.00"), Decimal(10))
    shard.on_quote(await publish_quote("AAPL", "98.50", "98.90"))
    await shard.step()
    async with runtime.database.read_session() as session:
        stored = await TradingRepository(session).load(order_id)
    assert stored is not None
    assert (stored.status.value, stored.filled_quantity) == ("filled", Decimal(10))
    assert stored.average_fill_price is not None
    assert stored.average_fill_price <= Decimal("99.00")
    report = await check_integrity(runtime.database)
    assert report.ok, report.problems
