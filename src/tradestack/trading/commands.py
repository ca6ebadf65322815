"""How order entry tells the paper matching engine that an order changed.

A message (`Change`) says "look at order X of account Y again". Where the engine reads the order
from the database, a lost, repeated or reordered message is harmless, and the engine's periodic
reconciliation finds any order whose message never arrived.

A message can carry the order as its transaction committed it (`Change.state`, whose `version`
counts its events) and the `tick` taken before that transaction began. The engine takes that state
instead of reading the order again only when it can tell it is at least as new as anything it knows
of the order (`EngineShard` documents the rule); otherwise it reads the database, as above. Messages
need not reach it in the order their transactions committed (a cancel can commit, and be handed
over, before the order desk hands over the order it cancels).

- In one process (`tradestack up`, or one worker without Redis) the engine registers a
  `LocalCommands` and messages go straight to it, in the order they were handed over.
- Otherwise they go to a Redis stream per shard, ``{namespace}:engine:commands:{shard}``, read by
  `tradestack serve engine --shard N`. A message with a state carries the engine's view of the
  order (`encode_state`: its version, status and `WorkingOrder`), its tick and the `CLOCK` the tick
  was read on: a tick is compared with the engine's own only on the same clock (one host); from
  another, an order the engine does not know is read, as are all orders of messages without a state.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis.asyncio

from tradestack.core.money import D
from tradestack.domain.marketdata import Side
from tradestack.domain.matching import WorkingOrder
from tradestack.domain.order_kinds import WORKING_STATUSES
from tradestack.domain.orders import Order, OrderStatus, OrderType, TimeInForce
from tradestack.kit.leanredis import LeanRedis
from tradestack.kit.logging import get_logger
from tradestack.kit.redispool import blocking_pool
from tradestack.kit.runtime import Runtime, Slot

log = get_logger(__name__)

STREAM_MAXLEN = 100_000
_IDLE_WRITERS = 4  # connections a process's `RedisCommands` keeps between its pipelines (`LeanRedis`)


def _clock() -> str:
    """Where `tick`s can be compared: CLOCK_MONOTONIC is one clock for every process of one boot of one host (and one
    time namespace, which may shift it); unknown (no /proc) is this process alone."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = Path("/proc/self/ns/time").readlink().name
    except OSError:
        return f"process:{time.time_ns()}:{id(object())}"
    return f"{boot}:{namespace}"


CLOCK = _clock()
"""The clock this process's `tick`s are read on; two processes with the same one can compare their ticks."""


def tick() -> int:
    """A reading of this host's monotonic clock, in nanoseconds: never less than any reading taken before it, in this
    process or another on the same `CLOCK`.

    What the engine learns of an order after a tick was committed after it: a transaction that
    begins after the tick sees it, and so does any state of the order committed by such a transaction.
    """
    return time.monotonic_ns()


def working_order_of(order: Order) -> WorkingOrder:
    """The engine's view of an open order, with what it has already done."""
    request = order.request
    triggered = request.type.needs_stop_price and order.status is not OrderStatus.ACCEPTED
    return WorkingOrder(
        order_id=order.id,
        symbol=request.symbol,
        side=request.side,
        type=request.type,
        quantity=request.quantity,
        remaining=order.remaining_quantity,
        limit_price=request.limit_price,
        stop_price=request.stop_price,
        time_in_force=request.time_in_force,
        triggered=triggered,
        submitted_at=order.created_at,
        fills=len(order.fill_ids),
        filled_notional=order.filled_notional,
        fees_paid=sum(order.fees.values(), Decimal(0)),
    )


@dataclass(frozen=True, slots=True)
class Handed:
    """What the engine needs of an order's committed state (`encode_state`): its version, status and, while it works,
    the engine's view of it."""

    version: int
    status: OrderStatus
    working: WorkingOrder | None


def encode_state(order: Order) -> bytes:
    """The order's `Handed` state as a stream message field (decimals as exact strings)."""
    if order.status not in WORKING_STATUSES:
        return orjson.dumps([order.version, order.status.value])
    w = working_order_of(order)
    return orjson.dumps(
        [
            order.version, order.status.value, w.order_id, w.symbol, w.side.value, w.type.value, str(w.quantity),
            str(w.remaining), _text(w.limit_price), _text(w.stop_price), w.time_in_force.value, w.triggered,
            w.submitted_at.isoformat(), w.fills, str(w.filled_notional), str(w.fees_paid),
        ]
    )  # fmt: skip


