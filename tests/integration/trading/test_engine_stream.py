"""`tradestack serve engine` follows its shard's Redis stream: every message once, in order, across a lost connection.

The reader (`engine._read_commands`) takes the messages in batches straight off one connection of the client's pool;
these run it against the real Redis, on both reply protocols, with a stand-in for the shard that records what it is
told.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from tradestack.trading import engine as engine_module
from tradestack.trading.commands import Change, RedisCommands, stream_key

WAIT_SECONDS = 10.0


class _Told:
    """Stands in for the shard: the changes it is told of, in order."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.arrived = asyncio.Event()

    def note_changed(self, change: Change) -> None:
        self.changes.append(change)
        self.arrived.set()

    async def until(self, count: int) -> list[str]:
        """The order ids told so far, once there are `count` (or the wait is over)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT_SECONDS):
                while len(self.changes) < count:
                    self.arrived.clear()
                    await self.arrived.wait()
        return [change.order_id for change in self.changes]


@pytest.fixture(params=["protocol=2", "protocol=3"], ids=["resp2", "resp3"])
async def stream(redis_server: str, request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str, str]]:
    """(Redis URL with the protocol, namespace, the shard's stream key) of a namespace of its own, deleted after."""
    separator = "&" if "?" in redis_server else "?"
    url = redis_server + separator + request.param
    namespace = f"test-stream-{uuid.uuid4().hex[:12]}"
    key = stream_key(namespace, 0)
    yield url, namespace, key
    client = redis.asyncio.Redis.from_url(url)
    await client.delete(key)
    await client.aclose()


async def _reading(
    url: str, key: str, told: _Told, gather_seconds: float = 0.01
) -> tuple[asyncio.Task[None], redis.asyncio.Redis, str]:
    """The reader running on a client of its own (its connections named, to be told apart), once it waits on the
    stream; a message added before is older than the reader (the rebuild's)."""
    name = f"engine-reader-{uuid.uuid4().hex[:8]}"
    client = redis.asyncio.Redis.from_url(url, client_name=name)
    await client.xadd(key, {"account": "acc-0", "order": "before-start"})
    task = asyncio.create_task(engine_module._read_commands(told, client, key, gather_seconds))
    async with asyncio.timeout(WAIT_SECONDS):
        while not any(
            entry.get("name") == name and str(entry.get("cmd", "")).startswith("xread") for entry in await client.client_list()
        ):
            await asyncio.sleep(0.01)
    return task, client, name


async def _stop(task: asyncio.Task[None], client: redis.asyncio.Redis) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await client.aclose()


@pytest.mark.parametrize("gather_seconds", [0.0, 0.01], ids=["read-at-once", "gather"])
async def test_the_engine_is_told_every_message_once_in_order_and_skips_one_it_cannot_read(
    stream: tuple[str, str, str], gather_seconds: float
) -> None:
    url, namespace, key = stream
    told = _Told()
    task, client, _ = await _reading(url, key, told, gather_seconds)
    commands = RedisCommands(url, namespace, 1)
    try:
        await commands.orders_changed([Change(f"acc-{n}", f"o-{n}") for n in range(5)])
        await client.xadd(key, {"order": "no-account"})
        await commands.orders_changed([Change("acc-5", "o-5")])
        assert await told.until(6) == [f"o-{n}" for n in range(6)]
        assert told.changes[0] == Change("acc-0", "o-0")
    finally:
        await commands.close()
        await _stop(task, client)


async def test_after_a_lost_connection_the_engine_reads_on_from_where_it_stopped(stream: tuple[str, str, str]) -> None:
    url, namespace, key = stream
    told = _Told()
    task, client, name = await _reading(url, key, told)
    commands = RedisCommands(url, namespace, 1)
    admin = redis.asyncio.Redis.from_url(url)
    try:
        await commands.orders_changed([Change("acc-1", "o-1"), Change("acc-2", "o-2")])
        assert await told.until(2) == ["o-1", "o-2"]
        ours = [entry["id"] for entry in await admin.client_list() if entry.get("name") == name]
        assert ours
        for client_id in ours:  # only the reader's own connections
            await admin.client_kill_filter(_id=client_id)
        await commands.orders_changed([Change("acc-3", "o-3")])
        assert await told.until(3) == ["o-1", "o-2", "o-3"]
    finally:
        await commands.close()
        await admin.aclose()
        await _stop(task, client)
