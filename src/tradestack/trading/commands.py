"""How order entry tells the paper matching engine that an order changed.

A message (`Change`) says "look at order X of account Y again". Where the engine reads the order
from the database, a lost, repeated or reordered message is harmless, and the engine's periodic
reconciliation finds any order whose message never arrived.

- In one process (`tradestack up`, or one worker without Redis) the engine registers a
  `LocalCommands` and messages go straight to it, each with the order as its transaction committed
  it (`Change.state`, whose `version` counts its events) and the `tick` taken before that
  transaction began. The engine takes that state instead of reading the order again only when it
  can tell it is at least as new as anything it knows of the order (`EngineShard` documents the
  rule); otherwise it reads the database, as above. Messages of one process reach it in the order
  they were handed over, but not necessarily in the order their transactions committed (a cancel
  can commit, and be handed over, before the order desk hands over the order it cancels).
- Otherwise they go to a Redis stream per shard, ``{namespace}:engine:commands:{shard}``, read by
  `tradestack serve engine --shard N`, which reads each order from the database.
"""

from __future__ import annotations

import asyncio
import itertools
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio

from tradestack.domain.orders import Order
from tradestack.kit.logging import get_logger
from tradestack.kit.redispool import blocking_pool
from tradestack.kit.runtime import Runtime, Slot

log = get_logger(__name__)

STREAM_MAXLEN = 100_000
_TICKS = itertools.count(1)


def tick() -> int:
    """The next number of this process's one increasing sequence (any thread: `next` on a count holds the GIL).

    What the engine learns of an order after a tick was committed after it: a transaction that
    begins after the tick sees it, and so does any state of the order committed by such a transaction.
    """
    return next(_TICKS)


@dataclass(frozen=True, slots=True)
class Change:
    """One `order_changed`: look at order `order_id` of `account_id` again.

    `state` is the order as the transaction that changed it committed it, and `begun_at` a `tick`
    taken before that transaction began; without `state` the engine reads the order from the database.
    With `settle`, where the engine runs in this process, the hand-over returns once it has matched the order.
    """

    account_id: str
    order_id: str
    settle: bool = False
    state: Order | None = None
    begun_at: int = 0


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
        """Announce each change, in order, together (one round trip where the engine is remote)."""


class LocalCommands:
    """Hands messages to an engine in this process."""

    def __init__(
        self, deliver: Callable[[Change], Awaitable[None]], deliver_settled: Callable[[Change], Awaitable[None]] | None = None
    ) -> None:
        self._deliver = deliver
        self._deliver_settled = deliver_settled or deliver

    async def order_changed(self, account_id: str, order_id: str, *, settle: bool = False) -> None:
        await self._hand_over(Change(account_id, order_id, settle))

    async def _hand_over(self, change: Change) -> None:
        await (self._deliver_settled if change.settle else self._deliver)(change)

    async def orders_changed(self, changes: Sequence[Change]) -> None:
        """Hand the changes over in order; when none is to be settled, one after the other: no task per change
        and no extra pass of the event loop (the hand-over itself never waits)."""
        if any(change.settle for change in changes):
            await asyncio.gather(*(self._hand_over(change) for change in changes))
            return
        for change in changes:
            await self._deliver(change)


class RedisCommands:
    """Appends messages to the owning shard's Redis stream."""

    def __init__(self, url: str, namespace: str, shards: int) -> None:
        self._client = redis.asyncio.Redis.from_pool(blocking_pool(url))
        self._namespace = namespace
        self._shards = shards

    async def order_changed(self, account_id: str, order_id: str, *, settle: bool = False) -> None:
        await self.orders_changed([Change(account_id, order_id, settle)])

    async def orders_changed(self, changes: Sequence[Change]) -> None:
        """One XADD per change to its shard's stream, all in one pipeline (the engine there reads each order)."""
        if not changes:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for change in changes:
                key = stream_key(self._namespace, shard_of(change.account_id, self._shards))
                pipe.xadd(key, {"account": change.account_id, "order": change.order_id}, maxlen=STREAM_MAXLEN, approximate=True)
            await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose()


class NoEngine:
    """No engine can be reached: orders are recorded and wait for one (said once in the log)."""

    def __init__(self) -> None:
        self._warned = False

    async def order_changed(self, account_id: str, order_id: str, *, settle: bool = False) -> None:
        await self.orders_changed([Change(account_id, order_id, settle)])

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
