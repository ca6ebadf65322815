"""The process's candle cache: kept while the version matches, bounded (least recently used series out first)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tradestack.marketdata.recent import CandleCache, ClosedCandles, cached_candles, candle_start

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _candle(n: int) -> str:
    ts = (T0 + timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f'{{"ts":"{ts}","open":"{n}","high":"{n}","low":"{n}","close":"{n}","volume":"1"}}'


def _entry(version: int, first: int, count: int) -> ClosedCandles:
    return ClosedCandles(version, [_candle(n) for n in range(first, first + count)], candle_start(_candle(first + count)), False)


def test_closed_candles_are_kept_while_their_version_matches_and_the_least_recently_used_series_go_first() -> None:
    cache = CandleCache(max_candles=10, max_series_candles=4)
    cache.keep(("A", "1m", "1h"), _entry(1, 0, 3))
    cache.keep(("B", "1m", "1h"), _entry(1, 0, 3))
    cache.keep(("C", "1m", "1h"), _entry(1, 0, 3))
    assert cache.candles == 9
    assert cache.closed(("A", "1m", "1h"), 1) is not None  # A used: B is now the least recently used
    cache.keep(("D", "1m", "1h"), _entry(1, 0, 3))
    assert cache.candles == 9
    assert cache.closed(("B", "1m", "1h"), 1) is None
    assert cache.closed(("A", "1m", "1h"), 1) is not None
    assert cache.closed(("A", "1m", "1h"), 2) is None  # the series changed: let go
    assert cache.closed(("A", "1m", "1h"), 1) is None
    assert cache.candles == 6
    cache.keep(("E", "1m", "1h"), _entry(1, 0, 9))  # one series beyond its bound keeps its newest candles
    kept = cache.closed(("E", "1m", "1h"), 1)
    assert kept is not None
    assert kept.candles == [_candle(n) for n in range(5, 9)]
    assert not kept.whole
    assert cache.candles <= 10


def test_answers_are_kept_while_their_version_matches_within_the_byte_bound() -> None:
    cache = CandleCache(max_answer_bytes=800)
    for key in ("a", "b", "c"):
        cache.keep_answer(key, 1, key.encode() * 100)
    cache.keep_answer("big", 1, b"x" * 101)  # more than an eighth of the bound: not kept
    assert cache.answer("big", 1) is None
    assert cache.answer("a", 1) == b"a" * 100
    assert cache.answer("a", 2) is None
    assert cache.answer("a", 1) is None
    for n in range(10):
        cache.keep_answer(n, 1, b"n" * 100)
    assert [n for n in range(10) if cache.answer(n, 1)] == [2, 3, 4, 5, 6, 7, 8, 9]


async def test_the_cache_answers_what_the_database_would() -> None:
    """Against a series in memory: every request answered from kept candles plus reads equals the plain read."""
    series = [_candle(n) for n in range(0, 200) if n % 7 != 3]  # with gaps
    reads: list[tuple[datetime | None, datetime | None, int]] = []

    async def fetch(lo: datetime | None, hi: datetime | None, limit: int) -> list[str]:
        reads.append((lo, hi, limit))
        lo_key = None if lo is None else lo.strftime("%Y-%m-%dT%H:%M:%S")
        hi_key = None if hi is None else hi.strftime("%Y-%m-%dT%H:%M:%S")
        inside = [
            c for c in series if (lo_key is None or candle_start(c) >= lo_key) and (hi_key is None or candle_start(c) < hi_key)
        ]
        return inside[:limit] if lo is not None else inside[-limit:]

    cache = CandleCache()
    key = ("S", "1m", "1h")
    requests: list[tuple[int | None, int | None, int]] = [
        (None, None, 20), (None, None, 50), (None, 150, 30), (None, 20, 100), (10, None, 5), (150, None, 500),
        (199, None, 3), (0, 5, 10), (None, None, 1000), (None, 2, 1), (180, 190, 3),
    ]  # fmt: skip
    for lo, hi, limit in requests:
        lo_time = None if lo is None else T0 + timedelta(hours=lo)
        hi_time = None if hi is None else T0 + timedelta(hours=hi)
        reads.clear()
        expected = await fetch(lo_time, hi_time, limit)
        reads.clear()
        assert await cached_candles(cache, key, 1, fetch, lo_time, hi_time, limit) == expected, (lo, hi, limit)
    assert cache.candles > 0
    series.append(_candle(200))  # an append: the kept candles stay, the new ones are read after them
    reads.clear()
    assert await cached_candles(cache, key, 1, fetch, None, None, 5) == series[-5:]
    assert reads == [(datetime.fromisoformat(candle_start(series[-2])).replace(tzinfo=UTC), None, 10_000)]
