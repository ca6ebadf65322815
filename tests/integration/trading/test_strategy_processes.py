"""A strategy deployed with /api/strategy keeps trading through `kill -9` of the process running it, without a
duplicate order: its state comes back from its orders and fills, its client order ids are deterministic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from .processes import (  # type: ignore[import-not-found]
    PASSWORD,
    Processes,
    cli_ok,
    free_port,
    process_env,
    trader_session,
    wait_ready,
)

pytestmark = pytest.mark.slow
QUANTITY = Decimal("0.001")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.close()


async def _strategy_orders(http: httpx.AsyncClient, account: str, prefix: str) -> list[dict[str, Any]]:
    response = await http.get("/api/orders", params={"account_id": account, "limit": 500})
    assert response.status_code == 200, response.text
    mine = [o for o in response.json()["items"] if o["client_order_id"].startswith(prefix)]
    return sorted(mine, key=lambda o: (o["created_at"], o["id"]))


async def _until_orders(http: httpx.AsyncClient, account: str, prefix: str, count: int, seconds: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    orders: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        orders = await _strategy_orders(http, account, prefix)
        if len(orders) >= count:
            return orders
        await asyncio.sleep(0.5)
    raise AssertionError(f"the strategy sent {len(orders)} orders in {seconds} s, expected {count}: {orders}")


async def test_a_deployed_strategy_survives_kill_9_without_duplicate_orders(tmp_path: Path, processes: Processes) -> None:
    data_dir = tmp_path / "data"
    env = process_env(
        tmp_path,
        TRADESTACK_DATA_DIR=str(data_dir),
        TRADESTACK_ADMIN_PASSWORD=PASSWORD,
        TRADESTACK_MARKETDATA_FEEDS='["synthetic"]',
        TRADESTACK_MARKETDATA_SYMBOLS='["BTC-USD"]',
        TRADESTACK_REPLAY_TICK_SECONDS="0.05",
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    up_args = ["up", "--no-demo-data", "--port", str(port), "--data-dir", str(data_dir)]
    up = processes.start("up", up_args, env)
    await wait_ready(base, up, timeout=180)  # a loaded CI machine starts `up` slowly
    headers, account = await trader_session(base, env, tmp_path, "1000000")
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        body = {
            "strategy": "sma_cross",
            "account_id": account,
            "symbols": ["BTC-USD"],
            "params": {"fast": 1, "slow": 2, "quantity": str(QUANTITY)},
            "bar_seconds": 1,
        }
        deployed = await http.post("/api/strategy", json=body)
        assert deployed.status_code == 201, deployed.text
        deployment, prefix = deployed.json()["id"], deployed.json()["order_prefix"]

        before = await _until_orders(http, account, prefix, 2, 90)
        processes.kill(up)
        up = processes.start("up", up_args, env)
        await wait_ready(base, up, timeout=180)  # a loaded CI machine starts `up` slowly
        after = await _until_orders(http, account, prefix, len(before) + 2, 90)
        stopped = await http.post(f"/api/strategy/{deployment}/stop")
        assert stopped.status_code == 200, stopped.text
        await asyncio.sleep(2)  # whatever was working fills or stays open; nothing new is sent
        orders = await _strategy_orders(http, account, prefix)
        status = (await http.get(f"/api/strategy/{deployment}")).json()

    assert len(orders) >= len(after) > len(before)
    ids = [o["client_order_id"] for o in orders]
    assert len(set(ids)) == len(ids)
    # Long-only and one order at a time: buy, sell, buy, sell... A restart that forgot its position or its
    # working order would buy twice in a row.
    sides = [o["side"] for o in orders if o["status"] != "denied"]
    assert sides == ["buy", "sell"] * (len(sides) // 2) + ["buy"] * (len(sides) % 2), sides
    held = Decimal(0)
    for order in orders:
        filled = Decimal(order["filled_quantity"])
        held += filled if order["side"] == "buy" else -filled
        assert Decimal(0) <= held <= QUANTITY, orders
    assert status["orders"] == len(orders)
    assert status["state"] == "stopped"
    assert status["fills"] >= len(after) - 1
    assert Decimal(status["positions"][0]["quantity"] if status["positions"] else 0) == held
    assert processes.errors() == []
    cli_ok(env, tmp_path, "check", "integrity")
