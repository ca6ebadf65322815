"""The RateLimiter contract, run on the in-process memory storage and on Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
import redis.exceptions
from limits.aio.storage import MemoryStorage, RedisStorage

from tradestack.kit.ratelimit import RateLimiter, create_rate_limiter

from ...conftest import skip_outside_ci  # type: ignore[import-not-found]


@pytest.fixture
async def limiter(backend_redis_url: str | None, unique_prefix: str) -> AsyncIterator[RateLimiter]:
    # A unique key prefix per test: reset() on Redis deletes everything under the prefix, so it
    # must never reach keys of a test running in parallel.
    rate_limiter = create_rate_limiter(backend_redis_url, key_prefix=unique_prefix.rstrip(":"))
    try:
        yield rate_limiter
    finally:
        await rate_limiter.reset()
        await rate_limiter.close()


async def test_n_hits_allowed_then_denied(limiter: RateLimiter) -> None:
    results = [await limiter.hit("5/minute", "route", "client") for _ in range(7)]
    assert [result.allowed for result in results] == [True] * 5 + [False] * 2
    assert [result.remaining for result in results] == [4, 3, 2, 1, 0, 0, 0]
    for result in results:
        assert result.limit == 5
        assert result.window_seconds == 60
        assert 0 < result.reset_after_seconds <= 60
    assert results[-1].reset_after_seconds > 55, "the oldest hit was only just made"


async def test_identifiers_and_limits_are_counted_separately(limiter: RateLimiter) -> None:
    assert (await limiter.hit("1/minute", "route", "alice")).allowed
    assert (await limiter.hit("1/minute", "route", "bob")).allowed
    assert (await limiter.hit("1/minute", "other", "alice")).allowed
    assert (await limiter.hit("1/hour", "route", "alice")).allowed
    assert (await limiter.hit("1/minute", "a/b", "c")).allowed
    assert (await limiter.hit("1/minute", "a", "b/c")).allowed
    assert not (await limiter.hit("1/minute", "route", "alice")).allowed


async def test_concurrent_hits_never_exceed_the_limit(limiter: RateLimiter) -> None:
    results = await asyncio.gather(*(limiter.hit("10/minute", "burst") for _ in range(40)))
    assert sum(result.allowed for result in results) == 10
    assert all(result.remaining == 0 for result in results if not result.allowed)


async def test_short_window_reports_a_reset_within_the_window(limiter: RateLimiter) -> None:
    assert (await limiter.hit("2/second", "c")).allowed
    assert (await limiter.hit("2/second", "c")).allowed
    denied = await limiter.hit("2/second", "c")
    assert not denied.allowed
    assert 0 < denied.reset_after_seconds <= 1


async def test_clear_and_reset(limiter: RateLimiter) -> None:
    await limiter.hit("1/minute", "a")
    await limiter.hit("1/minute", "b")
    await limiter.clear("1/minute", "a")
    assert (await limiter.hit("1/minute", "a")).allowed
    assert not (await limiter.hit("1/minute", "b")).allowed
    await limiter.reset()
    assert (await limiter.hit("1/minute", "b")).allowed


async def test_ping_answers_while_open_and_refuses_once_closed(backend_redis_url: str | None, unique_prefix: str) -> None:
    limiter = create_rate_limiter(backend_redis_url, key_prefix=unique_prefix.rstrip(":"))
    await limiter.ping()
    await limiter.close()
    with pytest.raises(RuntimeError, match="rate limiter is closed"):
        await limiter.ping()


async def test_invalid_limit_is_rejected(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        await limiter.hit("often", "c")


async def test_create_rate_limiter_picks_the_storage(backend_redis_url: str | None) -> None:
    limiter = create_rate_limiter(backend_redis_url)
    try:
        expected = MemoryStorage if backend_redis_url is None else RedisStorage
        assert isinstance(limiter.storage, expected)
        assert limiter.counts_in_process is (backend_redis_url is None)
    finally:
        await limiter.close()


async def test_hit_many_counts_in_order_and_stops_at_the_first_denial(limiter: RateLimiter) -> None:
    checks = [("2/minute", ("ip", "1.2.3.4")), ("1/minute", ("principal", "user:a"))]
    first, reads = await limiter.hit_many(checks)
    assert [result.allowed if result else None for result in first] == [True, True]
    assert reads is None  # nothing asked to read
    second, _ = await limiter.hit_many(checks)
    assert second[0] is not None
    assert second[0].allowed
    assert second[0].remaining == 0
    assert second[1] is not None
    assert not second[1].allowed
    third, _ = await limiter.hit_many(checks)
    assert third[0] is not None
    assert not third[0].allowed
    assert third[1] is None  # not counted after the IP limit refused
    # The counts are the ones `hit` sees: the denied checks did not count.
    assert not (await limiter.hit("2/minute", "ip", "1.2.3.4")).allowed
    await limiter.clear("2/minute", "ip", "1.2.3.4")
    assert (await limiter.hit("2/minute", "ip", "1.2.3.4")).allowed


@pytest.mark.redis
async def test_redis_hit_many_reads_keys_in_the_same_round_trip(redis_url: str, unique_prefix: str) -> None:
    limiter = create_rate_limiter(redis_url, key_prefix=unique_prefix.rstrip(":"))
    admin = redis.asyncio.from_url(redis_url)
    present, absent = f"{unique_prefix}present", f"{unique_prefix}absent"
    try:
        await admin.set(present, b"state")
        results, reads = await limiter.hit_many([("3/minute", ("ip", "c"))], [present, absent])
        assert results[0] is not None
        assert results[0].allowed
        assert results[0].remaining == 2
        assert reads == [b"state", None]
    finally:
        await admin.delete(present)
        await limiter.reset()
        await limiter.close()
        await admin.aclose()


@pytest.mark.redis
async def test_redis_hit_many_of_requests_in_one_turn_share_one_round_trip(
    redis_url: str, unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tradestack.kit.ratelimit import LeanScript

    calls: list[int] = []
    run = LeanScript.__call__

    async def counted(script: LeanScript, keys: list[str], args: list[float | int]) -> object:
        calls.append(len(keys))
        return await run(script, keys, args)

    monkeypatch.setattr(LeanScript, "__call__", counted)
    limiter = create_rate_limiter(redis_url, key_prefix=unique_prefix.rstrip(":"))
    admin = redis.asyncio.from_url(redis_url)
    state = f"{unique_prefix}state"
    try:
        await admin.set(state, b"s")
        # Four requests in one turn: each counted as alone, in the order they asked (the third is refused by its
        # first limit, its second not counted; the fourth, refused by the shared limit, stops there too).
        results = await asyncio.gather(
            limiter.hit_many([("2/minute", ("ip", "x")), ("5/minute", ("principal", "a"))], [state]),
            limiter.hit_many([("2/minute", ("ip", "x"))]),
            limiter.hit_many([("2/minute", ("ip", "x")), ("5/minute", ("principal", "b"))], [state, f"{unique_prefix}none"]),
            limiter.hit_many([("5/minute", ("principal", "a")), ("2/minute", ("ip", "x"))]),
        )
        assert calls == [2 + 1 + 1 + 2 + 2 + 2], "one script call for the four requests"
        allowed = [[None if hit is None else (hit.allowed, hit.remaining) for hit in counted] for counted, _ in results]
        assert allowed == [[(True, 1), (True, 4)], [(True, 0)], [(False, 0), None], [(True, 3), (False, 0)]]
        assert [reads for _, reads in results] == [[b"s"], None, [b"s", None], None]
        # Nothing counted twice or lost: the principals' windows hold what was allowed.
        assert not (await limiter.hit("2/minute", "ip", "x")).allowed
        assert (await limiter.hit("5/minute", "principal", "a")).remaining == 2
        assert (await limiter.hit("5/minute", "principal", "b")).remaining == 4
    finally:
        await admin.delete(state)
        await limiter.reset()
        await limiter.close()
        await admin.aclose()


@pytest.mark.redis
async def test_redis_hit_many_falls_back_to_memory_without_reads_when_redis_is_down() -> None:
    limiter = create_rate_limiter("redis://127.0.0.1:1/0")
    try:
        results, reads = await limiter.hit_many([("1/minute", ("ip", "c"))], ["some-key"])
        assert results[0] is not None
        assert results[0].allowed
        assert reads is None
        again, _ = await limiter.hit_many([("1/minute", ("ip", "c"))], ["some-key"])
        assert again[0] is not None
        assert not again[0].allowed
    finally:
        await limiter.close()


@pytest.mark.redis
async def test_redis_limiters_share_counts_and_keep_keys_under_the_prefix(redis_url: str, unique_prefix: str) -> None:
    prefix = unique_prefix.rstrip(":")
    first = create_rate_limiter(redis_url, key_prefix=prefix)
    second = create_rate_limiter(redis_url, key_prefix=prefix)
    admin = redis.asyncio.from_url(redis_url)
    try:
        assert (await first.hit("2/minute", "shared")).allowed
        assert (await second.hit("2/minute", "shared")).allowed
        assert not (await first.hit("2/minute", "shared")).allowed
        keys = [key async for key in admin.scan_iter(match=f"{prefix}:*")]
        assert len(keys) == 1
        assert 0 < await admin.ttl(keys[0]) <= 60
    finally:
        await first.reset()
        await first.close()
        await second.close()
        await admin.aclose()


@pytest.mark.redis
async def test_redis_limiter_accepts_urls_without_a_port(redis_url: str, unique_prefix: str) -> None:
    parsed = redis.asyncio.ConnectionPool.from_url(redis_url).connection_kwargs
    host, db = parsed.get("host", "127.0.0.1"), parsed.get("db", 0)
    if parsed.get("port", 6379) != 6379:
        skip_outside_ci("the test Redis does not listen on the default port")
    limiter = create_rate_limiter(f"redis://{host}/{db}", key_prefix=unique_prefix.rstrip(":"))
    try:
        await limiter.ping()
        assert (await limiter.hit("1/minute", "c")).allowed
    finally:
        await limiter.reset()
        await limiter.close()


async def test_redis_ping_raises_connection_error_when_unreachable() -> None:
    limiter = create_rate_limiter("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(ConnectionError, match="unreachable"):
            await limiter.ping()
    finally:
        await limiter.close()


@pytest.mark.redis
@pytest.mark.parametrize("script", ["hit_and_count", "hit_many"])
async def test_redis_window_drops_the_hits_that_left_it_and_counts_the_rest(
    redis_url: str, unique_prefix: str, script: str
) -> None:
    # The scripts run with an explicit "now" here: hits at 1000, 1001 and 1002 fill a 3 per 10 s window.
    from tradestack.kit.ratelimit import _HIT_AND_COUNT_LUA, _HIT_MANY_LUA

    admin = redis.asyncio.from_url(redis_url)
    key = f"{unique_prefix}window"

    async def hit(now: float) -> tuple[int, bytes | None, int]:
        if script == "hit_and_count":
            reply = await admin.eval(_HIT_AND_COUNT_LUA, 1, key, now, 3, 10)
        else:
            reply = await admin.eval(_HIT_MANY_LUA, 1, key, now, 1, 1, 0, 3, 10)  # one request: one limit, no read
        return int(reply[0]), reply[1] or None, int(reply[2])

    try:
        assert await hit(1000) == (1, b"1000", 1)
        assert await hit(1001) == (1, b"1000", 2)
        assert await hit(1002) == (1, b"1000", 3)
        assert await hit(1009) == (0, b"1000", 3)  # full: refused, not counted
        assert await admin.llen(key) == 3
        # At 1011 the hit of 1000 has left the window: dropped, and the new hit fits.
        assert await hit(1011) == (1, b"1001", 3)
        assert await admin.lrange(key, 0, -1) == [b"1011", b"1002", b"1001"]
        # Long after, every old hit is dropped: the list holds the window's hits only.
        assert await hit(5000) == (1, b"5000", 1)
        assert await admin.lrange(key, 0, -1) == [b"5000"]
    finally:
        await admin.delete(key)
        await admin.aclose()


@pytest.mark.redis
async def test_lean_script_loads_its_script_and_survives_a_dropped_connection(redis_url: str) -> None:
    import secrets

    from tradestack.kit.ratelimit import LeanScript

    pool = redis.asyncio.BlockingConnectionPool.from_url(redis_url, max_connections=4)
    admin = redis.asyncio.from_url(redis_url)
    # A script this server has never seen: the first call meets NOSCRIPT and loads it.
    script = LeanScript(pool, f"-- {secrets.token_hex(8)}\nreturn {{KEYS[1], ARGV[1]}}")
    try:
        assert await script(["k"], [7]) == [b"k", b"7"]
        kept = script._lean._idle[0]
        host, port = kept._writer.get_extra_info("sockname")[:2]
        await admin.execute_command("CLIENT", "KILL", f"{host}:{port}")
        # The kept connection is dead: the call is made again on a fresh one.
        assert await script(["k"], [8]) == [b"k", b"8"]
        with pytest.raises(redis.exceptions.ResponseError):
            await LeanScript(pool, "return redis.call('no-such-command')")([], [])
        assert await script(["k"], [9]) == [b"k", b"9"]
    finally:
        await pool.aclose()
        await admin.aclose()
