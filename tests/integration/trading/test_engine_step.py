"""One engine step, driven directly: the quotes that reached the shard are in force for the orders it takes in the same
step, so an order is never matched on a quote older than one the shard holds."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client import REGISTRY

from tradestack.identity.permissions import Role
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import MarketDataService
from tradestack.trading.commands import Change
from tradestack.trading.engine import EngineShard

from ..conftest import MakeUser  # type: ignore[import-not-found]
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
