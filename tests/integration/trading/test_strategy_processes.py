"""A strategy deployed with /api/strategy keeps trading through `kill -9` of the process running it, without a
duplicate order: its state comes back from its orders and fills, its client order ids are deterministic."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tradestack.kit.config import Settings

from .processes import (  # type: ignore[import-not-found]
    PASSWORD,
    Processes,
    QuotePump,
    cli_ok,
    free_port,
    process_env,
    trader_session,
    wait_logged,
    wait_ready,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # process start-ups are slow on a loaded machine
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


def _check_no_duplicates(
    orders: list[dict[str, Any]], before: list[dict[str, Any]], after: list[dict[str, Any]], status: dict[str, Any]
) -> None:
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


async def _deploy(http: httpx.AsyncClient, account: str) -> tuple[str, str]:
    body = {
        "strategy": "sma_cross",
        "account_id": account,
        "symbols": ["BTC-USD"],
        "params": {"fast": 1, "slow": 2, "quantity": str(QUANTITY)},
        "bar_seconds": 1,
    }
    deployed = await http.post("/api/strategy", json=body)
    assert deployed.status_code == 201, deployed.text
    return deployed.json()["id"], deployed.json()["order_prefix"]


async def _stop_and_read(http: httpx.AsyncClient, account: str, prefix: str, deployment: str) -> tuple[list[Any], Any]:
    stopped = await http.post(f"/api/strategy/{deployment}/stop")
    assert stopped.status_code == 200, stopped.text
    await asyncio.sleep(2)  # whatever was working fills or stays open; nothing new is sent
    orders = await _strategy_orders(http, account, prefix)
    return orders, (await http.get(f"/api/strategy/{deployment}")).json()


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
        deployment, prefix = await _deploy(http, account)
        before = await _until_orders(http, account, prefix, 2, 90)
        processes.kill(up)
        up = processes.start("up", up_args, env)
        await wait_ready(base, up, timeout=180)  # a loaded CI machine starts `up` slowly
        after = await _until_orders(http, account, prefix, len(before) + 2, 90)
        orders, status = await _stop_and_read(http, account, prefix, deployment)

    _check_no_duplicates(orders, before, after, status)
    assert processes.errors() == []
    cli_ok(env, tmp_path, "check", "integrity")


@pytest.mark.postgres
@pytest.mark.redis
async def test_serve_strategies_survives_kill_9_without_duplicate_orders(
    tmp_path: Path, processes: Processes, postgres_url: str, redis_server: str
) -> None:
    """Production: `serve api`, `serve engine` and `serve strategies` on PostgreSQL and Redis; the test publishes
    the quotes as `serve marketdata` would. kill -9 of the strategies process, then a new one."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    env = process_env(
        tmp_path,
        TRADESTACK_DATABASE_URL=postgres_url,
        TRADESTACK_REDIS_URL=redis_server,
        TRADESTACK_REDIS_NAMESPACE=namespace,
        TRADESTACK_MARKETDATA_FEEDS="[]",
    )
    try:
        cli_ok(env, tmp_path, "db", "upgrade")
        base = f"http://127.0.0.1:{free_port()}"
        api = processes.start("api", ["serve", "api", "--port", base.rsplit(":", 1)[1]], env)
        await wait_ready(base, api, timeout=180)
        engine = processes.start("engine", ["serve", "engine", "--shard", "0"], env)
        await wait_logged(engine, "paper matching engine started", 120)
        runner = processes.start("strategies", ["serve", "strategies"], env)
        await wait_logged(runner, "strategy runner started", 120)
        headers, account = await trader_session(base, env, tmp_path, "1000000")
        pump = Settings(database_url=postgres_url, redis_url=redis_server, redis_namespace=namespace, data_dir=tmp_path / "pump")
        async with (
            QuotePump(pump, "BTC-USD", low=39_900, high=40_100),
            httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http,
        ):
            deployment, prefix = await _deploy(http, account)
            before = await _until_orders(http, account, prefix, 2, 90)
            processes.kill(runner)
            runner = processes.start("strategies", ["serve", "strategies"], env)
            await wait_logged(runner, "strategy runner started", 120)
            after = await _until_orders(http, account, prefix, len(before) + 2, 90)
            orders, status = await _stop_and_read(http, account, prefix, deployment)
        _check_no_duplicates(orders, before, after, status)
        assert processes.errors() == []
        cli_ok(env, tmp_path, "check", "integrity")
    finally:
        with redis.Redis.from_url(redis_server) as client:
            keys = list(client.scan_iter(f"{namespace}:*"))
            if keys:
                client.delete(*keys)
