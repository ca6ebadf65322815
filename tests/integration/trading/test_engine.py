"""The engine's guarantees, driven directly: no fill booked twice, a rebuilt book continues, day orders and sessions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import httpx
from sqlalchemy import select

from tradestack.domain.instruments import instrument
from tradestack.domain.matching import Fill
from tradestack.domain.orders import Liquidity
from tradestack.domain.portfolio import FxRates
from tradestack.identity.permissions import Role
from tradestack.kit.db import Database
from tradestack.kit.runtime import Runtime
from tradestack.models.books import FillRow
from tradestack.ops.integrity import check_integrity
from tradestack.trading.engine import _WORKING_ORDERS, EngineShard
from tradestack.trading.executions import Recorded, record
from tradestack.trading.repository import TradingRepository

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote, wait_for_order  # type: ignore[import-not-found]
from .test_orders import limit_buy, open_account  # type: ignore[import-not-found]

BTC = instrument("BTC-USD")


def _fill(order_id: str, n: int, quantity: str, price: str) -> Fill:
    return Fill(order_id, f"{order_id}-{n}", Decimal(quantity), Decimal(price), Decimal(0), Liquidity.TAKER, datetime.now(UTC))


async def test_a_fill_is_never_booked_twice_and_a_rebuilt_book_continues(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("BTC-USD", "30000.00", "30001.00", size="1")
    body = {**limit_buy(account, "rest", price="20000.00", quantity="1"), "symbol": "BTC-USD"}
    order_id = (await client.post("/api/orders", json=body, headers=trader.headers)).json()["id"]

    first = await record(runtime, account, BTC, _fill(order_id, 1, "0.25", "20000"), FxRates({}))
    assert first.outcome is Recorded.APPLIED
    again = await record(runtime, account, BTC, _fill(order_id, 1, "0.25", "20000"), FxRates({}))
    assert again.outcome is Recorded.DUPLICATE

    shard = EngineShard(runtime)
    shard.instruments = {"BTC-USD": BTC}
    await shard.rebuild()
    working = shard.engines["BTC-USD"].working_order(order_id)
    assert working is not None
    assert (working.remaining, working.fills, working.filled_notional) == (Decimal("0.75"), 1, Decimal(5000))

    async with runtime.database.read_session() as session:
        order = await TradingRepository(session).load(order_id)
    assert order is not None
    assert (order.status.value, order.filled_quantity) == ("partially_filled", Decimal("0.25"))
    assert sorted(order.fill_ids) == [f"{order_id}-1"]
    report = await check_integrity(runtime.database)
    assert report.ok, report.problems


async def test_stop_and_stop_limit_orders_trigger_on_the_quote_and_fill_in_the_books(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("BTC-USD", "30000.00", "30001.00", size="5")
    stop = {"account_id": account, "symbol": "BTC-USD", "side": "buy", "quantity": "0.1", "time_in_force": "gtc"}
    orders = {
        "stop": {**stop, "client_order_id": "stop", "type": "stop", "stop_price": "31000.00"},
        "stop-limit": {**stop, "client_order_id": "stop-limit", "type": "stop_limit", "stop_price": "31000.00",
                       "limit_price": "31100.00"},
        "stop-limit-rests": {**stop, "client_order_id": "stop-limit-rests", "type": "stop_limit",
                             "stop_price": "31000.00", "limit_price": "31010.00"},
    }  # fmt: skip
    ids = {}
    for name, body in orders.items():
        created = await client.post("/api/orders", json=body, headers=trader.headers)
        assert created.status_code == 201, created.text
        ids[name] = created.json()["id"]
    await asyncio.sleep(0.2)  # the engine has the orders and the quote: below the stops, nothing happens
    for order_id in ids.values():
        assert (await client.get(f"/api/orders/{order_id}", headers=trader.headers)).json()["status"] == "accepted"

    await publish_quote("BTC-USD", "31049.00", "31050.00", size="5")  # the ask reaches the stops
    for name in ("stop", "stop-limit"):
        filled = await wait_for_order(client, ids[name], trader.headers, lambda o: o["status"] == "filled")
        assert filled["average_fill_price"] == "31050", (name, filled)
        events = (await client.get(f"/api/orders/{ids[name]}/events", headers=trader.headers)).json()
        assert [e["kind"] for e in events] == ["submitted", "accepted", "triggered", "filled"], name
    # Triggered, its limit below the ask: it now rests as a limit order.
    rests = await wait_for_order(client, ids["stop-limit-rests"], trader.headers, lambda o: o["status"] != "accepted")
    assert (rests["status"], rests["filled_quantity"]) == ("triggered", "0")
    async with runtime.database.read_session() as session:
        fills = (await session.execute(select(FillRow.order_id, FillRow.quantity, FillRow.price))).all()
    assert sorted(tuple(f) for f in fills) == sorted(
        (ids[name], Decimal("0.1"), Decimal(31050)) for name in ("stop", "stop-limit")
    )
    report = await check_integrity(runtime.database)
    assert report.ok, report.problems


async def test_reconciliation_picks_up_a_working_order_it_was_not_told_of_and_drops_one_that_ended(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    shard = EngineShard(runtime)  # started empty: it hears of neither order below
    shard.instruments = {"BTC-USD": BTC}
    await publish_quote("BTC-USD", "30000.00", "30001.00", size="1")
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    ids = []
    for name in ("kept", "ended"):
        body = {**limit_buy(account, name, price="20000.00", quantity="1"), "symbol": "BTC-USD"}
        ids.append((await client.post("/api/orders", json=body, headers=trader.headers)).json()["id"])
    await shard.reconcile()
    assert {order_id: shard.owners.get(order_id) for order_id in ids} == {order_id: account for order_id in ids}
    assert (await client.delete(f"/api/orders/{ids[1]}", headers=trader.headers)).status_code == 200
    await shard.reconcile()
    assert (ids[0] in shard.owners, ids[1] in shard.owners) == (True, False)
    assert shard.engines["BTC-USD"].working_order(ids[0]) is not None


async def test_reconciliation_reads_only_the_working_orders_through_their_partial_index(database: Database) -> None:
    """The read every shard makes every `engine_reconcile_seconds` goes through `ix_orders_working`, not over every
    order ever placed: the planner can use that index only while the query names the statuses as the index does."""
    async with database.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            plan = " ".join(str(row[-1]) for row in await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {_WORKING_ORDERS}"))
        else:  # an empty table is cheapest to scan: forbid that, so the plan shows which index the query may use
            await connection.exec_driver_sql("SET enable_seqscan = off")
            plan = " ".join(str(row[0]) for row in await connection.exec_driver_sql(f"EXPLAIN {_WORKING_ORDERS}"))
    assert "ix_orders_working" in plan, plan
