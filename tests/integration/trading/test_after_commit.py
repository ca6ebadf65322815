"""The order desk's after-commit work with the engine and the WebSocket bus on Redis: a group's order updates and
engine messages go in one Redis round trip, the updates first; Redis failing there leaves the committed orders
answered and counts an outage, never a 500."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest
import redis.asyncio.client
import redis.exceptions

from tradestack.identity.permissions import Role
from tradestack.kit.config import Settings
from tradestack.kit.leanredis import LeanRedis
from tradestack.kit.metrics import BACKEND_UNAVAILABLE

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote  # type: ignore[import-not-found]
from .test_orders import limit_buy, open_account  # type: ignore[import-not-found]

pytestmark = pytest.mark.parametrize("stack", ["production"], indirect=True)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"engine_in_process": False})  # the engine's messages go to its Redis stream


def recorded_pipelines(monkeypatch: pytest.MonkeyPatch, *, fail_on: str | None = None) -> list[list[str]]:
    """The commands of each Redis pipeline sent from now on (one round trip each: `LeanRedis.pipeline`, or redis-py's);
    with `fail_on`, a pipeline holding that command fails as with Redis away."""
    executed: list[list[str]] = []
    execute = redis.asyncio.client.Pipeline.execute
    lean = LeanRedis.pipeline

    def record(commands: list[str]) -> None:
        executed.append(commands)
        if fail_on in commands:
            raise redis.exceptions.ConnectionError("Redis is away (test)")

    async def recorded(self: redis.asyncio.client.Pipeline, raise_on_error: bool = True) -> Any:
        record([str(args[0]) for args, _ in self.command_stack])
        return await execute(self, raise_on_error)

    async def recorded_lean(self: LeanRedis, commands: Sequence[Sequence[Any]]) -> list[Any]:
        record([str(command[0]) for command in commands])
        return await lean(self, commands)

    monkeypatch.setattr(redis.asyncio.client.Pipeline, "execute", recorded)
    monkeypatch.setattr(LeanRedis, "pipeline", recorded_lean)
    return executed


async def test_a_groups_order_updates_and_engine_messages_go_in_one_round_trip_updates_first(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, monkeypatch: pytest.MonkeyPatch
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "100.00", "100.01", last="100.00")
    executed = recorded_pipelines(monkeypatch)
    response = await client.post("/api/orders", json=limit_buy(account, "one-trip", price="99.00"), headers=trader.headers)
    assert response.status_code == 201, response.text
    after_commit = [commands for commands in executed if {"PUBLISH", "XADD"} & set(commands)]
    assert after_commit == [["PUBLISH", "XADD"]]


async def test_redis_away_after_the_commit_counts_an_outage_and_the_order_stays_answered(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, monkeypatch: pytest.MonkeyPatch
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("AAPL", "100.00", "100.01", last="100.00")
    outages = BACKEND_UNAVAILABLE.labels(backend="cache", operation="order_after_commit")
    before = outages._value.get()
    executed = recorded_pipelines(monkeypatch, fail_on="XADD")
    response = await client.post("/api/orders", json=limit_buy(account, "redis-away", price="99.00"), headers=trader.headers)
    assert response.status_code == 201, response.text
    assert any("XADD" in commands for commands in executed)  # it was tried, and failed
    assert outages._value.get() == before + 1
    monkeypatch.undo()
    stored = await client.get(f"/api/orders/{response.json()['id']}", headers=trader.headers)
    assert stored.status_code == 200
    assert stored.json()["status"] == "accepted"
