"""The cyclic garbage collector's full passes kept proportional to what is new, not to the whole heap.

A full pass of CPython's collector visits every tracked object of its oldest generation, during
which nothing else in the process runs. With a thousand WebSocket clients on one worker (each
holds ~220 tracked objects: the coroutines of the ASGI stack, its tasks, futures, headers) one
pass took 60-210 ms on our 2-core machine: every client's quote waited behind it.

Start-up already freezes what it loaded (`gc.freeze`: the permanent generation, never visited).
`FreezeSurvivors` also freezes what survives each full pass: an object that lived through one is
long-lived, so the next pass visits only what became long-lived since (and CPython triggers it
after a quarter more of them: small passes, more often). Frozen objects are still freed by
reference counting; only garbage held in reference cycles among them waits. So once the frozen
set has grown to `thaw_growth` times its size after the last thaw, it is unfrozen and the next full
pass visits everything once, frees those cycles, and the survivors are frozen again: one long
pass, rarely (never while the set of connections stays stable). Counting the frozen set walks it (CPython keeps
no count: ~100 ns an object, 20-40 ms for an API worker's ~180,000, measured), inside the pass that asks, so
the growth is checked at most every `count_every` seconds (a minute), not after each full pass (every few
seconds under load): the frozen set cannot double in a minute of steady work, and a thaw a minute late costs
nothing but that minute's cycles.

It also lets more objects be allocated between two young passes (`young_threshold`, CPython's default 700):
every object that survives a young pass is visited again by a middle pass after ten of them, so an
allocation-heavy path (an order builds ~30 frozen values, ~10 of them kept: its events, journal
entry and postings) spends a tenth of its CPU in young and middle passes. At 2,000 there are about
a third as many of each, a young pass still visits a few thousand objects (well under a
millisecond), and the in-process order path (benchmarks/order_path_inprocess.py) measured 11-13 % more
orders per CPU second than at 700 in the same run (5,000 and 10,000: 6-9 %).

Every collection's pause is recorded (a bounded deque: the callback runs in whatever thread
allocated, so it takes no lock) and `report_pauses` publishes them as `python_gc_pause_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from tradestack.kit.aio import stop_tasks
from tradestack.kit.logging import get_logger
from tradestack.kit.metrics import GC_PAUSE

log = get_logger(__name__)

OLDEST = 2  # CPython's generations are 0, 1 and 2
YOUNG_THRESHOLD = 2_000
"""Allocations (less deallocations) of tracked objects between two young passes while the policy is installed."""
COUNT_EVERY_SECONDS = 60.0
"""Fewest seconds between two counts of the frozen set (for the thaw), by the policy's clock."""


class Collector(Protocol):
    """The parts of the `gc` module the policy uses (a fake in tests)."""

    callbacks: list[Callable[[str, dict[str, int]], None]]

    def freeze(self) -> None: ...

    def unfreeze(self) -> None: ...

    def get_freeze_count(self) -> int: ...

    def get_threshold(self) -> tuple[int, int, int]: ...

    def set_threshold(self, threshold0: int, threshold1: int = ..., threshold2: int = ..., /) -> None: ...


