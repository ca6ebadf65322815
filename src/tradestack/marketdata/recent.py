"""Candle answers built a moment ago, served again for `CANDLES_REUSE_SECONDS`.

Many users watching the same chart ask for the same candles (symbol, timeframe, range, limit) every few seconds; the
answer changes only when bars are stored. A body is reused for at most `CANDLES_REUSE_SECONDS` (well inside the
5 s data-freshness goal) and never after this process stored bars (`bars_stored`, called by
`BarRepository.write`); bars stored by another process (``tradestack data import``) are seen within that bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from tradestack.kit.recent import RecentValues
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
    """Response bodies by request key, each reused until its deadline and while no bars were stored (bounded)."""

    def __init__(
        self,
        reuse_seconds: float = CANDLES_REUSE_SECONDS,
        max_entries: int = MAX_ANSWERS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: RecentValues[Hashable, tuple[bytes, int]] = RecentValues(reuse_seconds, max_entries, monotonic)

    @staticmethod
    def generation() -> int:
        """Take it before reading the bars; give it to `put` with the body built from them."""
        return _Generation.value

    def get(self, key: Hashable) -> bytes | None:
        entry = self._entries.get(key)  # (body, generation)
        if entry is None:
            return None
        if entry[1] != _Generation.value:
            self._entries.forget(key)
            return None
        return entry[0]

    def put(self, key: Hashable, body: bytes, generation: int) -> None:
        if generation != _Generation.value:
            return  # bars were stored while it was built: it may already be stale
        self._entries.put(key, (body, generation))


CANDLE_ANSWERS: Slot[RecentAnswers] = Slot("candle-answers")
