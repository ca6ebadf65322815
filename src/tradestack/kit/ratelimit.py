"""Rate limiting with a moving window, stored in process or in Redis.

`RateLimiter` wraps the :pypi:`limits` moving-window strategy around any async `limits`
storage and reports, for every hit, whether it was allowed together with the numbers an HTTP
layer needs for ``RateLimit-*``/``Retry-After`` headers.

A limit is written in the `limits` notation, for example ``"100/minute"`` or
``"10 per 5 seconds"``, and applies separately to every combination of identifiers (for
example a route and a client address). The moving window means that at most ``amount`` hits
are allowed within any span of ``window`` seconds; a denied hit does not count.

`create_rate_limiter` picks the storage from configuration: no Redis URL means in-process
memory (correct for one process), otherwise Redis (shared by every replica).

The in-process limiter keeps its windows in `MovingWindows`, synchronously: `RateLimiter.hit_now`
counts a hit without awaiting anything, which is what the embedded mode's request path uses. On
Redis, `RateLimiter.hit_many` counts several limits and reads cache keys in ONE round trip (one
Lua script), which is what the request path of the production mode uses; the requests that count
their limits in the same turn of the event loop share that round trip (`_HitBatch`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio
import redis.exceptions
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from tradestack.core.errors import RateLimitedError
from tradestack.kit.leanredis import LeanRedis, pack, send
from tradestack.kit.metrics import RATE_LIMITED
from tradestack.kit.outages import CACHE_ERRORS, count_outage
from tradestack.kit.redispool import blocking_pool

__all__ = [
    "DEFAULT_REDIS_PREFIX",
    "LimitCheck",
    "MovingWindows",
    "RateLimitResult",
    "RateLimiter",
    "check_limit",
    "create_rate_limiter",
    "headers_or_refusal",
    "parse_limit",
    "rate_limit_headers",
]

DEFAULT_REDIS_PREFIX = "ts:ratelimit"
"""Prefix of every rate-limit key in Redis (`limits` appends ``:`` and the key)."""


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    """The outcome of one hit against a limit.

    ``remaining`` is how many more hits the window allows right now (0 when denied) and
    ``reset_after_seconds`` is how long until the oldest hit in the window expires, that is
    until a slot frees up. ``limit`` and ``window_seconds`` describe the limit itself.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after_seconds: float
    window_seconds: int


@functools.lru_cache(maxsize=1024)
def parse_limit(limit: str) -> RateLimitItem:
    """Parse one limit such as ``"100/minute"``; the result is cached per string.

    Raises `ValueError` if ``limit`` is not valid `limits` notation or holds several limits.
    """
    try:
        items = parse_many(limit)
    except ValueError as exc:
        raise ValueError(f"invalid rate limit {limit!r}: {exc}") from exc
    if len(items) != 1:
        raise ValueError(f"expected exactly one rate limit, got {len(items)} in {limit!r}")
    return items[0]


LimitCheck = tuple[str, tuple[str, ...]]
"""One limit to count in `RateLimiter.hit_many`: the limit and its identifiers."""

_SWEEP_EVERY_HITS = 4096


