"""`tradestack dr drill`: a point-in-time recovery rehearsal with pgBackRest, measured.

On a throwaway PostgreSQL cluster started from the installed binaries (``initdb``/``pg_ctl`` of
/usr/lib/postgresql/*/bin, as the ``postgres`` OS user when run as root), with WAL archived by
pgBackRest into a throwaway repository:

1. migrate Tradestack's schema, take a full backup;
2. start a heartbeat writer (a row every 50 ms) and order traffic through the real API in process
   (a trader placing resting limit orders), take an incremental backup while they run;
3. pick a target time T on the server's clock, keep writing, archive the WAL (``pgbackrest check``);
4. restore to T into a NEW cluster (``pgbackrest restore --type=time``), start it, wait for promotion;
5. verify: heartbeats form a gap-free prefix containing every heartbeat acknowledged before T and
   none after it, the same for orders, ``check integrity`` passes and the audit chain verifies;
6. report RTO (restore command to a promoted, answering cluster) and RPO (T minus the last recovered
   heartbeat's commit time: what a restore to T loses).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from tradestack.core.errors import ConflictError
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database
from tradestack.ops.integrity import check_integrity

STANZA = "drill"
Say = Callable[[str], None]
AppFactory = Callable[[Settings], Any]  # tradestack.api.app.create_app (the API layer sits above ops)


class DrillError(ConflictError):
    """The drill could not run or its restore did not verify."""


@dataclass
class DrillReport:
    rto_seconds: float = 0.0
    rpo_seconds: float = 0.0
    target_time: datetime | None = None
    heartbeats_recovered: int = 0
    heartbeats_acknowledged_before_target: int = 0
    orders_recovered: int = 0
    orders_acknowledged_before_target: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise DrillError(f"{name} not found under /usr/lib/postgresql/*/bin: install the PostgreSQL server package")
    return found[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Cluster:
    """Commands run as the postgres OS user when we are root (PostgreSQL refuses to run as root)."""

    def __init__(self, work: Path, config: Path) -> None:
        self.work = work
        self.config = config
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(  # noqa: S603 - fixed tool paths and our own arguments
            [*self.as_postgres, *argv], capture_output=True, text=True, check=False, timeout=600
        )
        if check and result.returncode != 0:
            raise DrillError(
                f"{Path(argv[0]).name} {' '.join(argv[1:3])} failed: {(result.stderr or result.stdout).strip()[-800:]}"
            )
        return result

    def backrest(self, *args: str) -> subprocess.CompletedProcess[str]:
        pgbackrest = shutil.which("pgbackrest")
        if pgbackrest is None:
            raise DrillError("pgbackrest is not installed (Debian package pgbackrest)")
        return self.run(pgbackrest, f"--config={self.config}", f"--stanza={STANZA}", *args)

    def start(self, data: Path, port: int, *extra: str) -> None:
        options = f"-p {port} -k {self.work} -c listen_addresses=127.0.0.1 " + " ".join(extra)
        self.run(
            pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(data.parent / f"{data.name}.log"),
            "-o",
            options,
            "-w",
            "-t",
            "120",
            "start",
        )

    def stop(self, data: Path) -> None:
        self.run(pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop", check=False)


async def wait_promoted(dsn: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            connection = await asyncpg.connect(dsn, timeout=2)
            try:
                if not await connection.fetchval("SELECT pg_is_in_recovery()"):
                    return
            finally:
                await connection.close()
        await asyncio.sleep(0.1)
    raise DrillError(f"the restored cluster did not finish recovery within {seconds:g} s")


async def heartbeats(dsn: str, stop: asyncio.Event, acked: list[tuple[int, float]], *, until_gone: bool = False) -> None:
    """A row every 50 ms, recorded as acknowledged once its commit returned, until `stop`.

    With `until_gone` the server going away (a crash the drill causes) ends the writer quietly.
    """
    quiet = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) if until_gone else ()
    with contextlib.suppress(*quiet):
        connection = await asyncpg.connect(dsn)
        try:
            seq = 0
            while not stop.is_set():
                seq += 1
                await connection.execute("INSERT INTO drill_heartbeat (seq) VALUES ($1)", seq)
                acked.append((seq, time.monotonic()))
                await asyncio.sleep(0.05)
        finally:
            with contextlib.suppress(Exception):
                await connection.close(timeout=1)


async def order_traffic(settings: Settings, app_factory: AppFactory, stop: asyncio.Event, acked: list[tuple[str, float]]) -> None:
    """A trader placing resting limit orders through the real API (in process) until `stop`."""
    import httpx

    from tradestack.domain.marketdata import Quote
    from tradestack.identity.permissions import Role
    from tradestack.identity.service import Caller, identity_session
    from tradestack.marketdata.runner import Publisher

    app = app_factory(settings)
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        password = "drill password, long enough"  # noqa: S105 - a throwaway user of a throwaway cluster
        async with identity_session(runtime, Caller()) as identity:
            await identity.create_user("drill@example.com", password, Role.TRADER)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://drill") as client:
            login = await client.post("/api/auth/login", json={"email": "drill@example.com", "password": password})
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            body = {"name": "drill", "base_currency": "USD", "deposit": {"currency": "USD", "amount": "1000000"}}
            account = (await client.post("/api/accounts", json=body, headers=headers)).json()["id"]
            quote = Quote(
                "BTC-USD", Decimal(40000), Decimal(40001), Decimal(5), Decimal(5), Decimal(40000), Decimal(1), runtime.clock.now()
            )
            await Publisher(runtime).publish("drill", quote)
            number = 0
            while not stop.is_set():
                number += 1
                order = {
                    "account_id": account, "client_order_id": f"drill-{number}", "symbol": "BTC-USD", "side": "buy",
                    "type": "limit", "limit_price": "30000", "quantity": "0.01", "time_in_force": "gtc",
                }  # fmt: skip
                response = await client.post("/api/orders", json=order, headers=headers)
                if response.status_code == 201:
                    acked.append((response.json()["id"], time.monotonic()))
                await asyncio.sleep(0.1)


def give_to_postgres(work: Path) -> None:
    shutil.chown(work, "postgres", "postgres")
    for child in work.rglob("*"):
        shutil.chown(child, "postgres", "postgres")


def _database_url(port: int) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/tradestack"


async def prepare_database(settings: Settings, port: int, data_dir: Path) -> Settings:
    """The app's settings on the drill cluster's `tradestack` database, migrated, with the heartbeat table."""
    app_settings = settings.model_copy(
        update={
            "database_url": _database_url(port), "database_replica_url": None, "redis_url": None, "data_dir": data_dir,
            "marketdata_feeds": [], "engine_in_process": False, "argon2_time_cost": 1, "argon2_memory_kib": 8192,
            "log_level": "warning",
        }
    )  # fmt: skip
    database = Database(app_settings)
    await migrations.upgrade(database.engine)
    await database.dispose()
    connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/tradestack")
    try:
        await connection.execute(
            "CREATE TABLE drill_heartbeat (seq bigint PRIMARY KEY, ts timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
    finally:
        await connection.close()
    return app_settings


async def verify_books(app_settings: Settings, port: int) -> list[str]:
    """The problems `check integrity` and the audit chain's verification find on the cluster at `port`."""
    from tradestack.audit.service import AuditService
    from tradestack.core.clock import LiveClock

    database = Database(app_settings.model_copy(update={"database_url": _database_url(port)}))
    try:
        integrity = await check_integrity(database)
        problems = [f"integrity: {problem}" for problem in integrity.problems]
        audit = await AuditService(database, LiveClock()).verify()
        if not audit.ok:
            problems.append(f"audit chain: {audit.problem}")
        return problems
    finally:
        await database.dispose()


