"""One engine step, driven directly: the quotes that reached the shard are in force for the orders it takes in the same
step, so an order is never matched on a quote older than one the shard holds."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from tradestack.identity.permissions import Role
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import MarketDataService
from tradestack.trading import engine as engine_module
from tradestack.trading.commands import Change
from tradestack.trading.engine import EngineShard
from tradestack.trading.executions import Result, record

from ...conftest import metric_sample  # type: ignore[import-not-found]
from ..conftest import MakeUser, TestUser  # type: ignore[import-not-found]
from .conftest import PublishQuote  # type: ignore[import-not-found]
from .test_orders import limit_buy, open_account  # type: ignore[import-not-found]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"engine_in_process": False})  # the test's shard is the only one matching


async def test_an_order_taken_with_a_newer_quote_fills_at_that_quote_not_the_one_before(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "99.99", "100.00")
    shard = EngineShard(runtime)
    shard.instruments = await MarketDataService(runtime).instruments()

    async def placed(client_order_id: str, price: str, quantity: str) -> str:
        body = limit_buy(account, client_order_id, price=price, quantity=quantity)
        response = await client.post("/api/orders", json=body, headers=trader.headers)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    resting = await placed("resting", "90.00", "1")
    shard.note_changed(Change(account, resting))
    await shard.step()  # the AAPL book opens on the cached quote: ask 100.00
    assert shard.engines["AAPL"].working_order(resting) is not None

    # The newer quote and a buy it fills reach the shard before its next step: the buy fills at the newer ask,
    # never at the 100.00 the book held before.
    shard.on_quote(await publish_quote("AAPL", "100.00", "100.01"))
    buy = await placed("buy", "100.01", "2")
    shard.note_changed(Change(account, buy))
    await shard.step()
    order = (await client.get(f"/api/orders/{buy}", headers=trader.headers)).json()
    assert (order["status"], order["average_fill_price"]) == ("filled", "100.01"), order


async def test_a_step_that_fails_on_a_bug_is_counted_and_matching_goes_on(runtime: Runtime) -> None:
    """A bug in a step (not an outage) is counted in background_task_failures_total{task="engine_step"}, with its
    traceback in the log, and the engine rebuilds and steps again: one bad step does not stop matching."""
    shard = EngineShard(runtime)
    step = shard.step
    steps: list[str] = []

    async def failing_once() -> None:
        steps.append("step")
        if len(steps) == 1:
            raise KeyError("a bug in the step")
        await step()

    shard.step = failing_once  # type: ignore[method-assign]
    before = REGISTRY.get_sample_value("background_task_failures_total", {"task": "engine_step"}) or 0.0
    running = asyncio.create_task(shard.run())
    try:
        for _ in range(300):  # the loop steps at least every SESSION_CHECK_SECONDS (1 s) without being woken
            if len(steps) >= 2 or running.done():
                break
            await asyncio.sleep(0.05)
        assert len(steps) >= 2, f"the engine did not step again after the failed step ({running})"
    finally:
        shard.stop()
        await asyncio.wait_for(running, 30)
    assert REGISTRY.get_sample_value("background_task_failures_total", {"task": "engine_step"}) == before + 1


async def _submitted(client: httpx.AsyncClient, trader: TestUser, body: dict[str, Any]) -> str:
    response = await client.post("/api/orders", json=body, headers=trader.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _first_rebuild_fails(shard: EngineShard, error: Exception) -> list[str]:
    """Make the shard's first rebuild raise `error`; returns the list of rebuilds asked for, as they happen."""
    rebuild = shard.rebuild
    rebuilds: list[str] = []

    async def failing_first() -> None:
        rebuilds.append("rebuild")
        if len(rebuilds) == 1:
            raise error
        await rebuild()

    shard.rebuild = failing_first  # type: ignore[method-assign]
    return rebuilds


