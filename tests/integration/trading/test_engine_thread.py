"""The embedded engine runs on a thread and event loop of its own: its work never holds the request loop."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.trading.engine import EngineShard
from tradestack.trading.events import ACCOUNT_CHANNEL

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote, wait_for_order  # type: ignore[import-not-found]
from .test_orders import limit_buy, open_account  # type: ignore[import-not-found]

BLOCKING_STEP_SECONDS = 0.5


async def test_a_blocking_engine_step_does_not_delay_the_request_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    stepped_on: set[int] = set()
    step = EngineShard.step

    async def blocking_step(self: EngineShard) -> None:
        stepped_on.add(threading.get_ident())
        time.sleep(BLOCKING_STEP_SECONDS)  # holds whichever loop runs the engine, as slow matching would
        await step(self)

    monkeypatch.setattr(EngineShard, "step", blocking_step)
    worst = 0.0
    finish = time.monotonic() + 3 * BLOCKING_STEP_SECONDS + 1.0  # the engine steps at least once a second
    while time.monotonic() < finish:
        started = time.perf_counter()
        response = await client.get("/api/health")
        await asyncio.sleep(0.01)  # a blocked loop shows here too: the round takes the whole block
        worst = max(worst, time.perf_counter() - started)
        assert response.status_code == 200
    assert stepped_on, "the engine did not step during the test"
    assert worst < BLOCKING_STEP_SECONDS / 2, f"a request round took {worst:.3f} s while the engine was blocked"
    assert threading.get_ident() not in stepped_on, "the engine stepped on the request loop's thread"


async def test_orders_fill_and_stream_from_the_engine_thread_and_stop_cleanly(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    async with runtime.bus.subscribe(ACCOUNT_CHANNEL) as updates:
        await publish_quote("BTC-USD", "30000.00", "30001.00", size="5")
        order_ids = []
        for n in range(5):
            order = limit_buy(account, f"thread-{n}", "30001.00", "0.01", symbol="BTC-USD")
            response = await client.post("/api/orders", json=order, headers=trader.headers)
            assert response.status_code == 201, response.text
            order_ids.append(response.json()["id"])
        for order_id in order_ids:
            await wait_for_order(client, order_id, trader.headers, lambda o: o["status"] == "filled")
        seen = b""
        async with asyncio.timeout(5):
            while not all(order_id.encode() in seen for order_id in order_ids) or b'"fill"' not in seen:
                seen += (await anext(updates)).data
    threads = {thread.name for thread in threading.enumerate()}
    assert "trading-engine" in threads
    (stop,) = [closer for closer in runtime.closers if getattr(closer, "__qualname__", "") == "EngineThread.stop"]
    runtime.closers.remove(stop)
    started = time.monotonic()
    await stop()
    assert time.monotonic() - started < 10
    assert "trading-engine" not in {thread.name for thread in threading.enumerate()}
