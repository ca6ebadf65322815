"""The gauges the engine keeps about all books: the execution success ratio, counted by the database through its index;
the engine refreshing them by itself."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event

from tradestack.domain.instruments import Instrument
from tradestack.domain.portfolio import FxRates
from tradestack.identity.permissions import Role
from tradestack.kit.aio import stop_tasks
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.trading import engine as engine_module
from tradestack.trading.engine import EngineShard
from tradestack.trading.executions import Recorded, record
from tradestack.trading.metrics import update_trading_gauges

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote  # type: ignore[import-not-found]
from .test_engine import BTC, _fill  # type: ignore[import-not-found]
from .test_orders import limit_buy, open_account  # type: ignore[import-not-found]


async def test_the_success_ratio_counts_the_ended_orders_that_got_a_fill(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("BTC-USD", "30000.00", "30001.00", size="1")
    ids = {}
    for name in ("filled", "canceled-unfilled", "canceled-part-filled", "working", "denied"):
        quantity = "1000" if name == "denied" else "1"  # beyond the notional limit: denied, never accepted
        body = {**limit_buy(account, name, price="20000.00", quantity=quantity), "symbol": "BTC-USD"}
        created = await client.post("/api/orders", json=body, headers=trader.headers)
        assert created.status_code == (422 if name == "denied" else 201), created.text
        ids[name] = created.json()["id" if name != "denied" else "order_id"]

    async def fill(name: str, quantity: str) -> None:
        done = await record(runtime, account, BTC, _fill(ids[name], 1, quantity, "20000"), FxRates({}))
        assert done.outcome is Recorded.APPLIED

    await fill("filled", "1")
    await fill("canceled-part-filled", "0.25")
    for name in ("canceled-unfilled", "canceled-part-filled"):
        assert (await client.delete(f"/api/orders/{ids[name]}", headers=trader.headers)).status_code == 200

    await update_trading_gauges(runtime, {"BTC-USD": BTC})
    # ended: filled, and the two canceled (the working one has not ended; the denied one was never accepted); of them
    # two got a fill
    assert REGISTRY.get_sample_value("trade_execution_success_ratio") == pytest.approx(2 / 3)


async def test_the_ended_orders_are_counted_through_their_partial_index(runtime: Runtime) -> None:
    """The count runs every 10 s: through `ix_orders_finished`, not over every order ever placed. The planner can use
    that index only while the statement names the statuses as the index does (SQLite: as literals, in that order)."""
    sent: list[tuple[str, Any]] = []
    caller = threading.get_ident()

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if "count(*)" in statement and threading.get_ident() == caller:  # not the embedded engine's own refresh
            sent.append((statement, parameters))

    engine = runtime.database.engine
    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        await update_trading_gauges(runtime, {})
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    [(statement, parameters)] = sent
    async with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            plan = " ".join(str(row[-1]) for row in rows)
        else:  # an empty table is cheapest to scan: forbid that, so the plan shows which index the statement may use
            await connection.exec_driver_sql("SET enable_seqscan = off")
            plan = " ".join(str(row[0]) for row in await connection.exec_driver_sql(f"EXPLAIN {statement}", parameters))
    assert "ix_orders_finished" in plan, plan


class TestTheEngineKeepsTheGauges:
    """Beside its loop (a step never waits for the gauges' reads), on its own clock, through a failure."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"engine_gauges_seconds": 0.1})

    async def test_the_embedded_engine_refreshes_the_gauges_by_itself(
        self, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        trader = await make_user(Role.TRADER)
        await open_account(client, trader, amount="24681.35", currency="CHF")
        for _ in range(200):  # every 0.1 s: the account's cash shows up without anyone asking
            if REGISTRY.get_sample_value("portfolio_value", {"currency": "CHF"}) == pytest.approx(24681.35):
                break
            await asyncio.sleep(0.05)
        assert REGISTRY.get_sample_value("portfolio_value", {"currency": "CHF"}) == pytest.approx(24681.35)

    async def test_a_failed_refresh_waits_for_the_next(self, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        seen: list[Mapping[str, Instrument] | None] = []

        async def refresh(of: Runtime, instruments: Mapping[str, Instrument] | None) -> None:
            if of is not runtime:  # the app's own engine (on a twin of the runtime) refreshes too
                return
            seen.append(instruments)
            if len(seen) == 1:
                raise RuntimeError("the first refresh fails")

        monkeypatch.setattr(engine_module, "update_trading_gauges", refresh)
        shard = EngineShard(runtime)
        task = asyncio.create_task(shard.keep_gauges())
        try:
            for _ in range(200):
                if len(seen) >= 3:
                    break
                await asyncio.sleep(0.05)
        finally:
            shard.stop()
            await stop_tasks([task], "test gauges")
        assert len(seen) >= 3
        assert seen[0] is None  # the shard has not read the instruments yet: the refresh reads them
