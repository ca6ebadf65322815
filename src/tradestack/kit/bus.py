"""Publish/subscribe message bus behind one interface.

The bus carries notifications that every API replica must see (for example the events fanned
out to WebSocket clients). Delivery is at most once and best effort: a message published while
nobody is subscribed to its channel is gone, and a subscriber that falls behind loses its
oldest pending messages rather than slowing the publisher down or growing without bound.

Two implementations share the `Bus` protocol:

* `MemoryBus` delivers within one process (the default, and for tests).
* `RedisBus` delivers through Redis pub/sub, so every process connected to the same Redis
  receives every message.

Subscribing looks the same with both::

    async with bus.subscribe("orders", "fills") as subscription:
        async for message in subscription:
            handle(message.channel, message.data)

A subscription can take only the messages that start with given bytes (``starting``): a `MemoryBus`
drops the others before they reach the subscriber's loop (no wake-up of another thread's loop
for a message it would throw away), a `RedisBus` subscription when it receives them.

Each subscription buffers at most ``max_pending`` messages; when a new message arrives and the
buffer is full the oldest buffered message is dropped and `Subscription.dropped` goes up by
one. Iteration ends when the subscription is exited or the bus is closed. A `RedisBus`
subscription whose connection drops reconnects by itself (messages published during the gap
are lost); if Redis stays unreachable, or the subscription fails in any other way, iteration
raises the error once the messages received before the failure have been consumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, Protocol, Self

import redis.asyncio
import redis.exceptions
from redis.asyncio.client import PubSub

from tradestack.kit.aio import stop_tasks
from tradestack.kit.logging import get_logger
from tradestack.kit.redispool import blocking_pool

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DEFAULT_RECONNECT_TIMEOUT_SECONDS",
    "DEFAULT_REDIS_PREFIX",
    "DEFAULT_SUBSCRIBE_TIMEOUT_SECONDS",
    "Bus",
    "MemoryBus",
    "Message",
    "RedisBus",
    "Subscription",
    "create_bus",
]

DEFAULT_MAX_PENDING = 1000
DEFAULT_REDIS_PREFIX = "ts:bus:"
DEFAULT_SUBSCRIBE_TIMEOUT_SECONDS = 10.0
DEFAULT_RECONNECT_TIMEOUT_SECONDS = 30.0

_RECONNECT_INITIAL_DELAY_SECONDS = 0.05
_RECONNECT_MAX_DELAY_SECONDS = 2.0
_STABLE_CONNECTION_SECONDS = 5.0
# OSError covers the builtin TimeoutError raised when a SUBSCRIBE is not acknowledged in time.
_RECONNECTABLE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    """One message received on ``channel``, as published."""

    channel: str
    data: bytes


class Subscription(ABC):
    """A live subscription to one or more channels, used once as ``async with ... as sub``.

    Inside the ``async with`` block the subscription is an async iterator of `Message`. It is
    meant to be consumed by one task. Messages published after ``__aenter__`` returned are
    received; the buffer holds at most `max_pending` of them, dropping the oldest on overflow.
    """

    def __init__(self, channels: tuple[str, ...], max_pending: int, starting: bytes = b"") -> None:
        if not channels:
            raise ValueError("subscribe to at least one channel")
        for channel in channels:
            if not isinstance(channel, str) or not channel:
                raise ValueError(f"channel names must be non-empty strings, got {channel!r}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self._channels = tuple(dict.fromkeys(channels))
        self._max_pending = max_pending
        self.starting = starting
        # None marks the end of the stream; it is only enqueued when there is room for it.
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue(maxsize=max_pending)
        self._dropped = 0
        self._entered = False
        self._ended = False
        self._end_marker_queued = False
        self._shut_down = False
        self._error: BaseException | None = None

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels this subscription listens to, without duplicates, in given order."""
        return self._channels

    @property
    def max_pending(self) -> int:
        """The most received-but-not-consumed messages kept before the oldest is dropped."""
        return self._max_pending

    @property
    def dropped(self) -> int:
        """How many messages were dropped because the subscriber fell behind."""
        return self._dropped

    @property
    def pending(self) -> int:
        """How many received messages are waiting to be consumed."""
        return self._queue.qsize() - int(self._end_marker_queued)

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a subscription can be entered only once")
        self._entered = True
        try:
            await self._start()
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        if not self._entered:
            raise RuntimeError("enter the subscription with 'async with' before iterating it")
        if self._ended and self._queue.empty():
            self._raise_end()
        message = await self._queue.get()
        if message is None:
            self._end_marker_queued = False
            self._raise_end()
        return message

    def _raise_end(self) -> NoReturn:
        if self._error is not None:
            raise self._error
        raise StopAsyncIteration

    def _deliver(self, message: Message) -> None:
        """Buffer ``message`` without blocking, dropping the oldest one if the buffer is full; unless it does not start
        with `starting`."""
        if self._ended or not message.data.startswith(self.starting):
            return
        if self._queue.full():
            self._queue.get_nowait()
            self._dropped += 1
        self._queue.put_nowait(message)

    def _end(self, error: BaseException | None) -> None:
        """Stop accepting messages; iteration ends (raising ``error`` if given) once drained."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        # A consumer can only be blocked on an empty queue, so if the queue is full nobody is
        # waiting and the check in __anext__ ends iteration after the buffer is drained.
        if not self._queue.full():
            self._queue.put_nowait(None)
            self._end_marker_queued = True

    async def _shutdown(self) -> None:
        """End the subscription and release what it holds; safe to call more than once."""
        self._end(None)
        if self._shut_down:
            return
        self._shut_down = True
        await self._stop()

    @abstractmethod
    async def _start(self) -> None:
        """Begin receiving; messages published after this returns must be delivered."""

    @abstractmethod
    async def _stop(self) -> None:
        """Stop receiving and release resources; called at most once, after `_start`."""


class Bus(Protocol):
    """Publish/subscribe of byte messages on named channels."""

    async def publish(self, channel: str, message: bytes) -> None:
        """Send ``message`` to every current subscriber of ``channel``."""
        ...

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Send each (channel, message) as `publish` would, in order, in one round trip where the bus has them."""
        ...

    def subscribe(self, *channels: str, starting: bytes = b"") -> Subscription:
        """Return a subscription to ``channels``, of their messages that start with ``starting``; it starts receiving
        when entered."""
        ...

    async def ping(self) -> None:
        """Return if the bus is usable, raise otherwise."""
        ...

    async def close(self) -> None:
        """End every subscription and release the bus's resources."""
        ...