def decode_state(data: bytes) -> Handed:
    """The state `encode_state` wrote; ValueError (or TypeError) when it is not one.

    Read for every order the engine is handed, so without a detour: enums from their values through a dict, amounts
    straight to `Decimal` (text only, finite; `WorkingOrder` checks the rest of what it holds)."""
    fields = orjson.loads(data)
    if type(fields) is not list or len(fields) not in (2, 16) or type(fields[0]) is not int:
        raise ValueError(f"not an order state: {data[:80]!r}")
    status = _STATUSES.get(fields[1])
    if status is None:
        raise ValueError(f"not an order state: unknown status {fields[1]!r}")
    if len(fields) == 2:
        if status in WORKING_STATUSES:
            raise ValueError(f"a working order's state without its terms: {data[:80]!r}")
        return Handed(fields[0], status, None)
    if status not in WORKING_STATUSES:
        raise ValueError(f"terms handed with an order that does not work: {data[:80]!r}")
    _, _, order_id, symbol, side, kind, quantity, remaining, limit, stop, tif, triggered, submitted, fills = fields[:14]
    notional, fees = fields[14:]
    if type(triggered) is not bool or type(fills) is not int or type(submitted) is not str:
        raise ValueError(f"not an order state: {data[:80]!r}")
    try:
        terms = (_SIDES[side], _TYPES[kind], _TIMES_IN_FORCE[tif])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an order state: {data[:80]!r}") from exc
    working = WorkingOrder(
        order_id=order_id, symbol=symbol, side=terms[0], type=terms[1], quantity=_amount(quantity),
        remaining=_amount(remaining), limit_price=None if limit is None else _amount(limit),
        stop_price=None if stop is None else _amount(stop), time_in_force=terms[2], triggered=triggered,
        submitted_at=datetime.fromisoformat(submitted), fills=fills, filled_notional=_amount(notional),
        fees_paid=_amount(fees),
    )  # fmt: skip
    return Handed(fields[0], status, working)


_STATUSES = {status.value: status for status in OrderStatus}
_SIDES = {side.value: side for side in Side}
_TYPES = {kind.value: kind for kind in OrderType}
_TIMES_IN_FORCE = {tif.value: tif for tif in TimeInForce}


def _amount(text: object) -> Decimal:
    """A finite `Decimal` from its exact text (anything else: ValueError or TypeError)."""
    if type(text) is not str:
        raise TypeError(f"an amount must be text, got {type(text).__name__}")
    return D(text)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Change:
    """One `order_changed`: look at order `order_id` of `account_id` again.

    `state` is the order as the transaction that changed it committed it (from a Redis stream, what the engine needs of
    it), and `begun_at` a `tick` taken before that transaction began (0: not comparable with the engine's); without
    `state` the engine reads the order from the database.
    With `settle`, where the engine runs in this process, the hand-over returns once it has matched the order.
    """

    account_id: str
    order_id: str
    settle: bool = False
    state: Order | Handed | None = None
    begun_at: int = 0


def shard_of(account_id: str, shards: int) -> int:
    """The engine shard that owns `account_id` (stable across processes and restarts)."""
    return zlib.crc32(account_id.encode()) % shards


def stream_key(namespace: str, shard: int) -> str:
    """The Redis stream engine `shard` reads its commands from."""
    return f"{namespace}:engine:commands:{shard}"


def stream_fields(change: Change) -> dict[str, str | bytes]:
    """The change as a stream message: account and order; with an `Order` state, also that state (`encode_state`), its
    tick and this process's `CLOCK` (`engine.change_of` reads it back)."""
    fields: dict[str, str | bytes] = {"account": change.account_id, "order": change.order_id}
    if isinstance(change.state, Order):
        fields.update(state=encode_state(change.state), begun=str(change.begun_at), clock=CLOCK)
    return fields


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
        self._lean = LeanRedis(self._client.connection_pool, idle=_IDLE_WRITERS)
        self._namespace = namespace
        self._shards = shards

    async def order_changed(self, account_id: str, order_id: str, *, settle: bool = False) -> None:
        await self.orders_changed([Change(account_id, order_id, settle)])

    async def orders_changed(self, changes: Sequence[Change], *, published: Sequence[tuple[str, bytes]] = ()) -> None:
        """One XADD per change (`stream_fields`) to its shard's stream, all in one pipeline; first, in the same pipeline,
        a PUBLISH of each (Redis channel, message) of `published`: a bus's messages on this Redis, sent in the same
        round trip and before the engine can read the changes."""
        if not changes and not published:
            return
        # Straight on a kept connection (`LeanRedis`), the commands as redis-py's `publish` and `xadd` send them.
        commands: list[tuple[Any, ...]] = [("PUBLISH", channel, message) for channel, message in published]
        for change in changes:
            key = stream_key(self._namespace, shard_of(change.account_id, self._shards))
            fields = [item for pair in stream_fields(change).items() for item in pair]
            commands.append(("XADD", key, "MAXLEN", "~", str(STREAM_MAXLEN), "*", *fields))
        await self._lean.pipeline(commands)

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
