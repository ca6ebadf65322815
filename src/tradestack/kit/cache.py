"""Key/value cache with per-entry TTL behind one interface.

Two implementations share the `Cache` protocol:

* `MemoryCache` keeps entries in process (bounded, least-recently-used eviction). It is the
  default for a single process and for tests.
* `RedisCache` keeps entries in Redis so that every API replica sees the same values.

`create_cache` picks one from configuration: no Redis URL means memory.

Both implementations share the same contract: values are bytes, a TTL is a positive number
of seconds (``None`` means no expiry), a missing or expired key reads as ``None``, and every
operation on a closed cache raises `RuntimeError`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

import redis.asyncio

from tradestack.kit.leanredis import LeanRedis
from tradestack.kit.metrics import CACHE_REQUESTS
from tradestack.kit.redispool import blocking_pool

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_REDIS_PREFIX",
    "Cache",
    "MemoryCache",
    "RedisCache",
    "create_cache",
]

DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_REDIS_PREFIX = "ts:cache:"


class Cache(Protocol):
    """A byte-valued key/value cache whose entries may expire after a TTL."""

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` if absent or expired."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in order (``None`` where absent or expired), in one round trip."""
        ...

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        """Store ``value`` under ``key``; it expires after ``ttl_seconds`` (never if ``None``)."""
        ...

    async def add(self, key: str, value: bytes, ttl_seconds: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent (atomically); True if this call stored it."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        ...

    async def ping(self) -> None:
        """Return if the cache is usable, raise otherwise."""
        ...

    async def close(self) -> None:
        """Release the cache's resources; the cache cannot be used afterwards."""
        ...


_IDLE_READERS = 8
"""Connections a `RedisCache` keeps for its reads of several keys between them (`LeanRedis`)."""
_HITS = CACHE_REQUESTS.labels(result="hit")
_MISSES = CACHE_REQUESTS.labels(result="miss")


def _counted(value: bytes | None) -> bytes | None:
    """Count one lookup as a hit or a miss (the cache hit ratio's samples), and pass the value on."""
    (_MISSES if value is None else _HITS).inc()
    return value


def counted_lookups(values: list[bytes | None]) -> list[bytes | None]:
    """Count values read from the cache by someone else's round trip (a script) as lookups; pass them on."""
    for value in values:
        _counted(value)
    return values


def _validate_ttl(ttl_seconds: float | None) -> None:
    if ttl_seconds is None:
        return
    if not math.isfinite(ttl_seconds) or ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds must be a positive finite number, got {ttl_seconds!r}")


class MemoryCache:
    """In-process cache bounded to ``max_entries``, evicting the least recently used entry.

    Expiry is measured with the injected ``monotonic`` clock, so tests can move time forward
    without sleeping. Expired entries are removed lazily, when read or when evicted.

    Every method completes without awaiting anything, so each operation is atomic with
    respect to other coroutines on the same event loop and no lock is needed. Writes belong to
    one loop; reads may also come from another thread of the process (the embedded matching
    engine's loop reads quotes): each step is one call into the C `OrderedDict`, atomic under
    the GIL, and a key that vanishes between two of them is simply absent.
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._max_entries = max_entries
        self._monotonic = monotonic
        # key -> (value, expiry deadline on the monotonic clock or None); the most recently
        # used entry is last.
        self._entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._closed = False

    @property
    def max_entries(self) -> int:
        """The most entries the cache holds before evicting the least recently used one."""
        return self._max_entries

    def __len__(self) -> int:
        """Number of stored entries, including expired ones not yet removed."""
        return len(self._entries)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("cache is closed")

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` if absent or expired."""
        return _counted(self._lookup(key))

    def _lookup(self, key: str) -> bytes | None:
        self._check_open()
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, deadline = entry
        if deadline is not None and self._monotonic() >= deadline:
            if self._entries.get(key) is entry:  # not replaced meanwhile by the writing thread
                self._entries.pop(key, None)
            return None
        with contextlib.suppress(KeyError):  # removed meanwhile by the writing thread
            self._entries.move_to_end(key)
        return value

    def get_now(self, key: str) -> bytes | None:
        """`get` without awaiting (this cache never waits on anything)."""
        return _counted(self._lookup(key))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in order (``None`` where absent or expired)."""
        return [_counted(self._lookup(key)) for key in keys]

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        """Store ``value`` under ``key``; it expires after ``ttl_seconds`` (never if ``None``)."""
        self._check_open()
        _validate_ttl(ttl_seconds)
        deadline = None if ttl_seconds is None else self._monotonic() + ttl_seconds
        self._entries[key] = (bytes(value), deadline)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def add(self, key: str, value: bytes, ttl_seconds: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent or expired; True if this call stored it."""
        if await self.get(key) is not None:  # no await happens inside: atomic on the event loop
            return False
        await self.set(key, value, ttl_seconds)
        return True

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        self._check_open()
        self._entries.pop(key, None)

    async def ping(self) -> None:
        """Return if the cache is open, raise `RuntimeError` if it was closed."""
        self._check_open()

    async def close(self) -> None:
        """Drop every entry; the cache cannot be used afterwards."""
        self._entries.clear()
        self._closed = True


class RedisCache:
    """Cache stored in Redis under ``prefix``, shared by every process using the same server.

    TTLs are sent as ``PX`` milliseconds, rounded up to a whole millisecond so an entry is
    never dropped before its TTL has elapsed. The cache owns ``client``: `close` closes it.
    """

    def __init__(self, client: redis.asyncio.Redis, prefix: str = DEFAULT_REDIS_PREFIX) -> None:
        self._client = client
        self._prefix = prefix
        self._closed = False
        self._lean = LeanRedis(client.connection_pool, idle=_IDLE_READERS)

    @property
    def prefix(self) -> str:
        """The string put in front of every key stored in Redis."""
        return self._prefix

    def _key(self, key: str) -> str:
        if self._closed:
            raise RuntimeError("cache is closed")
        return self._prefix + key

    def redis_key(self, key: str) -> str:
        """The Redis key ``key`` is stored under (for a caller reading it in a script of its own)."""
        return self._key(key)

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` if absent or expired."""
        value = await self._client.get(self._key(key))
        if value is None or isinstance(value, bytes):
            return _counted(value)
        # A client created with decode_responses=True hands back str.
        return _counted(value.encode())

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in order (``None`` where absent or expired), with one MGET."""
        if not keys:
            return []
        # Straight on a kept connection (`LeanRedis`): the order desk reads its group's quotes so, once a group.
        (values,) = await self._lean.pipeline([("MGET", *[self._key(key) for key in keys])])
        return [_counted(value.encode() if isinstance(value, str) else value) for value in values]

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        """Store ``value`` under ``key``; it expires after ``ttl_seconds`` (never if ``None``)."""
        name = self._key(key)
        _validate_ttl(ttl_seconds)
        if ttl_seconds is None:
            await self._client.set(name, value)
        else:
            await self._client.set(name, value, px=max(1, math.ceil(ttl_seconds * 1000)))

    async def add(self, key: str, value: bytes, ttl_seconds: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent (``SET NX``); True if this call stored it."""
        name = self._key(key)
        _validate_ttl(ttl_seconds)
        px = None if ttl_seconds is None else max(1, math.ceil(ttl_seconds * 1000))
        return bool(await self._client.set(name, value, px=px, nx=True))

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        await self._client.delete(self._key(key))

    async def ping(self) -> None:
        """Send ``PING``; raise if Redis cannot be reached or the cache was closed."""
        if self._closed:
            raise RuntimeError("cache is closed")
        await self._client.ping()

    async def close(self) -> None:
        """Close the Redis client and its connection pool."""
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()


def create_cache(redis_url: str | None, *, prefix: str = DEFAULT_REDIS_PREFIX) -> Cache:
    """Return a `MemoryCache` when ``redis_url`` is ``None``, else a `RedisCache` on that URL under ``prefix``."""
    if redis_url is None:
        return MemoryCache()
    return RedisCache(redis.asyncio.Redis.from_pool(blocking_pool(redis_url)), prefix=prefix)