class _MemorySubscription(Subscription):
    def __init__(self, bus: MemoryBus, channels: tuple[str, ...], max_pending: int, starting: bytes) -> None:
        super().__init__(channels, max_pending, starting)
        self._bus = bus
        self.loop: asyncio.AbstractEventLoop | None = None
        self._inbox: deque[Message] = deque()

    async def _start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._bus._register(self)

    def deliver_from_another_loop(self, message: Message) -> None:
        """`_deliver` for a publisher on another thread's loop: queued, then buffered on this subscription's loop."""
        self._inbox.append(message)
        if len(self._inbox) == 1 and self.loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody reads it any more
                self.loop.call_soon_threadsafe(self._take_inbox)

    def _take_inbox(self) -> None:
        while self._inbox:
            self._deliver(self._inbox.popleft())

    async def _stop(self) -> None:
        self._bus._unregister(self)


class MemoryBus:
    """Bus delivering messages to subscriptions in the same process.

    Publishing never awaits: a message is appended to the buffer of every subscription to its
    channel, dropping that subscription's oldest buffered message if its buffer is full.

    Publishers and subscribers may be on different event loops of the process (threads running
    loops of their own, such as the embedded matching engine's): a message for a subscription of
    another loop is handed to that loop, in order, with one wake-up per batch.
    """

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self._max_pending = max_pending
        # Replaced, never changed in place (under `_registry`), so a publisher on another thread
        # iterates a consistent tuple without taking the lock.
        self._by_channel: dict[str, tuple[_MemorySubscription, ...]] = {}
        self._subscriptions: set[_MemorySubscription] = set()
        self._registry = threading.Lock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")

    def _register(self, subscription: _MemorySubscription) -> None:
        self._check_open()
        with self._registry:
            self._subscriptions.add(subscription)
            by_channel = dict(self._by_channel)
            for channel in subscription.channels:
                by_channel[channel] = (*by_channel.get(channel, ()), subscription)
            self._by_channel = by_channel

    def _unregister(self, subscription: _MemorySubscription) -> None:
        with self._registry:
            self._subscriptions.discard(subscription)
            by_channel = dict(self._by_channel)
            for channel in subscription.channels:
                rest = tuple(s for s in by_channel.get(channel, ()) if s is not subscription)
                if rest:
                    by_channel[channel] = rest
                else:
                    by_channel.pop(channel, None)
            self._by_channel = by_channel

    async def publish(self, channel: str, message: bytes) -> None:
        """Buffer ``message`` in every subscription to ``channel``; never waits on subscribers."""
        self._check_open()
        subscriptions = self._by_channel.get(channel)
        if not subscriptions:
            return
        delivered = Message(channel, bytes(message))
        loop = asyncio.get_running_loop()
        for subscription in subscriptions:
            if not delivered.data.startswith(subscription.starting):
                continue
            if subscription.loop is loop:
                subscription._deliver(delivered)
            else:
                subscription.deliver_from_another_loop(delivered)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """`publish` each (channel, message), in order."""
        for channel, message in messages:
            await self.publish(channel, message)

    def subscribe(self, *channels: str, starting: bytes = b"") -> Subscription:
        """Return a subscription to ``channels``, of their messages that start with ``starting``; it starts receiving
        when entered."""
        self._check_open()
        return _MemorySubscription(self, channels, self._max_pending, starting)

    async def ping(self) -> None:
        """Return if the bus is open, raise `RuntimeError` if it was closed."""
        self._check_open()

    async def close(self) -> None:
        """End every subscription; the bus cannot be used afterwards."""
        self._closed = True
        with self._registry:
            subscriptions = tuple(self._subscriptions)
        for subscription in subscriptions:
            if subscription.loop is asyncio.get_running_loop():
                await subscription._shutdown()
            elif subscription.loop is not None:  # ended on its own loop (its consumer's `__aexit__` then unregisters it)
                with contextlib.suppress(RuntimeError):
                    subscription.loop.call_soon_threadsafe(subscription._end, None)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"unexpected pub/sub payload of type {type(value).__name__}")