async def run_drill(
    settings: Settings, app_factory: AppFactory, *, traffic_seconds: float = 4.0, keep: bool = False, say: Say = print
) -> DrillReport:
    """Run the drill in a temporary directory; returns the measured report (problems empty when it passed)."""
    work = Path(tempfile.mkdtemp(prefix="tradestack-drill-"))
    report = DrillReport()
    config = work / "pgbackrest.conf"
    cluster = Cluster(work, config)
    primary, restored = work / "primary", work / "restored"
    port, restored_port = free_port(), free_port()
    for sub in ("repo", "log", "lock", "spool"):
        (work / sub).mkdir()
    config.write_text(
        "[global]\n"
        f"repo1-path={work / 'repo'}\nrepo1-retention-full=2\nlog-path={work / 'log'}\nlock-path={work / 'lock'}\n"
        f"spool-path={work / 'spool'}\nstart-fast=y\nlog-level-console=warn\n\n"
        f"[{STANZA}]\npg1-path={primary}\npg1-port={port}\npg1-socket-path={work}\npg1-user=postgres\n"
    )
    if os.geteuid() == 0:
        await asyncio.to_thread(give_to_postgres, work)
    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    dsn = f"postgresql://postgres@127.0.0.1:{port}/tradestack"
    try:
        say(f"initdb and start a throwaway cluster on port {port}")
        cluster.run(pg_bin("initdb"), "-D", str(primary), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        archive = f"'{shutil.which('pgbackrest')} --config={config} --stanza={STANZA} archive-push %p'"
        cluster.start(
            primary, port, "-c wal_level=replica -c archive_mode=on", f"-c archive_command={archive}", "-c archive_timeout=60"
        )
        connection = await asyncpg.connect(admin)
        await connection.execute("CREATE DATABASE tradestack")
        await connection.close()
        app_settings = await prepare_database(settings, port, work / "app")
        say("pgbackrest stanza-create, full backup")
        cluster.backrest("stanza-create")
        cluster.backrest("--type=full", "backup")

        stop = asyncio.Event()
        beats: list[tuple[int, float]] = []
        orders: list[tuple[str, float]] = []
        writers = [
            asyncio.create_task(heartbeats(dsn, stop, beats)),
            asyncio.create_task(order_traffic(app_settings, app_factory, stop, orders)),
        ]
        await asyncio.sleep(traffic_seconds / 2)
        say("incremental backup while writing")
        await asyncio.to_thread(cluster.backrest, "--type=incr", "backup")
        await asyncio.sleep(traffic_seconds / 2)
        asked = time.monotonic()
        probe = await asyncpg.connect(admin)
        # pgBackRest takes milliseconds: round up, so every commit before the probe is at or before the target.
        target: datetime = await probe.fetchval("SELECT date_trunc('milliseconds', clock_timestamp()) + interval '1 millisecond'")
        await probe.close()
        report.target_time = target
        report.heartbeats_acknowledged_before_target = max((seq for seq, at in beats if at < asked), default=0)
        acked_orders = [order_id for order_id, at in orders if at < asked]
        report.orders_acknowledged_before_target = len(acked_orders)
        say(f"target time {target.isoformat()}; writing on for {traffic_seconds / 2:g} s more")
        await asyncio.sleep(traffic_seconds / 2)
        stop.set()
        for task in writers:
            await task
        await asyncio.to_thread(cluster.backrest, "check")  # switches and archives the WAL holding the target
        cluster.stop(primary)

        say("restoring to the target time into a new cluster")
        started = time.perf_counter()
        await asyncio.to_thread(
            cluster.backrest,
            f"--pg1-path={restored}",
            "--type=time",
            f"--target={target.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}+00",
            "--target-action=promote",
            "restore",
        )
        await asyncio.to_thread(cluster.start, restored, restored_port, "-c archive_mode=off")
        restored_dsn = f"postgresql://postgres@127.0.0.1:{restored_port}/tradestack"
        await wait_promoted(restored_dsn, 300)
        report.rto_seconds = time.perf_counter() - started

        say("verifying the restored cluster")
        connection = await asyncpg.connect(restored_dsn)
        try:
            seqs = [row["seq"] for row in await connection.fetch("SELECT seq FROM drill_heartbeat ORDER BY seq")]
            last_ts = await connection.fetchval("SELECT max(ts) FROM drill_heartbeat")
            recovered_orders = {row["id"] for row in await connection.fetch("SELECT id FROM orders")}
        finally:
            await connection.close()
        report.heartbeats_recovered = len(seqs)
        report.orders_recovered = len(recovered_orders)
        if seqs != list(range(1, len(seqs) + 1)):
            report.problems.append("recovered heartbeats have gaps")
        if len(seqs) < report.heartbeats_acknowledged_before_target:
            acknowledged = report.heartbeats_acknowledged_before_target
            report.problems.append(f"only {len(seqs)} heartbeats recovered, {acknowledged} were acknowledged before the target")
        if last_ts is not None and last_ts > target:
            report.problems.append(f"a heartbeat committed after the target ({last_ts}) was recovered")
        missing = [order_id for order_id in acked_orders if order_id not in recovered_orders]
        if missing:
            report.problems.append(f"{len(missing)} orders acknowledged before the target are missing, e.g. {missing[0]}")
        if len(recovered_orders) > len(orders):
            report.problems.append("more orders recovered than were ever placed")
        report.rpo_seconds = (target - last_ts).total_seconds() if last_ts is not None else float("inf")
        report.problems.extend(await verify_books(app_settings, restored_port))
        return report
    finally:
        cluster.stop(restored)
        cluster.stop(primary)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept {work}")


def describe(report: DrillReport) -> dict[str, Any]:
    return {
        "rto_seconds": round(report.rto_seconds, 2),
        "rpo_seconds": round(report.rpo_seconds, 3),
        "target_time": report.target_time.isoformat() if report.target_time else None,
        "heartbeats_recovered": report.heartbeats_recovered,
        "heartbeats_acknowledged_before_target": report.heartbeats_acknowledged_before_target,
        "orders_recovered": report.orders_recovered,
        "orders_acknowledged_before_target": report.orders_acknowledged_before_target,
    }
