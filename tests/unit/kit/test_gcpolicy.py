"""The collector policy: survivors of a full pass are frozen, the frozen set is thawed once it has doubled."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from tradestack.kit.aio import stop_tasks
from tradestack.kit.gcpolicy import FreezeSurvivors, governed, report_pauses


class FakeCollector:
    """Counts objects as `young` (unfrozen) and `frozen`, like the permanent generation."""

    def __init__(self, frozen: int = 0, young: int = 0) -> None:
        self.callbacks: list[Callable[[str, dict[str, int]], None]] = []
        self.frozen = frozen
        self.young = young
        self.calls: list[str] = []
        self.threshold = (700, 10, 10)

    def get_threshold(self) -> tuple[int, int, int]:
        return self.threshold

    def set_threshold(self, threshold0: int, threshold1: int = 10, threshold2: int = 10, /) -> None:
        self.threshold = (threshold0, threshold1, threshold2)

    def freeze(self) -> None:
        self.calls.append("freeze")
        self.frozen += self.young
        self.young = 0

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")
        self.young += self.frozen
        self.frozen = 0

    def get_freeze_count(self) -> int:
        self.calls.append("count")
        return self.frozen

    def collect(self, generation: int, survivors: int = 0) -> None:
        """A pass of `generation`, after which `survivors` new objects are left unfrozen."""
        for callback in list(self.callbacks):
            callback("start", {"generation": generation})
        self.young += survivors
        for callback in list(self.callbacks):
            callback("stop", {"generation": generation, "collected": 0, "uncollectable": 0})


class Ticks:
    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_survivors_of_a_full_pass_are_frozen_and_young_passes_freeze_nothing() -> None:
    collector = FakeCollector(young=100_000)
    policy = FreezeSurvivors(collector, min_frozen=10)
    policy.install()
    assert collector.frozen == 100_000
    assert collector.callbacks
    collector.collect(0, survivors=500)
    collector.collect(1, survivors=500)
    assert collector.young == 1_000
    assert collector.calls == ["freeze", "count"]
    collector.collect(2, survivors=2_000)
    assert collector.young == 0
    assert collector.frozen == 103_000
    policy.uninstall()


def test_the_frozen_set_is_thawed_for_one_full_pass_once_it_has_doubled() -> None:
    collector = FakeCollector(young=100_000)
    policy = FreezeSurvivors(collector, thaw_growth=2.0, min_frozen=10, count_every=0)
    policy.install()
    collector.collect(2, survivors=60_000)  # frozen 160,000: not yet twice the 100,000 of the last thaw
    assert collector.calls == ["freeze", "count", "count", "freeze"]
    assert policy.thaws == 0
    collector.collect(2, survivors=50_000)  # the pass starts with 160,000 frozen: below 200,000 still
    collector.collect(2, survivors=1_000)  # 210,000 frozen: thaw
    assert collector.calls[-2:] == ["count", "unfreeze"]
    assert collector.frozen == 0
    assert policy.thaws == 1
    collector.collect(0, survivors=10)
    assert collector.calls[-1] == "unfreeze"  # a young pass does not end the thaw
    collector.collect(2)  # this pass visited everything; what is left is frozen, the new baseline
    assert collector.calls[-2:] == ["freeze", "count"]
    assert collector.frozen == policy.frozen == 211_010
    collector.collect(2, survivors=200_000)  # 211,010 frozen: below twice the new baseline
    assert collector.calls[-1] == "freeze"
    assert policy.thaws == 1
    policy.uninstall()


def test_the_frozen_set_is_counted_at_most_once_per_count_every() -> None:
    """Counting walks the whole frozen set inside the pass: full passes closer together than `count_every` only freeze."""
    collector = FakeCollector(young=100_000)
    clock = Ticks(1.0)  # start and stop of each pass: a full pass every 2 s
    policy = FreezeSurvivors(collector, thaw_growth=2.0, min_frozen=10, clock=clock, count_every=10.0)
    policy.install()  # counted at 1 s
    assert collector.calls == ["freeze", "count"]
    for _ in range(4):  # stops at 3, 5, 7, 9 s: under 10 s since the count
        collector.collect(2, survivors=50_000)
    assert collector.calls.count("count") == 1
    assert collector.frozen == 300_000  # tripled, and not yet seen
    assert policy.thaws == 0
    collector.collect(2, survivors=1)  # stop at 11 s: counted, 300,000 >= 2 x 100,000: thaw
    assert collector.calls[-2:] == ["count", "unfreeze"]
    assert policy.thaws == 1
    assert policy.frozen == 300_000
    # the pass that counted paused everything for the count too (one more tick of the clock)
    assert policy.drain() == [(2, 1.0)] * 4 + [(2, 2.0)]


def test_count_every_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="count_every"):
        FreezeSurvivors(FakeCollector(), count_every=-1.0)


def test_pauses_are_recorded_per_generation_and_drained_once() -> None:
    collector = FakeCollector()
    policy = FreezeSurvivors(collector, clock=Ticks(0.25))
    policy.install()
    collector.collect(0)
    collector.collect(2)
    assert policy.drain() == [(0, 0.25), (2, 0.25)]
    assert policy.drain() == []
    policy.uninstall()


def test_without_freezing_survivors_pauses_are_still_recorded() -> None:
    collector = FakeCollector(young=10)
    policy = FreezeSurvivors(collector, clock=Ticks(0.5))
    policy.install(freeze_survivors=False)
    collector.collect(2, survivors=1_000)
    assert collector.young == 1_000
    assert collector.calls == ["freeze", "count"]
    assert policy.drain() == [(2, 0.5)]
    policy.uninstall()


def test_installs_nest_and_the_last_uninstall_unfreezes() -> None:
    collector = FakeCollector(young=5)
    policy = FreezeSurvivors(collector)
    policy.install()
    policy.install()
    assert len(collector.callbacks) == 1
    assert collector.calls == ["freeze", "count"]
    policy.uninstall()
    assert policy.installed
    assert collector.callbacks
    policy.uninstall()
    assert not policy.installed
    assert not collector.callbacks
    assert collector.frozen == 0
    policy.uninstall()  # one too many: nothing happens
    assert collector.calls == ["freeze", "count", "unfreeze"]


def test_thaw_growth_must_be_above_one() -> None:
    with pytest.raises(ValueError, match="thaw_growth"):
        FreezeSurvivors(FakeCollector(), thaw_growth=1.0)


class Node:
    def __init__(self) -> None:
        self.me: Node | None = self


def test_with_the_real_collector_a_frozen_cycle_waits_for_the_thaw_and_is_then_freed() -> None:
    gc.collect()
    policy = FreezeSurvivors(thaw_growth=1.5, min_frozen=1, count_every=0)
    policy.install()
    try:
        frozen_at_start = gc.get_freeze_count()
        cycle = Node()
        gone = weakref.ref(cycle)
        gc.collect()  # the cycle survives a full pass: frozen
        assert gc.get_freeze_count() > frozen_at_start
        del cycle
        gc.collect()
        assert gone() is not None  # garbage now, but frozen: a full pass does not visit it
        keep = [[index] for index in range(frozen_at_start)]  # grow the frozen set past 1.5 times
        gc.collect()  # frozen: keep's lists
        gc.collect()  # the frozen set has grown enough: thawed
        assert policy.thaws == 1
        gc.collect()  # visits everything: the cycle is freed
        assert gone() is None
        assert gc.get_freeze_count() >= len(keep)  # what lives is frozen again
    finally:
        policy.uninstall()
    assert gc.get_freeze_count() == 0


def pause_count(generation: str) -> float:
    return REGISTRY.get_sample_value("python_gc_pause_seconds_count", {"generation": generation}) or 0.0


async def test_the_reporter_publishes_the_pauses_by_generation() -> None:
    collector = FakeCollector()
    policy = FreezeSurvivors(collector, clock=Ticks(0.002))
    policy.install()
    before = pause_count("0"), pause_count("2")
    try:
        collector.collect(2)
        collector.collect(0)
        collector.collect(0)
        task = asyncio.create_task(report_pauses(policy, every=0.01))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not policy.pauses:
                break
        await stop_tasks([task], "reporter")
    finally:
        policy.uninstall()
    assert policy.drain() == []
    assert (pause_count("0") - before[0], pause_count("2") - before[1]) == (2.0, 1.0)


async def test_governed_installs_the_policy_and_its_reporter_for_the_block_only() -> None:
    collector = FakeCollector(young=1_000)
    policy = FreezeSurvivors(collector, min_frozen=10)
    inside: list[tuple[bool, int, list[asyncio.Task[None]]]] = []

    async def work() -> None:
        async with governed(policy=policy):
            reporters = [task for task in asyncio.all_tasks() if task.get_name() == "gc-pauses"]
            inside.append((policy.installed, collector.frozen, reporters))
            raise RuntimeError("work failed")

    with pytest.raises(RuntimeError, match="work failed"):
        await work()
    installed, frozen, reporters = inside[0]
    assert (installed, frozen, len(reporters)) == (True, 1_000, 1)  # what the process had loaded is frozen at once
    assert not policy.installed
    assert collector.frozen == 0  # the last uninstall unfroze everything
    assert reporters[0].done()


def test_serve_processes_run_their_work_with_the_collector_governed(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradestack import cli
    from tradestack.kit import gcpolicy
    from tradestack.kit.config import Settings

    monkeypatch.setattr(cli, "_run_runtime", lambda settings, work: asyncio.run(work(None)))
    seen: list[bool] = []

    async def work(runtime: object) -> str:
        seen.append(gcpolicy.POLICY.installed)
        return "done"

    assert not gcpolicy.POLICY.installed
    assert cli._serve_runtime(Settings(), work) == "done"
    assert seen == [True]
    assert not gcpolicy.POLICY.installed


def test_young_passes_wait_for_more_allocations_while_installed_and_the_thresholds_come_back_after() -> None:
    collector = FakeCollector(young=100_000)
    collector.threshold = (700, 10, 12)
    policy = FreezeSurvivors(collector, min_frozen=10, young_threshold=2_000)
    policy.install()
    policy.install()  # nested: changes nothing
    assert collector.threshold == (2_000, 10, 12)
    policy.uninstall()
    assert collector.threshold == (2_000, 10, 12)
    policy.uninstall()
    assert collector.threshold == (700, 10, 12)


def test_young_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="young_threshold"):
        FreezeSurvivors(FakeCollector(), young_threshold=0)
