"""The loop watch: a stall of the event loop is measured and logged with what the loop's thread was doing."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tradestack.kit.loopwatch import LoopWatch, Stall
from tradestack.kit.metrics import EVENT_LOOP_LAG


def _hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # a blocking call on the loop's thread, as a synchronous driver call would be


def _spin(until: threading.Event) -> None:
    while not until.is_set():
        sum(range(1000))


def _lag_count() -> float:
    for metric in EVENT_LOOP_LAG.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return sample.value
    return 0.0


async def test_a_stall_is_logged_once_with_the_loop_threads_stack_and_a_busy_thread() -> None:
    stalls: list[tuple[float, Stall]] = []
    watch = LoopWatch(tick=0.01, stall=0.05, on_stall=lambda lag, stall: stalls.append((lag, stall)))
    stop_spinning = threading.Event()
    spinner = threading.Thread(target=_spin, args=(stop_spinning,), name="busy-feed", daemon=True)
    parked = threading.Thread(target=stop_spinning.wait, name="parked", daemon=True)
    parked.start()
    beats_before = _lag_count()
    watch.start(asyncio.get_running_loop())
    try:
        await asyncio.sleep(0.1)
        assert stalls == []  # an idle loop beats on time
        spinner.start()
        _hold_the_loop(0.3)
        await asyncio.sleep(0.1)
    finally:
        stop_spinning.set()
        watch.stop()
        spinner.join()
        parked.join()
    assert len(stalls) == 1
    lag, stall = stalls[0]
    assert lag >= 0.25
    assert stall.waited >= 0.05
    assert any("_hold_the_loop" in frame for frame in stall.loop_stack), stall.loop_stack
    assert "busy-feed" in stall.other_stacks
    assert "loop-watch" not in stall.other_stacks
    assert "parked" not in stall.other_stacks  # asleep in a wait: it holds nothing the loop needs
    assert _lag_count() > beats_before + 5


async def test_short_lags_under_the_threshold_are_measured_but_not_logged() -> None:
    stalls: list[tuple[float, Stall]] = []
    watch = LoopWatch(tick=0.01, stall=0.5, on_stall=lambda lag, stall: stalls.append((lag, stall)))
    watch.start(asyncio.get_running_loop())
    try:
        for _ in range(3):
            _hold_the_loop(0.05)
            await asyncio.sleep(0.03)
    finally:
        watch.stop()
    assert stalls == []


def test_the_threshold_must_exceed_the_tick() -> None:
    with pytest.raises(ValueError, match="stall threshold"):
        LoopWatch(tick=0.1, stall=0.1)
