"""`tradestack dr drill --replica`: fail over to a synchronous streaming replica and measure RPO (goal 0).

On throwaway clusters started from the installed binaries (as the ``postgres`` OS user when run
as root), the production layout's primary + streaming replica:

1. a primary (``wal_level=replica``) with Tradestack's schema; a replica made by
   ``pg_basebackup --write-recovery-conf`` that streams from it as ``drill_replica``; then
   ``synchronous_standby_names = 'drill_replica'`` (``synchronous_commit = on``): a commit is
   acknowledged only once the replica has flushed it. The drill checks ``pg_stat_replication``
   reports the replica as ``sync`` before writing;
2. a heartbeat writer (a row every 50 ms) and order traffic through the real API (in process)
   against the primary;
3. the primary crashes mid-traffic (``pg_ctl stop -m immediate``), the replica is promoted
   (``pg_ctl promote``);
4. verify on the promoted replica: every acknowledged heartbeat and order is there (RPO 0 means
   none lost), heartbeats are gap-free, ``check integrity`` passes and the audit chain verifies;
5. report RTO (crash to a promoted replica that answers) and RPO (0 when no acknowledged commit was
   lost; otherwise the time between the last recovered and the last acknowledged heartbeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from tradestack.kit.config import Settings
from tradestack.ops.drill import (
    AppFactory,
    Cluster,
    DrillError,
    Say,
    free_port,
    give_to_postgres,
    heartbeats,
    order_traffic,
    pg_bin,
    prepare_database,
    verify_books,
    wait_promoted,
)

STANDBY = "drill_replica"


@dataclass
class ReplicaDrillReport:
    rto_seconds: float = 0.0
    rpo_seconds: float = 0.0
    sync_state: str | None = None
    heartbeats_acknowledged: int = 0
    heartbeats_recovered: int = 0
    orders_acknowledged: int = 0
    orders_recovered: int = 0
    acknowledged_lost: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def _orders_until_failure(
    settings: Settings, app_factory: AppFactory, stop: asyncio.Event, acked: list[tuple[str, float]]
) -> None:
    with contextlib.suppress(Exception):  # the primary's crash ends the traffic however it surfaces
        await order_traffic(settings, app_factory, stop, acked)


async def _sync_state(admin: str, seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    state: str | None = None
    while time.monotonic() < deadline:
        connection = await asyncpg.connect(admin)
        try:
            state = await connection.fetchval("SELECT sync_state FROM pg_stat_replication WHERE application_name = $1", STANDBY)
        finally:
            await connection.close()
        if state == "sync":
            return state
        await asyncio.sleep(0.1)
    return state


async def run_replica_drill(
    settings: Settings, app_factory: AppFactory, *, traffic_seconds: float = 4.0, keep: bool = False, say: Say = print
) -> ReplicaDrillReport:
    """Run the failover drill in a temporary directory; returns the measured report (problems empty when it passed)."""
    work = Path(tempfile.mkdtemp(prefix="tradestack-replica-drill-"))
    report = ReplicaDrillReport()
    cluster = Cluster(work, work / "unused.conf")
    primary, replica = work / "primary", work / "replica"
    port, replica_port = free_port(), free_port()
    if os.geteuid() == 0:
        await asyncio.to_thread(give_to_postgres, work)
    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    dsn = f"postgresql://postgres@127.0.0.1:{port}/tradestack"
    try:
        say(f"initdb and start a primary on port {port}")
        cluster.run(pg_bin("initdb"), "-D", str(primary), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        await asyncio.to_thread(cluster.start, primary, port, "-c wal_level=replica -c max_wal_senders=5")
        connection = await asyncpg.connect(admin)
        await connection.execute("CREATE DATABASE tradestack")
        await connection.close()
        app_settings = await prepare_database(settings, port, work / "app")

        say(f"pg_basebackup a streaming replica ({STANDBY}) on port {replica_port}")
        conninfo = f"host=127.0.0.1 port={port} user=postgres application_name={STANDBY}"
        await asyncio.to_thread(
            cluster.run, pg_bin("pg_basebackup"), "-D", str(replica), "-d", conninfo, "--write-recovery-conf", "--checkpoint=fast"
        )
        await asyncio.to_thread(cluster.start, replica, replica_port, "-c hot_standby=on")
        connection = await asyncpg.connect(admin)
        await connection.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY}'")
        await connection.execute("SELECT pg_reload_conf()")
        await connection.close()
        report.sync_state = await _sync_state(admin, 30)
        if report.sync_state != "sync":
            raise DrillError(f"the replica is not a synchronous standby (pg_stat_replication sync_state {report.sync_state})")

        say(f"heartbeats and order traffic for {traffic_seconds:g} s, then the primary crashes")
        stop = asyncio.Event()
        beats: list[tuple[int, float]] = []
        orders: list[tuple[str, float]] = []
        writers = [
            asyncio.create_task(heartbeats(dsn, stop, beats, until_gone=True)),
            asyncio.create_task(_orders_until_failure(app_settings, app_factory, stop, orders)),
        ]
        await asyncio.sleep(traffic_seconds)
        crashed = time.perf_counter()
        await asyncio.to_thread(cluster.stop, primary)  # -m immediate: no shutdown checkpoint, clients cut off
        stop.set()
        await asyncio.wait_for(asyncio.gather(*writers), 120)

        say("promoting the replica")
        await asyncio.to_thread(cluster.run, pg_bin("pg_ctl"), "-D", str(replica), "-w", "-t", "120", "promote")
        replica_dsn = f"postgresql://postgres@127.0.0.1:{replica_port}/tradestack"
        await wait_promoted(replica_dsn, 120)
        report.rto_seconds = time.perf_counter() - crashed

        say("verifying the promoted replica")
        connection = await asyncpg.connect(replica_dsn)
        try:
            seqs = [row["seq"] for row in await connection.fetch("SELECT seq FROM drill_heartbeat ORDER BY seq")]
            recovered_orders = {row["id"] for row in await connection.fetch("SELECT id FROM orders")}
        finally:
            await connection.close()
        _verify(report, seqs, beats, recovered_orders, orders)
        report.problems.extend(await verify_books(app_settings, replica_port))
        return report
    finally:
        cluster.stop(replica)
        cluster.stop(primary)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept {work}")


def _verify(
    report: ReplicaDrillReport,
    seqs: list[int],
    beats: list[tuple[int, float]],
    recovered_orders: set[str],
    orders: list[tuple[str, float]],
) -> None:
    report.heartbeats_acknowledged = len(beats)
    report.heartbeats_recovered = len(seqs)
    report.orders_acknowledged = len(orders)
    report.orders_recovered = len(recovered_orders)
    if not beats or not orders:
        report.problems.append(f"no traffic to check: {len(beats)} heartbeats and {len(orders)} orders acknowledged")
    if seqs != list(range(1, len(seqs) + 1)):
        report.problems.append("recovered heartbeats have gaps")
    recovered = set(seqs)
    lost_beats = [(seq, at) for seq, at in beats if seq not in recovered]
    lost_orders = [order_id for order_id, _ in orders if order_id not in recovered_orders]
    report.acknowledged_lost = len(lost_beats) + len(lost_orders)
    if lost_beats:
        last_kept = max((at for seq, at in beats if seq in recovered), default=lost_beats[0][1])
        report.rpo_seconds = max(at for _, at in lost_beats) - last_kept
        report.problems.append(f"{len(lost_beats)} acknowledged heartbeats lost in the failover, e.g. {lost_beats[0][0]}")
    if lost_orders:
        report.problems.append(f"{len(lost_orders)} acknowledged orders lost in the failover, e.g. {lost_orders[0]}")


def describe(report: ReplicaDrillReport) -> dict[str, Any]:
    return {
        "rto_seconds": round(report.rto_seconds, 2),
        "rpo_seconds": round(report.rpo_seconds, 3),
        "sync_state": report.sync_state,
        "heartbeats_acknowledged": report.heartbeats_acknowledged,
        "heartbeats_recovered": report.heartbeats_recovered,
        "orders_acknowledged": report.orders_acknowledged,
        "orders_recovered": report.orders_recovered,
        "acknowledged_lost": report.acknowledged_lost,
    }