class FreezeSurvivors:
    """Installed once per process (`install`/`uninstall` nest); see the module's docstring."""

    def __init__(
        self,
        collector: Collector | None = None,
        *,
        thaw_growth: float = 2.0,
        min_frozen: int = 50_000,
        clock: Callable[[], float] = time.perf_counter,
        keep: int = 10_000,
        young_threshold: int = YOUNG_THRESHOLD,
        count_every: float = COUNT_EVERY_SECONDS,
    ) -> None:
        if thaw_growth <= 1:
            raise ValueError("thaw_growth must be above 1")
        if young_threshold < 1:
            raise ValueError("young_threshold must be at least 1")
        if count_every < 0:
            raise ValueError("count_every must not be negative")
        self._count_every = count_every
        self._counted_at = 0.0  # the clock's reading when the frozen set was last counted
        self._young_threshold = young_threshold
        self._thresholds: tuple[int, int, int] | None = None  # what install found, restored by the last uninstall
        self._gc: Collector = collector if collector is not None else gc  # type: ignore[assignment]
        self._thaw_growth = thaw_growth
        self._min_frozen = min_frozen
        self._clock = clock
        self._started = 0.0
        self._installs = 0
        self._baseline = min_frozen
        self._thawing = False
        self._freeze_survivors = True
        self.thaws = 0
        self.frozen = 0  # the frozen set's size when last counted
        self.pauses: deque[tuple[int, float]] = deque(maxlen=keep)  # (generation, seconds), oldest dropped

    @property
    def installed(self) -> bool:
        return self._installs > 0

    def install(self, *, freeze_survivors: bool = True) -> None:
        """Freeze what is there now, record every collection's pause and (unless told not to) freeze the
        survivors of every full pass from now on. A nested install changes nothing."""
        self._installs += 1
        if self._installs > 1:
            return
        self._freeze_survivors = freeze_survivors
        self._thresholds = self._gc.get_threshold()
        self._gc.set_threshold(self._young_threshold, *self._thresholds[1:])
        self._gc.freeze()
        self._baseline = max(self._count(self._clock()), self._min_frozen)
        self._thawing = False
        self._gc.callbacks.append(self._on_collection)

    def uninstall(self) -> None:
        """Undo one `install`; the last one stops the policy and unfreezes everything (the process is ending,
        or it is a test process that goes on: its garbage must stay collectable)."""
        if self._installs == 0:
            return
        self._installs -= 1
        if self._installs == 0:
            if self._on_collection in self._gc.callbacks:
                self._gc.callbacks.remove(self._on_collection)
            self._gc.unfreeze()
            self._thawing = False
            if self._thresholds is not None:
                self._gc.set_threshold(*self._thresholds)
                self._thresholds = None

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        # Runs inside the collector, in the thread whose allocation triggered it: plain attribute and deque work only.
        if phase == "start":
            self._started = self._clock()
            return
        generation = info.get("generation", 0)
        now = self._clock()
        if generation == OLDEST and self._freeze_survivors and self._after_full_pass(now):
            now = self._clock()  # the count is part of the pause everything else waited through
        self.pauses.append((generation, now - self._started))

    def _after_full_pass(self, now: float) -> bool:
        """Freeze the survivors, or thaw; whether the frozen set was counted on the way."""
        if self._thawing:  # this pass visited everything: free cycles are gone, freeze the rest afresh
            self._thawing = False
            self._gc.freeze()
            self._baseline = max(self._count(now), self._min_frozen)
            return True
        if now - self._counted_at < self._count_every:
            self._gc.freeze()
            return False
        if self._count(now) >= self._thaw_growth * self._baseline:
            self._gc.unfreeze()  # the next full pass visits everything once
            self._thawing = True
            self.thaws += 1
        else:
            self._gc.freeze()
        return True

    def _count(self, now: float) -> int:
        """The frozen set's size (a walk of all of it: see the module's docstring), remembered with when it was taken."""
        self.frozen = self._gc.get_freeze_count()
        self._counted_at = now
        return self.frozen

    def drain(self) -> list[tuple[int, float]]:
        """The pauses recorded since the last call, oldest first."""
        taken: list[tuple[int, float]] = []
        pauses = self.pauses
        while pauses:
            try:
                taken.append(pauses.popleft())
            except IndexError:  # pragma: no cover - a collection in another thread emptied it first
                break
        return taken


POLICY = FreezeSurvivors()
REPORT_SECONDS = 5.0
SLOW_PAUSE_SECONDS = 0.1


async def report_pauses(policy: FreezeSurvivors, every: float = REPORT_SECONDS) -> None:
    """Every `every` seconds: the pauses `policy` recorded into `python_gc_pause_seconds`, a warning for a long one."""
    while True:
        await asyncio.sleep(every)
        longest = 0.0
        for generation, seconds in policy.drain():
            GC_PAUSE.labels(generation=str(generation)).observe(seconds)
            longest = max(longest, seconds)
        if longest >= SLOW_PAUSE_SECONDS:
            log.warning("gc_pause", longest_ms=round(longest * 1000, 1), frozen=policy.frozen, thaws=policy.thaws)


@contextlib.asynccontextmanager
async def governed(*, freeze_survivors: bool = True, policy: FreezeSurvivors | None = None) -> AsyncIterator[None]:
    """The process's collector under `policy` (default `POLICY`) while the block runs, its pauses reported.

    For every long-running process once its start-up has loaded what it keeps: the API's lifespan and
    the `serve` commands (the engine shard keeps every account's books and open orders, the market-data
    process its feeds): without it each full pass of the collector walks all of that.
    """
    chosen = POLICY if policy is None else policy
    chosen.install(freeze_survivors=freeze_survivors)
    reporter = asyncio.create_task(report_pauses(chosen), name="gc-pauses")
    try:
        yield
    finally:
        await stop_tasks([reporter], "gc pause reporter")
        chosen.uninstall()
