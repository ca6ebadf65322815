"""`RecentValues`: a per-process memory of values, each reused until its deadline, bounded in size.

For answers that are worth reusing for a moment and cheap to lose (what a token resolved to, a
candle answer): a value is served until ``reuse_seconds`` after it was put, never later; beyond
``max_entries`` the value put longest ago is dropped first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["RecentValues"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RecentValues(Generic[K, V]):
    """Values by key, each until its deadline (``reuse_seconds`` after `put`); at most ``max_entries``.

    ``on_drop(key, value)`` is called for every entry that leaves, however it leaves (expired on
    `get`, replaced or evicted by `put`, `forget`): for an owner that keeps an index of the keys.
    """

    def __init__(
        self,
        reuse_seconds: float,
        max_entries: int,
        monotonic: Callable[[], float] = time.monotonic,
        on_drop: Callable[[K, V], None] | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._reuse_seconds = reuse_seconds
        self._max_entries = max_entries
        self._monotonic = monotonic
        self._on_drop = on_drop
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()  # key -> (value, deadline), oldest put first

    def get(self, key: K) -> V | None:
        """The value put under ``key`` if its deadline has not passed, else None (and it is forgotten)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._monotonic() >= entry[1]:
            self.forget(key)
            return None
        return entry[0]

    def put(self, key: K, value: V) -> None:
        """Remember ``value`` under ``key`` for ``reuse_seconds`` from now, in place of what was there."""
        self.forget(key)
        self._entries[key] = (value, self._monotonic() + self._reuse_seconds)
        if len(self._entries) > self._max_entries:
            self.forget(next(iter(self._entries)))

    def forget(self, key: K) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and self._on_drop is not None:
            self._on_drop(key, entry[0])

    def __len__(self) -> int:
        return len(self._entries)