class MovingWindows:
    """Moving windows kept in process, without awaiting: at most ``amount`` hits within any ``expiry`` seconds.

    Each key holds the timestamps of its hits still in the window (at most ``amount``, oldest
    first). A hit is allowed if fewer than ``amount`` remain once the ones older than
    ``expiry`` are dropped; a denied hit does not count. Keys that have emptied are swept every
    few thousand hits, so memory stays proportional to the clients active within a window.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[int, deque[float]]] = {}
        self._hits = 0

    def hit(self, key: str, amount: int, expiry: int) -> tuple[bool, float, int]:
        """Count one hit; return (allowed, when the oldest hit leaves the window, hits still allowed)."""
        now = self._clock()
        entry = self._windows.get(key)
        if entry is None:
            entry = self._windows[key] = (expiry, deque(maxlen=amount))
        window = entry[1]
        cutoff = now - expiry
        while window and window[0] < cutoff:
            window.popleft()
        allowed = len(window) < amount
        if allowed:
            window.append(now)
        self._hits += 1
        if self._hits >= _SWEEP_EVERY_HITS:
            self._sweep(now)
        return allowed, (window[0] if window else now) + expiry, amount - len(window)

    def _sweep(self, now: float) -> None:
        self._hits = 0
        for key in [key for key, (expiry, window) in self._windows.items() if not window or window[-1] < now - expiry]:
            del self._windows[key]

    def clear(self, key: str) -> None:
        """Forget the hits of one key."""
        self._windows.pop(key, None)

    def reset(self) -> None:
        """Forget every hit."""
        self._windows.clear()

    def __len__(self) -> int:
        return len(self._windows)


def _escape(identifier: str) -> str:
    # `limits` joins identifiers with "/", so escape it to keep ("a/b", "c") and ("a", "b/c")
    # from sharing a counter.
    return identifier.replace("%", "%25").replace("/", "%2F")


@functools.lru_cache(maxsize=4096)
def _window_of(limit: str, identifiers: tuple[str, ...]) -> tuple[RateLimitItem, str, int]:
    """The parsed ``limit``, the storage key of its window for ``identifiers``, and its length in seconds (cached:
    the same few callers hit the same limits on every request)."""
    item = parse_limit(limit)
    return item, item.key_for(*(_escape(identifier) for identifier in identifiers)), item.get_expiry()


class RateLimiter:
    """Moving-window rate limiter over a `limits` async storage.

    ``clock`` must be the clock the storage timestamps hits with (wall-clock seconds for the
    memory and Redis storages); it is only used to turn the window's reset time into
    ``reset_after_seconds``. ``on_close`` is awaited by `close` to release whatever the
    storage was built on.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        clock: Callable[[], float] = time.time,
        on_close: Callable[[], Awaitable[None]] | None = None,
        hit_and_count: HitAndCount | None = None,
        hit_many: HitMany | None = None,
        fallback: RateLimiter | None = None,
        windows: MovingWindows | None = None,
    ) -> None:
        self._storage = storage
        # In process: the windows are counted here, synchronously, and `storage` is not used for hits.
        self._windows = windows
        self._hit_many = hit_many
        # Counts in process while the shared storage (Redis) is unreachable: limits stay per process then.
        self._fallback = fallback
        self._strategy = MovingWindowRateLimiter(storage)
        self._hit_and_count = hit_and_count
        self._clock = clock
        self._on_close = on_close
        self._closed = False

    @classmethod
    def in_process(cls, clock: Callable[[], float] = time.time) -> RateLimiter:
        """A limiter counting in this process's memory, without awaiting (`hit_now`)."""
        return cls(MemoryStorage(), clock=clock, windows=MovingWindows(clock))

    @property
    def storage(self) -> Storage:
        """The `limits` storage holding the hits (unused by an `in_process` limiter)."""
        return self._storage

    @property
    def counts_in_process(self) -> bool:
        """True if `hit_now` can count a hit without I/O (the limiter was made by `in_process`)."""
        return self._windows is not None

    def hit_now(self, limit: str, *identifiers: str) -> RateLimitResult:
        """`hit` without awaiting, for an `in_process` limiter (`RuntimeError` otherwise)."""
        self._check_open()
        if self._windows is None:
            raise RuntimeError("hit_now needs an in-process limiter")
        item, key, expiry = _window_of(limit, identifiers)
        allowed, reset_time, remaining = self._windows.hit(key, item.amount, expiry)
        return self._result(item, allowed, reset_time, remaining, expiry)

    def _result(
        self, item: RateLimitItem, allowed: bool, reset_time: float, remaining: int, expiry: int | None = None
    ) -> RateLimitResult:
        return RateLimitResult(
            allowed=allowed,
            limit=item.amount,
            remaining=max(0, min(item.amount, remaining)) if allowed else 0,
            reset_after_seconds=max(0.0, reset_time - self._clock()),
            window_seconds=item.get_expiry() if expiry is None else expiry,
        )

    async def hit_many(
        self, checks: Sequence[LimitCheck], reads: Sequence[str] = ()
    ) -> tuple[list[RateLimitResult | None], list[bytes | None] | None]:
        """Count ``checks`` in order and read the Redis keys ``reads`` (full keys), in one round trip on Redis.

        A check after a denied one is not counted (its result is None), as if they had been
        counted one by one and the caller had stopped at the first denial. The reads come back
        in order, None where a key is absent; the whole list is None if none were asked for or they
        could not be read (no Redis, or Redis unreachable - the checks were then counted in process).
        """
        self._check_open()
        if self._hit_many is not None:
            try:
                return await self._redis_hit_many(self._hit_many, checks, reads)
            except CACHE_ERRORS as exc:
                if self._fallback is None:
                    raise
                count_outage("cache", "rate_limit", exc)
                counted, _ = await self._fallback.hit_many(checks)
                return counted, None
        results: list[RateLimitResult | None] = []
        denied = False
        for limit, identifiers in checks:
            if denied:
                results.append(None)
                continue
            result = self.hit_now(limit, *identifiers) if self._windows is not None else await self.hit(limit, *identifiers)
            results.append(result)
            denied = not result.allowed
        return results, None

    async def _redis_hit_many(
        self, hit_many: HitMany, checks: Sequence[LimitCheck], reads: Sequence[str]
    ) -> tuple[list[RateLimitResult | None], list[bytes | None] | None]:
        windows = [_window_of(limit, tuple(identifiers)) for limit, identifiers in checks]
        items = [item for item, _, _ in windows]
        counted, values = await hit_many(items, [key for _, key, _ in windows], reads)
        results: list[RateLimitResult | None] = []
        for (item, _, expiry), outcome in zip(windows, counted, strict=True):
            results.append(None if outcome is None else self._result(item, *outcome, expiry))
        return results, values if reads else None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("rate limiter is closed")

    async def _let_memory_expiry_finish(self) -> None:
        # limits' MemoryStorage expires entries in a background task that fails with KeyError
        # if a key it is visiting is removed meanwhile. Removal (clear, reset) never awaits, so
        # once a running expiry pass has finished it cannot interleave with one.
        if isinstance(self._storage, MemoryStorage):
            timer = self._storage.timer
            if timer is not None and not timer.done():
                await asyncio.wait({timer})

    async def hit(self, limit: str, *identifiers: str) -> RateLimitResult:
        """Count one hit against ``limit`` for ``identifiers`` unless the window is full.

        Raises `ValueError` for an invalid ``limit``, and the storage's error if it cannot be
        reached.
        """
        self._check_open()
        if self._fallback is not None:
            try:
                return await self._hit(limit, *identifiers)
            except CACHE_ERRORS as exc:
                count_outage("cache", "rate_limit", exc)
                return await self._fallback.hit(limit, *identifiers)
        return await self._hit(limit, *identifiers)

    async def _hit(self, limit: str, *identifiers: str) -> RateLimitResult:
        if self._windows is not None:
            return self.hit_now(limit, *identifiers)
        item = parse_limit(limit)
        keys = tuple(_escape(identifier) for identifier in identifiers)
        if self._hit_and_count is not None:
            allowed, reset_time, remaining = await self._hit_and_count(item, keys)
        else:
            allowed = await self._strategy.hit(item, *keys)
            stats = await self._strategy.get_window_stats(item, *keys)
            reset_time, remaining = stats.reset_time, stats.remaining
        return self._result(item, allowed, reset_time, remaining)

    async def clear(self, limit: str, *identifiers: str) -> None:
        """Forget every hit counted against ``limit`` for ``identifiers``."""
        self._check_open()
        item = parse_limit(limit)
        if self._windows is not None:
            self._windows.clear(item.key_for(*(_escape(identifier) for identifier in identifiers)))
            return
        await self._let_memory_expiry_finish()
        try:
            await self._strategy.clear(item, *(_escape(identifier) for identifier in identifiers))
        except CACHE_ERRORS as exc:
            if self._fallback is None:
                raise
            count_outage("cache", "rate_limit", exc)
        if self._fallback is not None:
            await self._fallback.clear(limit, *identifiers)

    async def ping(self) -> None:
        """Raise `ConnectionError` if the storage does not answer its health check."""
        self._check_open()
        if not await self._storage.check():
            raise ConnectionError(f"rate-limit storage {type(self._storage).__name__} is unreachable")

    async def reset(self) -> None:
        """Forget every hit of every limit in the storage (for tests).

        With Redis this deletes every key under the storage's prefix using ``KEYS``, which
        blocks the server for a moment on a large data set.
        """
        self._check_open()
        if self._windows is not None:
            self._windows.reset()
            return
        await self._let_memory_expiry_finish()
        await self._storage.reset()

    async def close(self) -> None:
        """Release the storage's connections; the limiter cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        await self._let_memory_expiry_finish()
        if self._on_close is not None:
            await self._on_close()
        if self._fallback is not None:
            await self._fallback.close()


def create_rate_limiter(redis_url: str | None, *, key_prefix: str = DEFAULT_REDIS_PREFIX) -> RateLimiter:
    """Return a limiter on in-process memory when ``redis_url`` is ``None``, else on Redis.

    The Redis storage is given a connection pool built by redis-py from ``redis_url``, so
    every URL form redis-py accepts works (``redis://``, ``rediss://``, ``unix://``, with or
    without a port), and `RateLimiter.close` closes that pool. `limits` then only needs its
    own scheme, ``async+redis://``, to select the Redis storage; the address comes from the
    pool. Keys are stored as ``{key_prefix}:...``.
    """
    if redis_url is None:
        return RateLimiter.in_process()
    pool: redis.asyncio.ConnectionPool = blocking_pool(redis_url)
    storage = RedisStorage(
        "async+redis://",
        implementation="redispy",
        key_prefix=key_prefix,
        connection_pool=pool,  # type: ignore[arg-type]  # documented option, typed as scalars only
    )
    return RateLimiter(
        storage,
        on_close=pool.aclose,
        hit_and_count=_redis_hit_and_count(pool, key_prefix),
        hit_many=_redis_hit_many(pool, key_prefix),
        fallback=RateLimiter.in_process(),
    )


HitAndCount = Callable[[RateLimitItem, tuple[str, ...]], Awaitable[tuple[bool, float, int]]]

# limits' moving window on Redis, acquire and window statistics in ONE script (limits runs two:
# acquire_moving_window.lua, then moving_window.lua). Same list layout and key, newest hit first,
# so `clear`, `reset` and limits' own reads still agree with it. The hits that have left the window
# are dropped from the tail first (each once), so the list holds only the window's hits and the
# statistics are its length and its last entry: 4 commands per hit (amortised), where searching the
# list for the window's oldest hit cost O(log limit) LINDEXes of O(hits) each - ~100 µs of Redis
# per request once a large limit (e.g. an unlimited 100000000/minute) held a minute of hits. A hit
# is only pushed below the limit, so no LTRIM is needed (a lowered limit's surplus leaves with time).
# `hit` returns acquired (0/1), the oldest hit in the window (string, or false), hits in the window.
_MOVING_WINDOW_HIT_LUA = """
local function hit(key, limit, expiry, now)
    local target = now - expiry
    local oldest = redis.call('lindex', key, -1)
    while oldest and tonumber(oldest) < target do
        redis.call('rpop', key)
        oldest = redis.call('lindex', key, -1)
    end
    local count = redis.call('llen', key)
    if count >= limit then
        return 0, oldest, limit
    end
    count = redis.call('lpush', key, now)
    redis.call('expire', key, expiry)
    if count == 1 then
        oldest = redis.call('lindex', key, -1)
    end
    return 1, oldest, count