def _in_book(shard: EngineShard, order_id: str) -> bool:
    engine = shard.engines.get("AAPL")
    return engine is not None and engine.working_order(order_id) is not None


async def test_a_first_rebuild_that_fails_on_a_bug_is_counted_and_reconciliation_places_the_open_orders(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    publish_quote: PublishQuote,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in the first rebuild is counted in background_task_failures_total{task="engine_rebuild"}, a database
    outage there as an outage (not a bug); either way the engine goes on and its first reconciliation puts the open
    order in the book."""
    monkeypatch.setattr(engine_module, "SESSION_CHECK_SECONDS", 0.01)  # the first step comes at once
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "99.99", "100.00")
    resting = await _submitted(client, trader, limit_buy(account, "resting", price="90.00", quantity="1"))
    failures = metric_sample("background_task_failures_total", task="engine_rebuild")
    outages = metric_sample("backend_unavailable_total", backend="database", operation="engine_rebuild")
    for error in (KeyError("a bug in the rebuild"), ConnectionRefusedError("database away")):
        shard = EngineShard(runtime)
        rebuilds = _first_rebuild_fails(shard, error)
        running = asyncio.create_task(shard.run())
        try:
            for _ in range(2000):  # at most ~20 s (a loaded machine); placed at the first step
                if _in_book(shard, resting) or running.done():
                    break
                await asyncio.sleep(0.01)
            assert _in_book(shard, resting), f"the open order was not placed after {error!r} ({running})"
        finally:
            shard.stop()
            await asyncio.wait_for(running, 30)
        assert rebuilds == ["rebuild"]  # placed by reconciliation, not by a second rebuild
    assert metric_sample("background_task_failures_total", task="engine_rebuild") == failures + 1
    assert metric_sample("backend_unavailable_total", backend="database", operation="engine_rebuild") == outages + 1


async def test_an_execution_that_fails_to_record_on_a_bug_is_counted_and_booked_at_a_later_reconciliation(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    publish_quote: PublishQuote,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug while recording a fill is counted in background_task_failures_total{task="engine_record"}, a database
    outage there as an outage (not a bug); the order leaves the book, and reconciliation reloads and fills it: booked
    once, at the quote."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "99.99", "100.00")
    shard = EngineShard(runtime)
    shard.settings = runtime.settings.model_copy(update={"engine_reconcile_seconds": 0.001})  # every step reconciles
    shard.instruments = await MarketDataService(runtime).instruments()
    outcomes: list[Exception] = [KeyError("a bug in the booking"), ConnectionRefusedError("database away")]
    records: list[str] = []

    async def failing_twice(*args: Any) -> Result:
        records.append("record")
        if outcomes:
            raise outcomes.pop(0)
        return await record(*args)

    monkeypatch.setattr(engine_module, "record", failing_twice)
    buy = await _submitted(client, trader, limit_buy(account, "buy", price="100.00", quantity="2"))
    failures = metric_sample("background_task_failures_total", task="engine_record")
    outages = metric_sample("backend_unavailable_total", backend="database", operation="engine_record")
    shard.note_changed(Change(account, buy))
    await shard.step()  # the fill's booking fails on the bug; the step's reconciliation fills it again: the outage
    order = (await client.get(f"/api/orders/{buy}", headers=trader.headers)).json()
    assert order["status"] == "accepted", order  # nothing booked yet
    assert metric_sample("background_task_failures_total", task="engine_record") == failures + 1
    assert metric_sample("backend_unavailable_total", backend="database", operation="engine_record") == outages + 1
    await asyncio.sleep(0.01)
    await shard.step()  # reconciles again: the fill is booked
    order = (await client.get(f"/api/orders/{buy}", headers=trader.headers)).json()
    assert (order["status"], order["filled_quantity"], order["average_fill_price"]) == ("filled", "2", "100"), order
    assert records == ["record"] * 3
    assert metric_sample("background_task_failures_total", task="engine_record") == failures + 1
