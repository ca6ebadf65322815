"""How late the event loop runs its callbacks, and what it was doing when it ran late.

A callback scheduled every `tick` seconds on the loop measures its own lateness: the time between
when it was due and when it ran is how long everything else on the loop waited too (a WebSocket
quote, a request). Each lateness goes to ``event_loop_lag_seconds``.

A lag says that the loop stalled, not why. A daemon thread (``loop-watch``) therefore wakes every
`tick` seconds and, when the loop's last beat is older than `stall` seconds, takes the stack of the
loop's thread at that moment (`sys._current_frames`: a snapshot, no tracing, nothing paid when the
loop is on time) and of every other thread the kernel has running rather than asleep (one of them may
hold the interpreter lock the loop waits for: a feed, or a collector pass triggered there). When the loop
beats again, the stall is logged once as ``loop_stall`` with its length and those stacks, so the
cause of a slow quote can be read from the log instead of guessed.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from tradestack.kit.logging import get_logger
from tradestack.kit.metrics import EVENT_LOOP_LAG

log = get_logger(__name__)

FRAMES = 8  # innermost frames kept of each stack


@dataclass(frozen=True, slots=True)
class Stall:
    """One stall seen by the watch: how long the loop had not beaten when sampled, and the stacks then."""

    waited: float
    loop_stack: list[str]
    other_stacks: dict[str, list[str]]


def _innermost(frame: object) -> list[str]:
    summary = traceback.extract_stack(frame)[-FRAMES:]  # type: ignore[arg-type]
    return [f"{item.filename.rsplit('/', 1)[-1]}:{item.lineno} {item.name}" for item in summary]


class LoopWatch:
    """Measures the lag of the loop it is started on and samples the stacks of its stalls (see the module)."""

    def __init__(
        self,
        *,
        tick: float = 0.02,
        stall: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        on_stall: Callable[[float, Stall], None] | None = None,
    ) -> None:
        if tick <= 0 or stall <= tick:
            raise ValueError("the stall threshold must be above the tick, and the tick above 0")
        self._tick = tick
        self._stall = stall
        self._clock = clock
        self._on_stall = on_stall if on_stall is not None else _log_stall
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._loop_thread = 0
        self._beat = 0.0
        self._due = 0.0
        self._sample: Stall | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Beat on `loop` (call from its thread) and watch it from a daemon thread."""
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._beat = self._due = self._clock()
        self._stop.clear()
        self._schedule()
        self._thread = threading.Thread(target=self._watch, name="loop-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    def _schedule(self) -> None:
        if self._loop is None or self._stop.is_set():
            return
        self._due = self._clock() + self._tick
        self._handle = self._loop.call_later(self._tick, self._on_beat)

    def _on_beat(self) -> None:
        now = self._clock()
        lag = max(0.0, now - self._due)
        self._beat = now
        EVENT_LOOP_LAG.observe(lag)
        sample, self._sample = self._sample, None
        if sample is not None and lag >= self._stall:
            self._on_stall(lag, sample)
        self._schedule()

    def _watch(self) -> None:
        while not self._stop.wait(self._tick):
            waited = self._clock() - self._beat
            if waited < self._stall + self._tick or self._sample is not None:
                continue
            self._sample = self.sample(waited)

    def sample(self, waited: float) -> Stall:
        """The stacks now: the loop's thread, and each other thread that the kernel has running (not asleep)."""
        frames = sys._current_frames()
        me = threading.get_ident()
        loop_frame = frames.get(self._loop_thread)
        others: dict[str, list[str]] = {}
        for thread in threading.enumerate():
            ident = thread.ident
            if ident is None or ident in (self._loop_thread, me) or ident not in frames:
                continue
            if _state(thread.native_id) in _ASLEEP:
                continue
            others[thread.name] = _innermost(frames[ident])
        return Stall(waited, _innermost(loop_frame) if loop_frame is not None else [], others)


_ASLEEP = frozenset("SIt")  # sleeping (a wait, a select, a blocked read), idle, stopped by a tracer


def _state(native_id: int | None) -> str:
    """The kernel's state letter of a thread of this process (R running, D in I/O, S asleep…); "?" when unknown.

    A stack cannot tell a thread parked in a C-level wait (a queue's get, a selector) from one computing inside a C
    call; the kernel can."""
    if native_id is None:
        return "?"
    try:
        with open(f"/proc/self/task/{native_id}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return "?"


def _log_stall(lag: float, stall: Stall) -> None:
    log.warning(
        "loop_stall",
        lag_ms=round(lag * 1000, 1),
        loop_stack=stall.loop_stack,
        other_threads=stall.other_stacks,
    )
