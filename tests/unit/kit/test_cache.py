"""MemoryCache: values, TTL on an injected clock, LRU bound, lifecycle."""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradestack.kit.cache import Cache, MemoryCache, create_cache


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> MemoryCache:
    return MemoryCache(monotonic=clock)


async def test_missing_key_reads_as_none(cache: MemoryCache) -> None:
    assert await cache.get("nope") is None


async def test_set_then_get_returns_the_value(cache: MemoryCache) -> None:
    await cache.set("k", b"v")
    assert await cache.get("k") == b"v"


async def test_empty_value_is_distinct_from_missing(cache: MemoryCache) -> None:
    await cache.set("k", b"")
    assert await cache.get("k") == b""


async def test_set_overwrites(cache: MemoryCache) -> None:
    await cache.set("k", b"one")
    await cache.set("k", b"two")
    assert await cache.get("k") == b"two"
    assert len(cache) == 1


async def test_stored_value_is_a_copy_of_a_mutable_buffer(cache: MemoryCache) -> None:
    buffer = bytearray(b"abc")
    await cache.set("k", buffer)  # type: ignore[arg-type]
    buffer[0] = ord("z")
    assert await cache.get("k") == b"abc"


async def test_delete_removes_and_tolerates_missing(cache: MemoryCache) -> None:
    await cache.set("k", b"v")
    await cache.delete("k")
    await cache.delete("k")
    assert await cache.get("k") is None


async def test_entry_expires_exactly_at_its_ttl(cache: MemoryCache, clock: FakeClock) -> None:
    await cache.set("k", b"v", ttl_seconds=10)
    clock.advance(9.999)
    assert await cache.get("k") == b"v"
    clock.advance(0.001)
    assert await cache.get("k") is None
    assert len(cache) == 0, "an expired entry is removed when read"


async def test_entry_without_ttl_never_expires(cache: MemoryCache, clock: FakeClock) -> None:
    await cache.set("k", b"v")
    clock.advance(10**9)
    assert await cache.get("k") == b"v"


async def test_overwrite_replaces_the_ttl(cache: MemoryCache, clock: FakeClock) -> None:
    await cache.set("short", b"v", ttl_seconds=1)
    await cache.set("short", b"v2")
    await cache.set("long", b"v", ttl_seconds=100)
    await cache.set("long", b"v2", ttl_seconds=1)
    clock.advance(2)
    assert await cache.get("short") == b"v2"
    assert await cache.get("long") is None


async def test_reading_does_not_extend_the_ttl(cache: MemoryCache, clock: FakeClock) -> None:
    await cache.set("k", b"v", ttl_seconds=10)
    clock.advance(6)
    assert await cache.get("k") == b"v"
    clock.advance(6)
    assert await cache.get("k") is None


@pytest.mark.parametrize("ttl", [0, -1, -0.5, math.nan, math.inf])
async def test_non_positive_or_non_finite_ttl_is_rejected(cache: MemoryCache, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        await cache.set("k", b"v", ttl_seconds=ttl)
    assert await cache.get("k") is None


async def test_least_recently_used_entry_is_evicted(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=3, monotonic=clock)
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    await cache.set("c", b"3")
    assert await cache.get("a") == b"1"  # "b" is now the least recently used
    await cache.set("d", b"4")
    assert len(cache) == 3
    assert await cache.get("b") is None
    assert [await cache.get(key) for key in ("a", "c", "d")] == [b"1", b"3", b"4"]


async def test_overwriting_counts_as_use(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=2, monotonic=clock)
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    await cache.set("a", b"1again")
    await cache.set("c", b"3")
    assert await cache.get("b") is None
    assert await cache.get("a") == b"1again"


async def test_size_never_exceeds_max_entries(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=10, monotonic=clock)
    for index in range(1000):
        await cache.set(f"k{index}", b"v")
        assert len(cache) <= 10
    assert cache.max_entries == 10
    assert [await cache.get(f"k{index}") for index in range(990, 1000)] == [b"v"] * 10


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(max_entries=0)


async def test_concurrent_writers_keep_the_bound_and_key_value_pairing(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=50, monotonic=clock)

    async def writer(worker: int) -> None:
        for index in range(100):
            await cache.set(f"k{index % 60}", f"{worker}:{index}".encode())
            await asyncio.sleep(0)

    await asyncio.gather(*(writer(worker) for worker in range(8)))
    assert len(cache) == 50
    present = {index: await cache.get(f"k{index}") for index in range(60)}
    stored = {key: value for key, value in present.items() if value is not None}
    assert len(stored) == 50
    for key, value in stored.items():
        assert int(value.split(b":")[1]) % 60 == key


async def test_closed_cache_refuses_every_operation(cache: MemoryCache) -> None:
    await cache.set("k", b"v")
    await cache.ping()
    await cache.close()
    assert len(cache) == 0
    with pytest.raises(RuntimeError, match="closed"):
        await cache.ping()
    with pytest.raises(RuntimeError, match="closed"):
        await cache.get("k")
    with pytest.raises(RuntimeError, match="closed"):
        await cache.set("k", b"v")
    with pytest.raises(RuntimeError, match="closed"):
        await cache.delete("k")
    await cache.close()  # closing twice is harmless


def test_create_cache_without_url_is_in_memory() -> None:
    cache: Cache = create_cache(None)
    assert isinstance(cache, MemoryCache)


class ReferenceLru:
    """The behaviour MemoryCache must match, written the obvious way."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()

    def get(self, key: str, now: float) -> bytes | None:
        if key not in self.entries:
            return None
        value, deadline = self.entries[key]
        if deadline is not None and now >= deadline:
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return value

    def set(self, key: str, value: bytes, ttl: float | None, now: float) -> None:
        self.entries[key] = (value, None if ttl is None else now + ttl)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def delete(self, key: str) -> None:
        self.entries.pop(key, None)


@dataclass(frozen=True)
class Get:
    key: str


@dataclass(frozen=True)
class Set:
    key: str
    value: bytes
    ttl: int | None


@dataclass(frozen=True)
class Delete:
    key: str


@dataclass(frozen=True)
class Tick:
    seconds: int


Operation = Get | Set | Delete | Tick

keys = st.sampled_from(["a", "b", "c", "d", "e", "f"])
operations = st.lists(
    st.one_of(
        st.builds(Get, keys),
        st.builds(Set, keys, st.binary(max_size=4), st.one_of(st.none(), st.integers(1, 5))),
        st.builds(Delete, keys),
        st.builds(Tick, st.integers(0, 3)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(max_entries=st.integers(1, 5), ops=operations)
def test_behaves_like_a_reference_lru_with_ttl(max_entries: int, ops: list[Operation]) -> None:
    async def run() -> None:
        clock = FakeClock(0.0)
        cache = MemoryCache(max_entries=max_entries, monotonic=clock)
        reference = ReferenceLru(max_entries)
        for op in ops:
            match op:
                case Get(key):
                    assert await cache.get(key) == reference.get(key, clock.now)
                case Set(key, value, ttl):
                    await cache.set(key, value, ttl_seconds=ttl)
                    reference.set(key, value, ttl, clock.now)
                case Delete(key):
                    await cache.delete(key)
                    reference.delete(key)
                case Tick(seconds):
                    clock.advance(seconds)
            assert len(cache) == len(reference.entries) <= max_entries

    asyncio.run(run())
