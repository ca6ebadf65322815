"""RateLimiter on in-process memory: moving-window semantics on a controlled clock, parsing, lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import limits.aio.storage.memory
import pytest
from limits.aio.storage import MemoryStorage

from tradestack.kit.ratelimit import MovingWindows, RateLimiter, RateLimitResult, create_rate_limiter, parse_limit


class FakeWallClock:
    """Stands in for the `time` module inside limits' memory storage, and for the limiter's clock."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeWallClock:
    fake = FakeWallClock()
    monkeypatch.setattr(limits.aio.storage.memory, "time", fake)
    return fake


@pytest.fixture(params=["limits-memory", "in-process"])
async def limiter(clock: FakeWallClock, request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    """The same moving-window contract on limits' memory storage and on our own synchronous windows."""
    in_process = request.param == "in-process"
    rate_limiter = RateLimiter.in_process(clock) if in_process else RateLimiter(MemoryStorage(), clock=clock)
    yield rate_limiter
    await rate_limiter.close()


def test_in_process_hits_need_no_event_loop(clock: FakeWallClock) -> None:
    limiter = RateLimiter.in_process(clock)
    assert [limiter.hit_now("2/minute", "c").allowed for _ in range(3)] == [True, True, False]
    clock.advance(61)
    assert limiter.hit_now("2/minute", "c").allowed


def test_in_process_windows_forget_idle_keys(clock: FakeWallClock) -> None:
    windows = MovingWindows(clock)
    for index in range(100):
        windows.hit(f"k{index}", 5, 1)
    clock.advance(2)
    for _ in range(5000):  # enough hits to trigger a sweep
        windows.hit("busy", 10_000, 60)
    assert len(windows) == 1


def test_hit_now_needs_an_in_process_limiter() -> None:
    with pytest.raises(RuntimeError, match="in-process"):
        RateLimiter(MemoryStorage()).hit_now("1/minute", "c")


async def test_n_hits_are_allowed_then_denied(limiter: RateLimiter) -> None:
    results = [await limiter.hit("3/minute", "client") for _ in range(5)]
    assert [result.allowed for result in results] == [True, True, True, False, False]
    assert [result.remaining for result in results] == [2, 1, 0, 0, 0]
    assert all(result.limit == 3 and result.window_seconds == 60 for result in results)
    denied = results[3]
    assert 0 < denied.reset_after_seconds <= 60


async def test_reset_after_is_when_the_oldest_hit_leaves_the_window(limiter: RateLimiter, clock: FakeWallClock) -> None:
    assert (await limiter.hit("2/minute", "c")).allowed
    clock.advance(30)
    second = await limiter.hit("2/minute", "c")
    assert second == RateLimitResult(allowed=True, limit=2, remaining=0, reset_after_seconds=30.0, window_seconds=60)
    clock.advance(15)
    assert await limiter.hit("2/minute", "c") == RateLimitResult(
        allowed=False, limit=2, remaining=0, reset_after_seconds=15.0, window_seconds=60
    )


async def test_window_moves_rather_than_resetting(limiter: RateLimiter, clock: FakeWallClock) -> None:
    assert (await limiter.hit("2/minute", "c")).allowed  # t=0
    clock.advance(30)
    assert (await limiter.hit("2/minute", "c")).allowed  # t=30
    clock.advance(30.5)
    # t=60.5: the hit at t=0 has left the window, the one at t=30 has not.
    freed = await limiter.hit("2/minute", "c")
    assert freed.allowed
    assert freed.remaining == 0
    assert freed.reset_after_seconds == pytest.approx(29.5)
    clock.advance(1)
    # t=61.5: a fixed window starting at t=60 would allow this; the moving window holds 30 and 60.5.
    assert not (await limiter.hit("2/minute", "c")).allowed


async def test_denied_hits_do_not_count(limiter: RateLimiter, clock: FakeWallClock) -> None:
    assert (await limiter.hit("1/minute", "c")).allowed
    clock.advance(59)
    assert not (await limiter.hit("1/minute", "c")).allowed
    clock.advance(1.5)
    assert (await limiter.hit("1/minute", "c")).allowed


async def test_remaining_is_capped_at_the_limit_after_everything_expires(limiter: RateLimiter, clock: FakeWallClock) -> None:
    for _ in range(3):
        await limiter.hit("3/second", "c")
    clock.advance(5)
    result = await limiter.hit("3/second", "c")
    assert result.allowed
    assert result.remaining == 2
    assert 0 < result.reset_after_seconds <= 1


async def test_denied_hit_reports_nothing_remaining_even_if_the_window_moved_meanwhile(clock: FakeWallClock) -> None:
    class WindowEmptiesRightAfterADenial(MemoryStorage):
        async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
            acquired = await super().acquire_entry(key, limit, expiry, amount)
            if not acquired:
                clock.advance(expiry + 1)  # the oldest hit expires before the window is read back
            return acquired

    limiter = RateLimiter(WindowEmptiesRightAfterADenial(), clock=clock)
    assert (await limiter.hit("1/minute", "c")).allowed
    denied = await limiter.hit("1/minute", "c")
    assert not denied.allowed
    assert denied.remaining == 0


async def test_identifiers_are_counted_separately(limiter: RateLimiter) -> None:
    assert (await limiter.hit("1/minute", "route", "alice")).allowed
    assert (await limiter.hit("1/minute", "route", "bob")).allowed
    assert (await limiter.hit("1/minute", "other-route", "alice")).allowed
    assert not (await limiter.hit("1/minute", "route", "alice")).allowed


async def test_identifiers_containing_the_separator_do_not_collide(limiter: RateLimiter) -> None:
    assert (await limiter.hit("1/minute", "a/b", "c")).allowed
    assert (await limiter.hit("1/minute", "a", "b/c")).allowed
    assert (await limiter.hit("1/minute", "a%2Fb", "c")).allowed
    assert not (await limiter.hit("1/minute", "a/b", "c")).allowed


async def test_different_limits_on_the_same_identifiers_are_separate(limiter: RateLimiter) -> None:
    assert (await limiter.hit("1/minute", "c")).allowed
    assert (await limiter.hit("1/second", "c")).allowed
    assert not (await limiter.hit("1/minute", "c")).allowed


async def test_limit_string_forms(limiter: RateLimiter) -> None:
    result = await limiter.hit("10 per 5 seconds", "c")
    assert (result.limit, result.window_seconds, result.remaining) == (10, 5, 9)
    result = await limiter.hit("100/hour", "c")
    assert (result.limit, result.window_seconds) == (100, 3600)


@pytest.mark.parametrize("bad", ["", "lots", "10/fortnight", "1/second;5/minute"])
async def test_invalid_or_multiple_limits_are_rejected(limiter: RateLimiter, bad: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        await limiter.hit(bad, "c")


def test_parsed_limits_are_cached() -> None:
    assert parse_limit("7/minute") is parse_limit("7/minute")
    assert parse_limit("7/minute").amount == 7


async def test_clear_forgets_one_key_only(limiter: RateLimiter) -> None:
    await limiter.hit("1/minute", "a")
    await limiter.hit("1/minute", "b")
    await limiter.clear("1/minute", "a")
    assert (await limiter.hit("1/minute", "a")).allowed
    assert not (await limiter.hit("1/minute", "b")).allowed


async def test_reset_forgets_everything(limiter: RateLimiter) -> None:
    await limiter.hit("1/minute", "a")
    await limiter.hit("1/hour", "b")
    await limiter.reset()
    assert (await limiter.hit("1/minute", "a")).allowed
    assert (await limiter.hit("1/hour", "b")).allowed


class UnhealthyStorage(MemoryStorage):
    async def check(self) -> bool:
        return False


async def test_ping_raises_connection_error_when_the_storage_is_unhealthy() -> None:
    await RateLimiter(MemoryStorage()).ping()
    with pytest.raises(ConnectionError, match="UnhealthyStorage"):
        await RateLimiter(UnhealthyStorage()).ping()


async def test_close_runs_the_close_hook_once_and_ends_use() -> None:
    calls: list[str] = []

    async def on_close() -> None:
        calls.append("closed")

    limiter = RateLimiter(MemoryStorage(), on_close=on_close)
    await limiter.close()
    await limiter.close()
    assert calls == ["closed"]
    with pytest.raises(RuntimeError, match="closed"):
        await limiter.hit("1/minute", "c")
    with pytest.raises(RuntimeError, match="closed"):
        await limiter.ping()


async def test_create_rate_limiter_without_url_uses_memory() -> None:
    limiter = create_rate_limiter(None)
    assert isinstance(limiter.storage, MemoryStorage)
    assert (await limiter.hit("1/minute", "x")).allowed
    await limiter.close()


@pytest.mark.parametrize("forget", ["clear", "reset"])
async def test_forgetting_keys_does_not_break_the_memory_storage_expiry_pass(forget: str) -> None:
    # limits' MemoryStorage expires entries in a background task that raises KeyError when a key
    # it is about to visit is removed meanwhile; clear() and reset() must not race it.
    storage = MemoryStorage()
    limiter = RateLimiter(storage)
    for identifier in ("a", "b", "c"):
        await limiter.hit("1/minute", identifier)
    await asyncio.sleep(0)  # the expiry pass starts and suspends on its first key
    timer = storage.timer
    assert timer is not None
    if forget == "clear":
        await limiter.clear("1/minute", "c")
    else:
        await limiter.reset()
    await asyncio.wait({timer})
    assert timer.exception() is None
    assert (await limiter.hit("1/minute", "c")).allowed


async def test_check_limit_returns_headers_then_raises_429_with_retry_after() -> None:
    from tradestack.core.errors import RateLimitedError
    from tradestack.kit.ratelimit import check_limit

    limiter = RateLimiter(MemoryStorage())
    try:
        first = await check_limit(limiter, "2/minute", "probe", label="test", description="probe")
        assert first["RateLimit-Limit"] == "2"
        assert first["RateLimit-Remaining"] == "1"
        await check_limit(limiter, "2/minute", "probe", label="test", description="probe")
        with pytest.raises(RateLimitedError, match="more than 2 requests per 60 s for probe") as denied:
            await check_limit(limiter, "2/minute", "probe", label="test", description="probe")
        assert int(denied.value.headers["Retry-After"]) >= 1
        assert denied.value.headers["RateLimit-Remaining"] == "0"
    finally:
        await limiter.close()
