"""The Cache contract, run against MemoryCache and RedisCache."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
import redis.exceptions

from tradestack.kit.cache import Cache, MemoryCache, RedisCache, create_cache


async def _delete_prefixed(url: str, prefix: str) -> None:
    admin = redis.asyncio.from_url(url)
    try:
        keys = [key async for key in admin.scan_iter(match=f"{prefix}*")]
        if keys:
            await admin.delete(*keys)
    finally:
        await admin.aclose()


@pytest.fixture
async def cache(backend_redis_url: str | None, unique_prefix: str) -> AsyncIterator[Cache]:
    if backend_redis_url is None:
        memory = MemoryCache()
        yield memory
        await memory.close()
        return
    shared = RedisCache(redis.asyncio.from_url(backend_redis_url), prefix=unique_prefix)
    try:
        yield shared
    finally:
        await shared.close()
        await _delete_prefixed(backend_redis_url, unique_prefix)


async def test_missing_key_reads_as_none(cache: Cache) -> None:
    assert await cache.get("missing") is None


async def test_set_get_overwrite_delete(cache: Cache) -> None:
    await cache.set("k", b"one")
    assert await cache.get("k") == b"one"
    await cache.set("k", b"two")
    assert await cache.get("k") == b"two"
    await cache.delete("k")
    assert await cache.get("k") is None
    await cache.delete("k")


async def test_values_are_binary_safe(cache: Cache) -> None:
    everything = bytes(range(256)) * 4
    await cache.set("bin", everything)
    await cache.set("empty", b"")
    await cache.set("unicode key \u00e9\u2603", b"\x00")
    assert await cache.get("bin") == everything
    assert await cache.get("empty") == b""
    assert await cache.get("unicode key \u00e9\u2603") == b"\x00"


async def test_get_many_keeps_order_and_reports_missing(cache: Cache) -> None:
    await cache.set("m1", b"one")
    await cache.set("m3", b"three")
    await cache.set("gone", b"x", ttl_seconds=0.01)
    await asyncio.sleep(0.05)
    assert await cache.get_many(["m3", "m2", "m1", "gone"]) == [b"three", None, b"one", None]
    assert await cache.get_many([]) == []


async def test_keys_are_independent(cache: Cache) -> None:
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    await cache.delete("a")
    assert await cache.get("a") is None
    assert await cache.get("b") == b"2"


async def _gone_within(cache: Cache, key: str, seconds: float) -> bool:
    """Whether `key` disappears within `seconds` (polled, so a slow machine only makes it wait longer)."""
    deadline = time.monotonic() + seconds
    while await cache.get(key) is not None:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_entry_expires_after_its_ttl(cache: Cache) -> None:
    # Half a second leaves room for the round trips before the first read even on a loaded machine.
    await cache.set("short", b"v", ttl_seconds=0.5)
    set_at = time.monotonic()
    await cache.set("long", b"v", ttl_seconds=30)
    await cache.set("forever", b"v")
    assert await cache.get("short") == b"v"
    assert await _gone_within(cache, "short", 10)
    assert time.monotonic() - set_at >= 0.5
    assert await cache.get("long") == b"v"
    assert await cache.get("forever") == b"v"


async def test_overwrite_without_ttl_removes_the_ttl(cache: Cache) -> None:
    await cache.set("k", b"v", ttl_seconds=0.5)
    await cache.set("k", b"v2")
    await cache.set("witness", b"w", ttl_seconds=0.5)  # set after k: once it has expired, so would k have
    assert await _gone_within(cache, "witness", 10)
    assert await cache.get("k") == b"v2"


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf])
async def test_invalid_ttl_is_rejected_and_nothing_is_stored(cache: Cache, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        await cache.set("k", b"v", ttl_seconds=ttl)
    assert await cache.get("k") is None


async def test_add_stores_only_when_absent_and_one_of_many_concurrent_adds_wins(cache: Cache) -> None:
    results = await asyncio.gather(*(cache.add("once", str(i).encode(), ttl_seconds=30) for i in range(20)))
    assert results.count(True) == 1
    assert await cache.get("once") == str(results.index(True)).encode()
    assert await cache.add("once", b"again") is False


async def test_concurrent_use(cache: Cache) -> None:
    await asyncio.gather(*(cache.set(f"k{index}", str(index).encode()) for index in range(50)))
    values = await asyncio.gather(*(cache.get(f"k{index}") for index in range(50)))
    assert values == [str(index).encode() for index in range(50)]


async def test_closed_cache_refuses_use(cache: Cache) -> None:
    await cache.ping()
    await cache.close()
    with pytest.raises(RuntimeError, match="closed"):
        await cache.ping()
    with pytest.raises(RuntimeError, match="closed"):
        await cache.get("k")
    await cache.close()


@pytest.mark.redis
async def test_redis_entries_live_under_the_prefix_with_a_millisecond_ttl(redis_url: str, unique_prefix: str) -> None:
    cache = RedisCache(redis.asyncio.from_url(redis_url), prefix=unique_prefix)
    admin = redis.asyncio.from_url(redis_url)
    try:
        assert cache.prefix == unique_prefix
        await cache.set("k", b"v", ttl_seconds=12.3456)
        await cache.set("tiny", b"v", ttl_seconds=0.0001)
        await cache.set("plain", b"v")
        assert await admin.get(f"{unique_prefix}k") == b"v"
        assert 12_000 < await admin.pttl(f"{unique_prefix}k") <= 12_346
        assert await admin.pttl(f"{unique_prefix}plain") == -1
        await asyncio.sleep(0.01)
        assert await cache.get("tiny") is None
    finally:
        await cache.close()
        await admin.aclose()
        await _delete_prefixed(redis_url, unique_prefix)


@pytest.mark.redis
async def test_redis_cache_accepts_a_decoding_client(redis_url: str, unique_prefix: str) -> None:
    cache = RedisCache(redis.asyncio.from_url(redis_url, decode_responses=True), prefix=unique_prefix)
    try:
        await cache.set("k", "h\u00e9".encode())
        assert await cache.get("k") == "h\u00e9".encode()
    finally:
        await cache.close()
        await _delete_prefixed(redis_url, unique_prefix)


@pytest.mark.redis
async def test_create_cache_with_url_shares_data_across_instances(redis_url: str) -> None:
    first, second = create_cache(redis_url), create_cache(redis_url)
    key = f"test:{uuid.uuid4().hex}"
    try:
        assert isinstance(first, RedisCache)
        assert first.prefix == "ts:cache:"
        await first.set(key, b"shared", ttl_seconds=30)
        assert await second.get(key) == b"shared"
        await second.delete(key)
        assert await first.get(key) is None
    finally:
        await first.close()
        await second.close()


async def test_redis_cache_ping_raises_when_redis_is_unreachable() -> None:
    cache = RedisCache(redis.asyncio.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1))
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await cache.ping()
    finally:
        await cache.close()
