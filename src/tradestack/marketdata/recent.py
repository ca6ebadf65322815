"""Candle answers built a moment ago, served again for `CANDLES_REUSE_SECONDS`.

Many users watching the same chart ask for the same candles (symbol, timeframe, range, limit) every few seconds; the
answer changes only when bars are stored. A body is reused for at most `CANDLES_REUSE_SECONDS` (well inside the
5 s data-freshness goal) and never after this process stored bars (`bars_stored`, called by
`BarRepository.write`); bars stored by another process (``tradestack data import``) are seen within that bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from tradestack.kit.runtime import Slot

CANDLES_REUSE_SECONDS = 1.0
MAX_ANSWERS = 256


class _Generation:
    """Bumped whenever this process stores bars: an answer built before is not reused."""

    value = 0


def bars_stored() -> None:
    """Bars were (or are about to be) stored in this process: forget every answer built so far."""
    _Generation.value += 1


class RecentAnswers:
    """Response bodies by request key, each reused until its deadline (LRU, bounded)."""

    def __init__(
        self,
        reuse_seconds: float = CANDLES_REUSE_SECONDS,
        max_entries: int = MAX_ANSWERS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reuse_seconds = reuse_seconds
        self._max_entries = max_entries
        self._monotonic = monotonic
        self._entries: OrderedDict[Hashable, tuple[bytes, float, int]] = OrderedDict()  # key -> (body, deadline, generation)

    @staticmethod
    def generation() -> int:
        """Take it before reading the bars; give it to `put` with the body built from them."""
        return _Generation.value

    def get(self, key: Hashable) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        body, deadline, generation = entry
        if generation != _Generation.value or self._monotonic() >= deadline:
            del self._entries[key]
            return None
        return body

    def put(self, key: Hashable, body: bytes, generation: int) -> None:
        if generation != _Generation.value:
            return  # bars were stored while it was built: it may already be stale
        self._entries.pop(key, None)
        self._entries[key] = (body, self._monotonic() + self._reuse_seconds, generation)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


CANDLE_ANSWERS: Slot[RecentAnswers] = Slot("candle-answers")