end
"""

# Returns {acquired (0/1), oldest hit in the window (string, or false), hits in the window}.
_HIT_AND_COUNT_LUA = (
    _MOVING_WINDOW_HIT_LUA
    + """
local acquired, oldest, count = hit(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[1]))
return {acquired, oldest, count}
"""
)


def _redis_hit_and_count(pool: redis.asyncio.ConnectionPool, key_prefix: str) -> HitAndCount:
    script = redis.asyncio.Redis(connection_pool=pool).register_script(_HIT_AND_COUNT_LUA)

    async def hit_and_count(item: RateLimitItem, keys: tuple[str, ...]) -> tuple[bool, float, int]:
        now = time.time()
        expiry = item.get_expiry()
        acquired, oldest, count = await script(keys=[f"{key_prefix}:{item.key_for(*keys)}"], args=[now, item.amount, expiry])
        window_start = float(oldest) if oldest else now
        return bool(acquired), window_start + expiry, item.amount - int(count)

    return hit_and_count


HitMany = Callable[
    [Sequence[RateLimitItem], Sequence[str], Sequence[str]],
    Awaitable[tuple[list[tuple[bool, float, int] | None], list[bytes | None]]],
]

# The limits of several requests (`_MOVING_WINDOW_HIT_LUA`) and the keys each reads, one round trip for all.
# Each request's limits are counted in order, stopping at its first denial (later requests are counted all the
# same), then its keys are read. KEYS: per request, its limits' keys then the keys it reads. ARGV: now, the number
# of requests, then per request the number of its limits, the number of its reads, and amount and expiry per limit.
# Returns, per request: per limit acquired (0/1, or -1 when not counted), oldest hit in the window ('' if none) and
# hits in the window; then the value of each key it reads (false when absent).
_HIT_MANY_LUA = (
    _MOVING_WINDOW_HIT_LUA
    + """