class _RedisSubscription(Subscription):
    def __init__(self, bus: RedisBus, channels: tuple[str, ...], max_pending: int, starting: bytes) -> None:
        super().__init__(channels, max_pending, starting)
        self._bus = bus
        self._names = [bus._prefix + channel for channel in self.channels]
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None

    async def _start(self) -> None:
        self._bus._register(self)
        await self._connect()
        self._reader = asyncio.create_task(self._read(), name=f"redis-bus-reader:{','.join(self.channels)}")

    async def _connect(self) -> PubSub:
        """Open a pub/sub connection and return once Redis acknowledged every SUBSCRIBE."""
        pubsub = self._bus._client.pubsub()
        # Stored before any await so that _stop closes it even if we are cancelled midway.
        self._pubsub = pubsub
        await pubsub.subscribe(*self._names)
        # SUBSCRIBE is acknowledged once per channel; wait for every acknowledgement so that
        # a publish made after this returns is guaranteed to reach this subscription.
        # Messages on already-acknowledged channels may arrive in between; keep them.
        unacknowledged = set(self._names)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._bus._subscribe_timeout
        while unacknowledged:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"Redis did not acknowledge SUBSCRIBE to {sorted(unacknowledged)} "
                    f"within {self._bus._subscribe_timeout} seconds"
                )
            raw = await pubsub.get_message(timeout=remaining)
            if raw is None:
                continue
            if raw["type"] == "subscribe":
                unacknowledged.discard(_as_bytes(raw["channel"]).decode())
            else:
                self._handle(raw)
        return pubsub

    def _handle(self, raw: dict[str, Any]) -> None:
        if raw["type"] != "message":
            return
        name = _as_bytes(raw["channel"]).decode()
        prefix = self._bus._prefix
        if not name.startswith(prefix):
            return
        self._deliver(Message(name[len(prefix) :], _as_bytes(raw["data"])))

    async def _read(self) -> None:
        """Move messages into the buffer; on connection loss reconnect with backoff, for a while."""
        loop = asyncio.get_running_loop()
        connected_at: float | None = loop.time()
        failing_since: float | None = None
        delay = _RECONNECT_INITIAL_DELAY_SECONDS
        while True:
            try:
                pubsub = self._pubsub
                if pubsub is None:
                    pubsub = await self._connect()
                    connected_at = loop.time()
                    log.info("bus_subscription_reconnected", channels=list(self.channels))
                async for raw in pubsub.listen():
                    self._handle(raw)
                raise redis.exceptions.ConnectionError("Redis pub/sub connection stopped delivering messages")
            except _RECONNECTABLE_ERRORS as error:
                await self._discard_connection()
                now = loop.time()
                # A connection that stayed up for a while starts a fresh outage; one that drops
                # right after reconnecting continues the current outage (and its backoff).
                if connected_at is not None and now - connected_at >= _STABLE_CONNECTION_SECONDS:
                    failing_since, delay = None, _RECONNECT_INITIAL_DELAY_SECONDS
                connected_at = None
                if failing_since is None:
                    failing_since = now
                if now - failing_since >= self._bus._reconnect_timeout:
                    log.error("bus_subscription_lost", channels=list(self.channels), error=repr(error))
                    self._end(error)
                    return
                log.warning("bus_subscription_reconnecting", channels=list(self.channels), error=repr(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_DELAY_SECONDS)
            except Exception as error:  # noqa: BLE001 - handed to the subscriber, raised when it iterates
                await self._discard_connection()
                log.error("bus_subscription_failed", channels=list(self.channels), error=repr(error))
                self._end(error)
                return

    async def _discard_connection(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _stop(self) -> None:
        reader, self._reader = self._reader, None
        try:
            await stop_tasks([reader], "bus subscription reader")
        finally:
            self._bus._unregister(self)
            await self._discard_connection()


class RedisBus:
    """Bus delivering messages through Redis pub/sub, under channel names ``prefix + channel``.

    Each subscription holds one Redis connection (from ``client``'s pool) read by a background
    task that moves messages into the subscription's bounded buffer, so a slow subscriber never
    backs up Redis. When that connection is lost the task reconnects and re-subscribes with
    exponential backoff; messages published in the meantime are lost. If Redis stays
    unreachable for ``reconnect_timeout_seconds`` the subscription ends by raising the last
    connection error to its consumer. The bus owns ``client``: `close` closes it.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str = DEFAULT_REDIS_PREFIX,
        max_pending: int = DEFAULT_MAX_PENDING,
        subscribe_timeout_seconds: float = DEFAULT_SUBSCRIBE_TIMEOUT_SECONDS,
        reconnect_timeout_seconds: float = DEFAULT_RECONNECT_TIMEOUT_SECONDS,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if subscribe_timeout_seconds <= 0:
            raise ValueError(f"subscribe_timeout_seconds must be positive, got {subscribe_timeout_seconds}")
        if reconnect_timeout_seconds < 0:
            raise ValueError(f"reconnect_timeout_seconds must not be negative, got {reconnect_timeout_seconds}")
        self._client = client
        self._prefix = prefix
        self._max_pending = max_pending
        self._subscribe_timeout = subscribe_timeout_seconds
        self._reconnect_timeout = reconnect_timeout_seconds
        self._subscriptions: set[_RedisSubscription] = set()
        self._closed = False

    @property
    def prefix(self) -> str:
        """The string put in front of every channel name in Redis."""
        return self._prefix

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")

    def _register(self, subscription: _RedisSubscription) -> None:
        self._check_open()
        self._subscriptions.add(subscription)

    def _unregister(self, subscription: _RedisSubscription) -> None:
        self._subscriptions.discard(subscription)

    async def publish(self, channel: str, message: bytes) -> None:
        """Send ``message`` to every subscriber of ``channel`` on any connected process."""
        self._check_open()
        await self._client.publish(self._prefix + channel, message)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """`publish` each (channel, message), in order, in one pipeline (one round trip)."""
        self._check_open()
        if not messages:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for channel, message in messages:
                pipe.publish(self._prefix + channel, message)
            await pipe.execute()

    def subscribe(self, *channels: str, starting: bytes = b"") -> Subscription:
        """Return a subscription to ``channels``, of their messages that start with ``starting``; it starts receiving
        when entered."""
        self._check_open()
        return _RedisSubscription(self, channels, self._max_pending, starting)

    async def ping(self) -> None:
        """Send ``PING``; raise if Redis cannot be reached or the bus was closed."""
        self._check_open()
        await self._client.ping()

    async def close(self) -> None:
        """End every subscription and close the Redis client."""
        if self._closed:
            return
        self._closed = True
        try:
            for subscription in tuple(self._subscriptions):
                await subscription._shutdown()
        finally:
            await self._client.aclose()


def create_bus(redis_url: str | None, *, prefix: str = DEFAULT_REDIS_PREFIX) -> Bus:
    """Return a `MemoryBus` when ``redis_url`` is ``None``, else a `RedisBus` on that URL.

    Redis pub/sub channels are shared by every logical database of a server: the prefix is what
    keeps two installations (or two tests) on one Redis apart.
    """
    if redis_url is None:
        return MemoryBus()
    return RedisBus(redis.asyncio.Redis.from_pool(blocking_pool(redis_url)), prefix=prefix)
