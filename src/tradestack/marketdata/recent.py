"""Candles built before, kept in process while the database says their series has not changed.

Every write to a series' bars, by any process, changes the series' version in the same transaction
(`BarRepository`, table ``bar_versions``); a request reads it with the stored resolutions (one
query, `BarRepository.stored`) before any bar. Two things are kept, bounded, least recently used
first out:

- **Closed candles** per (symbol, stored resolution, timeframe): the candles that start before
  the candle holding the newest stored bar, as JSON text, tagged with the series' closed version.
  A candle still forming is never kept. An append after the newest bar (a live candle) leaves the
  closed version as it is (it cannot change a closed candle), so the kept candles stay and only
  the open part after them is read from the database; any other write (an import of older
  history, a replacement, retention's deletions) changes it and the candles are built again.
  At most `MAX_CACHED_CANDLES` candles in all and `MAX_SERIES_CANDLES` for one entry.
- **Answers**: the body of a request, reused while the series' version is the one it was built
  at, at most `MAX_ANSWER_BYTES` in all.

So an answer is never older than the last committed write its request could see: no time bound.
The version is read before the bars (on PostgreSQL, READ COMMITTED, a write may commit between the
two reads): what is kept is then tagged with a version older than the bars it holds, which only
makes the next request build it again, never serve it stale.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from tradestack.kit.runtime import Slot

MAX_CACHED_CANDLES = 200_000
"""Closed candles kept in all (each about 100-130 bytes of JSON text plus a str's 49: about 35 MB at most)."""
MAX_SERIES_CANDLES = 20_000
"""Closed candles kept for one (symbol, resolution, timeframe): its oldest beyond are let go."""
MAX_ANSWER_BYTES = 32 * 1024 * 1024
"""Bytes of answers kept in all; an answer bigger than an eighth of it is not kept."""
TAIL_MAX = 10_000
"""Candles after the kept ones read for one request; a longer open part is answered without the cache."""

ClosedKey = tuple[str, str, str]
"""(symbol, stored resolution, timeframe)."""

Fetch = Callable[[datetime | None, datetime | None, int], Awaitable[list[str]]]
"""Candles (JSON text each) from the database: `fetch(lo, None or hi, n)` the first n starting in [lo, hi);
`fetch(None, hi, n)` the last n starting before hi (or the latest); whole candles, oldest first."""


def candle_start(candle: str) -> str:
    """The start of a candle's JSON text (``{"ts":"2024-03-01T14:30:00...``) to the second: sorts as the times do."""
    return candle[7:26]


def _key(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _time(key: str) -> datetime:
    return datetime.fromisoformat(key).replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ClosedCandles:
    """Every candle of a series and timeframe that starts in [`start`, `boundary`), oldest first; never changed in place.

    `boundary` is the start of the candle that held the newest stored bar when they were read;
    `whole`: the series has no candle before them.
    """

    closed_version: int
    candles: list[str]
    boundary: str
    whole: bool

    @property
    def start(self) -> str:
        return candle_start(self.candles[0]) if self.candles else self.boundary


class CandleCache:
    """Closed candles by (symbol, resolution, timeframe) and answers by request, each with the version it was built at."""

    def __init__(
        self,
        max_candles: int = MAX_CACHED_CANDLES,
        max_series_candles: int = MAX_SERIES_CANDLES,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.max_candles = max_candles
        self.max_series_candles = min(max_series_candles, max_candles)
        self.max_answer_bytes = max_answer_bytes
        self._closed: OrderedDict[ClosedKey, ClosedCandles] = OrderedDict()
        self._candles = 0
        self._answers: OrderedDict[Hashable, tuple[Hashable, bytes]] = OrderedDict()
        self._answer_bytes = 0

    @property
    def candles(self) -> int:
        """Closed candles kept now."""
        return self._candles

    def closed(self, key: ClosedKey, closed_version: int) -> ClosedCandles | None:
        """The closed candles kept for `key` if built at `closed_version` (others are let go)."""
        entry = self._closed.get(key)
        if entry is None:
            return None
        if entry.closed_version != closed_version:
            self._candles -= len(self._closed.pop(key).candles)
            return None
        self._closed.move_to_end(key)
        return entry

    def keep(self, key: ClosedKey, entry: ClosedCandles) -> None:
        """Keep `entry` for `key` (replacing what was), then let the least recently used go while over the bound."""
        if len(entry.candles) > self.max_series_candles:
            entry = replace(entry, candles=entry.candles[-self.max_series_candles :], whole=False)
        old = self._closed.pop(key, None)
        if old is not None:
            self._candles -= len(old.candles)
        self._closed[key] = entry
        self._candles += len(entry.candles)
        while self._candles > self.max_candles:
            _, dropped = self._closed.popitem(last=False)
            self._candles -= len(dropped.candles)

    def answer(self, key: Hashable, version: Hashable) -> bytes | None:
        """The body kept for `key` if built at `version`."""
        entry = self._answers.get(key)
        if entry is None:
            return None
        if entry[0] != version:
            self._answer_bytes -= len(self._answers.pop(key)[1])
            return None
        self._answers.move_to_end(key)
        return entry[1]

    def keep_answer(self, key: Hashable, version: Hashable, body: bytes) -> None:
        if len(body) > self.max_answer_bytes // 8:
            return
        old = self._answers.pop(key, None)
        if old is not None:
            self._answer_bytes -= len(old[1])
        self._answers[key] = (version, body)
        self._answer_bytes += len(body)
        while self._answer_bytes > self.max_answer_bytes:
            self._answer_bytes -= len(self._answers.popitem(last=False)[1][1])


CANDLE_CACHE: Slot[CandleCache] = Slot("candle-cache")


async def cached_candles(
    cache: CandleCache,
    key: ClosedKey,
    closed_version: int,
    fetch: Fetch,
    lo: datetime | None,
    hi: datetime | None,
    limit: int,
) -> list[str]:
    """What `fetch(lo, hi, limit)` gives, the closed candles taken from `cache` (kept there) and the rest read.

    `lo` and `hi` are candle boundaries (or None), as `MarketDataService.candles_json` makes them.
    """
    entry = cache.closed(key, closed_version)
    if lo is not None:
        return await _first(entry, fetch, lo, hi, limit)
    if entry is None:
        found = await fetch(None, hi, limit)
        if hi is None and found:  # the last candle holds the newest bar: the ones before it are closed
            cache.keep(key, ClosedCandles(closed_version, found[:-1], candle_start(found[-1]), whole=len(found) < limit))
        return found
    return await _last(cache, key, entry, fetch, hi, limit)


async def _first(entry: ClosedCandles | None, fetch: Fetch, lo: datetime, hi: datetime | None, limit: int) -> list[str]:
    """The first `limit` candles from `lo` (before `hi`)."""
    lo_key = _key(lo)
    if entry is None or lo_key >= entry.boundary or (lo_key < entry.start and not entry.whole):
        return await fetch(lo, hi, limit)
    first = bisect_left(entry.candles, lo_key, key=candle_start)
    stop = len(entry.candles) if hi is None else bisect_left(entry.candles, _key(hi), key=candle_start)
    found = entry.candles[first : min(stop, first + limit)]
    if len(found) == limit or (hi is not None and _key(hi) <= entry.boundary):
        return found
    return found + await fetch(_time(entry.boundary), hi, limit - len(found))


async def _last(
    cache: CandleCache, key: ClosedKey, entry: ClosedCandles, fetch: Fetch, hi: datetime | None, limit: int
) -> list[str]:
    """The last `limit` candles before `hi` (or the latest)."""
    hi_key = None if hi is None else _key(hi)
    tail: list[str] = []
    if hi_key is None or hi_key > entry.boundary:
        tail = await fetch(_time(entry.boundary), hi, TAIL_MAX)
        if len(tail) == TAIL_MAX:
            return await fetch(None, hi, limit)
        if hi is None and len(tail) > 1:  # candles closed since: kept with the others
            entry = replace(entry, candles=entry.candles + tail[:-1], boundary=candle_start(tail[-1]))
            tail = tail[-1:]
            cache.keep(key, entry)
        if len(tail) >= limit:
            return tail[len(tail) - limit :]
        end = len(entry.candles)
    elif hi_key <= entry.start and not entry.whole:
        return await fetch(None, hi, limit)  # before the kept candles
    else:
        end = bisect_left(entry.candles, hi_key, key=candle_start)
    need = limit - len(tail)
    if end < need and not entry.whole:  # the kept candles reach back too little: the ones before them are read
        more = await fetch(None, _time(entry.start), need - end)
        entry = replace(entry, candles=more + entry.candles, whole=len(more) < need - end)
        end += len(more)
        cache.keep(key, entry)
    return entry.candles[max(0, end - need) : end] + tail