local now = tonumber(ARGV[1])
local out = {}
local key = 0
local arg = 2
for _ = 1, tonumber(ARGV[2]) do
    local limits = tonumber(ARGV[arg + 1])
    local reads = tonumber(ARGV[arg + 2])
    arg = arg + 2
    local denied = false
    for i = 1, limits do
        if denied then
            out[#out + 1] = -1
            out[#out + 1] = ''
            out[#out + 1] = 0
        else
            local acquired, oldest, count = hit(KEYS[key + i], tonumber(ARGV[arg + 2 * i - 1]), tonumber(ARGV[arg + 2 * i]), now)
            denied = acquired == 0
            out[#out + 1] = acquired
            out[#out + 1] = oldest or ''
            out[#out + 1] = count
        end
    end
    key = key + limits
    arg = arg + 2 * limits
    for j = 1, reads do
        out[#out + 1] = redis.call('get', KEYS[key + j])
    end
    key = key + reads
end
return out
"""
)


class LeanScript:
    """One Lua script run by EVALSHA on a connection of ``pool``, without redis-py's per-command machinery
    (`LeanRedis`: a connection kept between calls, the command written straight to it). ``NOSCRIPT`` loads the
    script and runs it again. Errors are redis-py's.
    """

    def __init__(self, pool: redis.asyncio.ConnectionPool, lua: str) -> None:
        self._lean = LeanRedis(pool)
        self._lua = lua
        self._sha = hashlib.sha1(lua.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[float | int]) -> Any:
        return await self._lean.run(functools.partial(self._run, keys=keys, args=args))

    async def _run(self, connection: redis.asyncio.Connection, *, keys: Sequence[str], args: Sequence[float | int]) -> Any:
        try:
            return await self._evalsha(connection, keys, args)
        except redis.exceptions.NoScriptError:
            await send(connection, pack(connection, [("SCRIPT", "LOAD", self._lua)]))
            await connection.read_response()
            return await self._evalsha(connection, keys, args)

    async def _evalsha(self, connection: redis.asyncio.Connection, keys: Sequence[str], args: Sequence[float | int]) -> Any:
        await send(connection, pack(connection, [("EVALSHA", self._sha, len(keys), *keys, *args)]))
        return await connection.read_response()


_MAX_BATCHED_REQUESTS = 64
"""Requests whose limits one script call counts at most (a larger batch is split)."""

_Counted = tuple[list[tuple[bool, float, int] | None], list[bytes | None]]


class _HitBatch:
    """The limits of every request that asks within one turn of the event loop, counted by ONE script call.

    Under load many requests reach their rate limits in the same turn (their bytes came in the same
    poll); each used to pay its own round trip to Redis - a write, a wake-up on the reply, parsing it -
    which cost the API more CPU than any other step of an authenticated request. Here the first request
    of a turn schedules the batch for the end of that turn, the others of the turn join it, and one
    `_HIT_MANY_LUA` call counts them all, in the order they asked, each exactly as alone (its limits in
    order, stopping at its first denial). A request waits one turn more than alone, no more. A failure
    of the call (Redis unreachable) is every request's, as it would have been alone.
    """

    def __init__(self, script: LeanScript, key_prefix: str) -> None:
        self._script = script
        self._key_prefix = key_prefix
        self._waiting: list[tuple[Sequence[RateLimitItem], Sequence[str], Sequence[str], asyncio.Future[_Counted]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, items: Sequence[RateLimitItem], keys: Sequence[str], reads: Sequence[str]) -> _Counted:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[_Counted] = loop.create_future()
        if self._loop is not loop:
            self._waiting = []  # left by a loop that stopped for good before sending them: nobody awaits them
            self._loop = loop
        if not self._waiting:
            loop.call_soon(self._send)
        self._waiting.append((items, keys, reads, answer))
        return await answer

    def _send(self) -> None:
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), _MAX_BATCHED_REQUESTS):
            batch = waiting[start : start + _MAX_BATCHED_REQUESTS]
            task = asyncio.ensure_future(self._count(batch))
            _RUNNING.add(task)
            task.add_done_callback(_RUNNING.discard)

    async def _count(
        self, batch: list[tuple[Sequence[RateLimitItem], Sequence[str], Sequence[str], asyncio.Future[_Counted]]]
    ) -> None:
        now = time.time()
        script_keys: list[str] = []
        args: list[float | int] = [now, len(batch)]
        for items, keys, reads, _ in batch:
            script_keys += [f"{self._key_prefix}:{key}" for key in keys]
            script_keys += reads
            args += [len(items), len(reads)]
            for item in items:
                args += [item.amount, item.get_expiry()]
        try:
            reply = await self._script(script_keys, args)
        except BaseException as exc:
            for *_, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        offset = 0
        for items, _, reads, answer in batch:
            counted: list[tuple[bool, float, int] | None] = []
            for item in items:
                acquired, oldest, count = reply[offset : offset + 3]
                offset += 3
                if int(acquired) < 0:
                    counted.append(None)
                    continue
                window_start = float(oldest) if oldest else now
                counted.append((bool(int(acquired)), window_start + item.get_expiry(), item.amount - int(count)))
            values = [_bytes_or_none(value) for value in reply[offset : offset + len(reads)]]
            offset += len(reads)
            if not answer.done():  # not if its request was cancelled meanwhile
                answer.set_result((counted, values))


def _bytes_or_none(value: Any) -> bytes | None:
    return value if isinstance(value, bytes) or value is None else bytes(value)


_RUNNING: set[asyncio.Task[None]] = set()
"""Batches being counted (a strong reference keeps each task alive until it ends)."""


def _redis_hit_many(pool: redis.asyncio.ConnectionPool, key_prefix: str) -> HitMany:
    return _HitBatch(LeanScript(pool, _HIT_MANY_LUA), key_prefix)


def rate_limit_headers(result: RateLimitResult) -> dict[str, str]:
    """``RateLimit-*`` response headers (IETF draft) for one limit's state."""
    return {
        "RateLimit-Limit": str(result.limit),
        "RateLimit-Remaining": str(result.remaining),
        "RateLimit-Reset": str(max(0, math.ceil(result.reset_after_seconds))),
    }


async def check_limit(limiter: RateLimiter, limit: str, *identifiers: str, label: str, description: str) -> dict[str, str]:
    """Count one hit; return the ``RateLimit-*`` headers, or raise `RateLimitedError` (429) with ``Retry-After``.

    ``label`` names the limit in the ``rate_limited_requests_total`` metric; ``description``
    says in the error whose requests were limited. An in-process limiter counts without awaiting.
    """
    result = limiter.hit_now(limit, *identifiers) if limiter.counts_in_process else await limiter.hit(limit, *identifiers)
    return headers_or_refusal(result, limit, label=label, description=description)


def headers_or_refusal(result: RateLimitResult, limit: str, *, label: str, description: str) -> dict[str, str]:
    """The ``RateLimit-*`` headers of a counted hit, or `RateLimitedError` (429) if it was denied (see `check_limit`)."""
    headers = rate_limit_headers(result)
    if result.allowed:
        return headers
    retry_after = max(1, math.ceil(result.reset_after_seconds))
    RATE_LIMITED.labels(limit=label).inc()
    item = parse_limit(limit)
    raise RateLimitedError(
        f"more than {item.amount} requests per {item.get_expiry()} s for {description}: retry after {retry_after} s",
        headers={**headers, "Retry-After": str(retry_after)},
    )
