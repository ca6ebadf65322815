"""How order entry tells the paper matching engine that an order changed.

The message only says "look at order X of account Y again": the engine reads the order from the
database, so a lost, repeated or reordered message is harmless, and the engine's periodic
reconciliation finds any order whose message never arrived.

- In one process (`tradestack up`, or one worker without Redis) the engine registers a
  `LocalCommands` and messages go straight to it.
- Otherwise they go to a Redis stream per shard, ``{namespace}:engine:commands:{shard}``, read by
  `tradestack serve engine --shard N`.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import redis.asyncio

from tradestack.kit.logging import get_logger
from tradestack.kit.redispool import blocking_pool
from tradestack.kit.runtime import Runtime, Slot

log = get_logger(__name__)

STREAM_MAXLEN = 100_000
Change = tuple[str, str, bool]  # (account id, order id, settle): one `order_changed`


def shard_of(account_id: str, shards: int) -> int:
    """The engine shard that owns `account_id` (stable across processes and restarts)."""
    return zlib.crc32(account_id.encode()) % shards


def stream_key(namespace: str, shard: int) -> str:
    """The Redis stream engine `shard` reads its commands from."""
    return f"{namespace}:engine:commands:{shard}"


class Commands(Protocol):
    """Where order changes are announced."""

    async def order_changed(self, account_id: str, order_id: str, *, settle: bool = False) -> None:
        """Announce the change; with `settle`, where the engine runs in this process, return once it has matched it."""

    async def orders_changed(self, changes: Sequence[Change]) -> None:
        """`order_changed` for each change, together (one round trip where the engine is remote)."""


class LocalCommands:
    """Hands messages to an engine in this process."""

    def __init__(
        self, deliver: Callable[[str, str], Awaitable[None]], deliver_settled: Callable[[str, str], Awaitable[None]] | None = None
    ) -> None:
        self._deliver = deliver
        self._deliver_settled = deliver_settled or deliver

    async def order_changed(self, account_id: str, order_id: str, *, settle: bool = False) -> None:
        await (self._deliver_settled if settle else self._deliver)(account_id, order_id)

    async def orders_changed(self, changes: Sequence[Change]) -> None:
        """Hand the changes over in order; when none is to be settled, one after the other: no task per change
        and no extra pass of the event loop (the hand-over itself never waits)."""
        if any(settle for _, _, settle in changes):
            await asyncio.gather(*(self.order_changed(account, order, settle=settle) for account, order, settle in changes))
            return
        for account, order, _ in changes:
            await self._deliver(account, order)


class RedisCommands:
    """Appends messages to the owning shard's Redis stream."""

    def __init__(self, url: str, namespace: str, shards: int) -> None:
        self._client = redis.asyncio.Redis.from_pool(blocking_pool(url))
        self._namespace = namespace
        self._shards = shards

    async def order_changed(self, account_id: str, order_id: str, *, settle: bool = False) -> None:
        await self.orders_changed([(account_id, order_id, settle)])

    async def orders_changed(self, changes: Sequence[Change]) -> None:
        """One XADD per change to its shard's stream, all in one pipeline."""
        if not changes:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for account_id, order_id, _ in changes:
                key = stream_key(self._namespace, shard_of(account_id, self._shards))
                pipe.xadd(key, {"account": account_id, "order": order_id}, maxlen=STREAM_MAXLEN, approximate=True)
            await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose()


class NoEngine:
    """No engine can be reached: orders are recorded and wait for one (said once in the log)."""

    def __init__(self) -> None:
        self._warned = False

    async def order_changed(self, account_id: str, order_id: str, *, settle: bool = False) -> None:
        await self.orders_changed([(account_id, order_id, settle)])

    async def orders_changed(self, changes: Sequence[Change]) -> None:
        if changes and not self._warned:
            self._warned = True
            log.warning(
                "no matching engine: orders are recorded but not matched; run `tradestack serve engine` with Redis "
                "or set TRADESTACK_ENGINE_IN_PROCESS=true"
            )


COMMANDS: Slot[Commands] = Slot("trading.commands")


def commands_of(runtime: Runtime) -> Commands:
    """This process's way to reach the engine (an in-process engine registers itself first)."""
    existing = runtime.components.get(COMMANDS)
    if existing is not None:
        return existing
    settings = runtime.settings
    created: Commands
    if settings.redis_url and not settings.effective_engine_in_process:
        redis_commands = RedisCommands(settings.redis_url, settings.redis_namespace, settings.engine_shards)
        runtime.closers.append(redis_commands.close)
        created = redis_commands
    else:
        created = NoEngine()
    return runtime.components.put(COMMANDS, created)
