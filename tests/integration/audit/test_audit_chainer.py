"""The leased audit chainer on SQLite and PostgreSQL: one leader chains in batches; a leader that dies, stalls or
loses its lease is replaced; racing chainers chain every outbox row exactly once and the chain verifies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tradestack.audit.repository import AuditRepository
from tradestack.audit.service import AuditChainer, AuditService, LeaseLostError
from tradestack.core.clock import LiveClock, SimClock
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database
from tradestack.models import AuditOutbox

from ...conftest import metric_sample  # type: ignore[import-not-found]
from .test_audit_chain import START  # type: ignore[import-not-found]

HERE = Path(__file__).parent


async def _stage(audit: AuditService, targets: range) -> None:
    async with audit.database.session() as session:
        await audit.stage_many(session, [{"action": "order.submit", "outcome": "success", "target": f"t:{n}"} for n in targets])


async def _chained_targets(database: Database) -> Counter[int]:
    async with database.session() as session:
        rows = [entry async for entry, _ in AuditRepository(session).iterate_in_order()]
    return Counter(int(row.target.split(":")[1]) for row in rows if row.target)


async def _staged(database: Database) -> int:
    async with database.session() as session:
        return (await session.execute(select(func.count()).select_from(AuditOutbox))).scalar_one()


async def _assert_each_chained_once(audit: AuditService, count: int) -> None:
    assert await _staged(audit.database) == 0
    chained = await _chained_targets(audit.database)
    assert sorted(chained) == list(range(count))
    assert set(chained.values()) == {1}, [n for n, times in chained.items() if times > 1]
    report = await audit.verify()
    assert report.ok, report.problem
    assert report.checked == count


async def test_only_the_lease_holder_chains_and_it_chains_in_batches(database: Database) -> None:
    clock = SimClock(START)
    first = AuditChainer(AuditService(database, clock), batch_size=7, holder="first")
    second = AuditChainer(AuditService(database, clock), batch_size=7, holder="second")
    await _stage(first.service, range(30))
    batches = 0
    real_claim = AuditRepository.claim

    async def counting_claim(self: AuditRepository, limit: int) -> list[tuple[int, str]]:
        nonlocal batches
        batches += 1
        return await real_claim(self, limit)

    AuditRepository.claim = counting_claim  # type: ignore[method-assign]
    try:
        assert await first.tick() == 30
        assert await second.tick() == 0
    finally:
        AuditRepository.claim = real_claim  # type: ignore[method-assign]
    assert (first.leading, second.leading) == (True, False)
    assert batches == 5  # 7 + 7 + 7 + 7 + 2 (the short batch ends the tick)
    await _stage(first.service, range(30, 40))
    assert await second.tick() == 0  # still not the leader
    assert await first.tick() == 10
    await _assert_each_chained_once(first.service, 40)


async def test_a_lapsed_lease_is_taken_over_and_the_old_leaders_batch_rolls_back(database: Database) -> None:
    clock = SimClock(START)
    old = AuditService(database, clock, lease_seconds=10)
    new = AuditService(database, clock, lease_seconds=10)
    assert await old.take_lease("old")
    assert not await new.take_lease("new")
    await _stage(old, range(12))
    clock.advance(10.5)  # the old leader stopped renewing (died or stalled)
    assert await new.take_lease("new")
    with pytest.raises(LeaseLostError):
        await old.chain_batch(5, holder="old")  # wakes up, still believing it leads
    assert await _staged(database) == 12  # its batch rolled back: the rows are still waiting
    assert await new.chain_batch(100, holder="new") == 12
    assert not await old.take_lease("old")
    await _assert_each_chained_once(new, 12)


async def test_a_stopping_leader_hands_the_lease_over_at_once(database: Database) -> None:
    clock = SimClock(START)
    leaving = AuditChainer(AuditService(database, clock), holder="leaving")
    staying = AuditChainer(AuditService(database, clock), holder="staying")
    await leaving.tick()
    await _stage(leaving.service, range(3))
    await leaving.stop()  # chains what waits, then releases the lease
    assert await _staged(database) == 0
    await _stage(staying.service, range(3, 5))
    assert await staying.tick() == 2  # no need to wait for the lease to lapse
    await _assert_each_chained_once(staying.service, 5)


async def test_a_stream_of_commits_is_chained_a_few_times_a_second_not_once_or_twice_an_order(database: Database) -> None:
    """Commits every ~10 ms (sequential orders), each waking the chainer: it chains them in a few ticks a second,
    each for many entries (its ticks run on the request loop and hold SQLite's writer lock). With a 0.02 s
    pause between ticks it chained every second or third commit."""
    chainer = AuditChainer(AuditService(database, SimClock(START)), holder="streaming")
    batches: list[int] = []
    real_chain_batch = chainer.service.chain_batch

    async def counted(limit: int = 500, *, holder: str | None = None) -> int:
        chained = await real_chain_batch(limit, holder=holder)
        batches.append(chained)
        return chained

    chainer.service.chain_batch = counted  # type: ignore[method-assign]
    assert await chainer.service.take_lease(chainer.holder)
    chainer.start()
    started = asyncio.get_running_loop().time()
    for n in range(25):
        await _stage(chainer.service, range(n, n + 1))
        chainer.wake()
        await asyncio.sleep(0.01)
    elapsed = asyncio.get_running_loop().time() - started
    ticks = len([count for count in batches if count])
    await chainer.stop()  # chains what is left
    assert ticks <= 2 + 4 * elapsed, f"{ticks} ticks chained rows in {elapsed:.2f} s: {batches}"
    await _assert_each_chained_once(chainer.service, 25)


async def test_a_tick_that_fails_on_a_bug_is_counted_and_the_chainer_chains_at_the_next(database: Database) -> None:
    """A bug in a tick is counted in background_task_failures_total{task="audit_chainer"}, a database outage as an
    outage (not a bug), and the chainer goes on: the next tick chains everything staged."""
    chainer = AuditChainer(AuditService(database, SimClock(START), lease_seconds=0.2), holder="failing", interval=0.01)
    real_chain_batch = chainer.service.chain_batch
    outcomes: list[Exception] = [KeyError("a bug in the batch"), ConnectionRefusedError("database away")]
    calls = 0

    async def failing_twice(limit: int = 500, *, holder: str | None = None) -> int:
        nonlocal calls
        calls += 1
        if outcomes:
            raise outcomes.pop(0)
        return await real_chain_batch(limit, holder=holder)

    chainer.service.chain_batch = failing_twice  # type: ignore[method-assign]
    await _stage(chainer.service, range(5))
    failures = metric_sample("background_task_failures_total", task="audit_chainer")
    outages = metric_sample("backend_unavailable_total", backend="database", operation="audit_chainer")
    chainer.start()
    try:
        for _ in range(2000):  # at most ~20 s (a loaded machine); done in a few ticks
            if await _staged(database) == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        await chainer.stop()
    assert calls >= 3  # the bug, the outage, then a tick that chained
    assert metric_sample("background_task_failures_total", task="audit_chainer") == failures + 1
    assert metric_sample("backend_unavailable_total", backend="database", operation="audit_chainer") == outages + 1
    await _assert_each_chained_once(chainer.service, 5)


async def test_racing_chainers_chain_every_row_exactly_once(database: Database, database_url: str, tmp_path: Path) -> None:
    """Two processes' chainers with short leases, plus lease-less drains acting like a leader that lost track, while
    four writers stage: the chain verifies and every staged row is in it exactly once."""
    other = Database(Settings(database_url=database_url, data_dir=tmp_path))
    clock = LiveClock()
    services = [AuditService(database, clock, lease_seconds=0.5), AuditService(other, clock, lease_seconds=0.5)]
    chainers = [AuditChainer(service, batch_size=9, interval=0.005) for service in services]
    staged = 240
    try:
        for chainer in chainers:
            chainer.start()

        async def writer(offset: int) -> None:
            for start in range(offset, staged, 40):
                await _stage(services[offset % 2], range(start, start + 10))

        async def rogue() -> None:
            for _ in range(15):
                await services[1].drain(limit=5)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(writer(offset) for offset in (0, 10, 20, 30)), rogue())
        assert await services[0].settle(wait_seconds=30)
    finally:
        for chainer in chainers:
            await chainer.stop()
        await other.dispose()
    await _assert_each_chained_once(services[0], staged)


def _start_stalling_chainer(database_url: str, tmp_path: Path, lease_seconds: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "chainer_process.py"), database_url, str(lease_seconds), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process


async def _until_stopped(process: subprocess.Popen[str], tmp_path: Path) -> None:
    for _ in range(600):
        if (tmp_path / "stopped").exists():
            return
        if process.poll() is not None:
            raise AssertionError(f"the chainer process ended early: {process.communicate()}")
        await asyncio.sleep(0.05)
    raise AssertionError("the chainer process never reached the middle of its batch")


async def test_a_chainer_killed_mid_batch_loses_nothing_and_is_replaced(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    audit = AuditService(database, LiveClock(), lease_seconds=1.0)
    await _stage(audit, range(50))
    process = _start_stalling_chainer(database_url, tmp_path, 1.0)
    try:
        await _until_stopped(process, tmp_path)
        assert (tmp_path / "stopped").read_text() == "50"  # it appended all 50, uncommitted
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        await _stage(audit, range(50, 60))
        assert await audit.settle(wait_seconds=30)  # takes the lapsed lease and chains everything
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    await _assert_each_chained_once(audit, 60)


async def test_a_stalled_chainer_blocks_no_writer_is_replaced_and_cannot_commit_late(postgres_url: str, tmp_path: Path) -> None:
    """PostgreSQL: a chainer stuck in the middle of a batch (idle in transaction) does not hold up staging, the server
    ends its transaction so a new leader chains its rows, and when it wakes up its batch fails. (On SQLite a stuck
    writer holds the single write lock: there the whole embedded process is what stalls.)"""
    database = Database(Settings(database_url=postgres_url, data_dir=tmp_path))
    await migrations.upgrade(database.engine)
    audit = AuditService(database, LiveClock(), lease_seconds=1.0)
    await _stage(audit, range(30))
    process = _start_stalling_chainer(postgres_url, tmp_path, 1.0)
    try:
        await _until_stopped(process, tmp_path)
        await asyncio.wait_for(_stage(audit, range(30, 40)), timeout=10)  # the request path does not wait for it
        assert await audit.settle(wait_seconds=30)
        await _assert_each_chained_once(audit, 40)
        (tmp_path / "resume").write_text("")
        out, err = await asyncio.to_thread(process.communicate, timeout=60)
        assert out.startswith("failed"), out + err  # its transaction was ended by the server: nothing committed late
        await _assert_each_chained_once(audit, 40)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        await database.dispose()
