"""Restore of a PostgreSQL database holding N orders (goal: 1,000,000 orders restored in < 60 s).

    .venv/bin/python benchmarks/restore.py [--orders 1000000] [--rounds 3]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

The benchmark generates its database: a throwaway PostgreSQL database ``bench_restore_<random>``
migrated by Alembic, the instrument catalogue, one trader with a paper account, and N resting
limit orders, each with its two events (submitted, accepted) in the same form the order service
writes them — so `check integrity` passes. Rows are generated in SQL from one template order
made with the domain objects. Then `tradestack backup create` (pg_dump custom format).

Each round, alternating:
- baseline: plain ``pg_restore`` of the same dump into a new empty database (what a DBA would
  type; no checks);
- tradestack: `restore_backup` over the live database (``--force``): checksum of the file,
  pg_restore (``--jobs``) into a staging database, then concurrently the fingerprint (counts and
  checksums of every table: each table's COPY text in primary-key order hashed by the client, the
  tables shared by two connections on one snapshot; journal sums, audit head) against the
  manifest, `check integrity` (SQL aggregates; plain orders proven in one SQL pass cut into two id
  ranges on two sessions sharing one snapshot, the rest folded by the domain) and the audit chain,
  then the swap. Its ``restore_s`` is the end-to-end time; the progress lines show when each part
  finished.

Figures (shared 2-core machine, other sessions running; `--orders 1000000 --rounds 2`):
before the set-based checks, one round took 605.7 s (integrity 410 s, fingerprint 141 s); after,
restore_s=117.77 against plain pg_restore 58.09 s (load ~11). With the checks on two connections
each and the COPY-text checksums, back to back with the code before at load 3-4: restore_s=18.86,
baseline 12.60 (ratio 1.50; fingerprint 3.6 s, integrity 8.2 s) against restore_s=22.65, baseline
12.08 (ratio 1.88; fingerprint 7.7 s, integrity 13.2 s) before; at load 11-13: restore_s=54.52,
baseline 38.96 (before, at load 9-12: 57.58 and 35.31).

Medians are reported; ratio = tradestack / baseline. Every database made is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import orjson
from sqlalchemy.engine import make_url

from tradestack.books.service import BooksService
from tradestack.domain.marketdata import Side
from tradestack.domain.orders import OrderAccepted, OrderRequest, OrderSubmitted, OrderType, TimeInForce
from tradestack.identity.permissions import Role
from tradestack.identity.service import Caller, identity_session
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import MarketDataService
from tradestack.ops import backup as backups

TS = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
TEMPLATE_ID = "TEMPLATE-ORDER-ID"
TEMPLATE_CLIENT = "TEMPLATE-CLIENT-ID"


def _dsn(url: str, database: str) -> str:
    return make_url(url).set(drivername="postgresql", database=database).render_as_string(hide_password=False)


async def generate(settings: Settings, orders: int) -> None:
    runtime = Runtime.open(settings)
    try:
        await migrations.upgrade(runtime.database.engine)
        await MarketDataService(runtime).seed_instruments()
        async with identity_session(runtime, Caller()) as identity:
            user = await identity.create_user("bench@example.com", "a benchmark password", Role.TRADER)
            account = await BooksService(identity.session, runtime.clock).open_account(user.id, "bench", "USD")
    finally:
        await runtime.close()
    request = OrderRequest(
        client_order_id=TEMPLATE_CLIENT, account_id=account.id, symbol="BTC-USD", side=Side.BUY, type=OrderType.LIMIT,
        quantity=Decimal("0.001"), limit_price=Decimal(10000), time_in_force=TimeInForce.GTC,
    )  # fmt: skip
    submitted = orjson.dumps(OrderSubmitted(order_id=TEMPLATE_ID, ts=TS, request=request).to_dict()).decode()
    accepted = orjson.dumps(OrderAccepted(order_id=TEMPLATE_ID, ts=TS).to_dict()).decode()
    connection = await asyncpg.connect(
        _dsn(settings.effective_database_url, str(make_url(settings.effective_database_url).database))
    )
    try:
        await connection.execute(
            """
            INSERT INTO orders (id, account_id, client_order_id, fingerprint, symbol, side, type, time_in_force, quantity,
                                limit_price, stop_price, status, filled_quantity, average_fill_price, reason, version,
                                created_at, updated_at)
            SELECT 'o-' || i, $1, 'c-' || i, replace($2, $3, 'c-' || i), 'BTC-USD', 'buy', 'limit', 'gtc', 0.001,
                   10000, NULL, 'accepted', 0, NULL, NULL, 2, $4, $4
            FROM generate_series(1, $5) AS i
            """,
            account.id, request.fingerprint(), TEMPLATE_CLIENT, TS, orders,
        )  # fmt: skip
        await connection.execute(
            """
            INSERT INTO order_events (order_id, seq, kind, ts, payload)
            SELECT 'o-' || i, 1, 'submitted', $1::timestamptz,
                   replace(replace($2::text, $3::text, 'o-' || i), $4::text, 'c-' || i)
            FROM generate_series(1, $6::int) AS i
            UNION ALL
            SELECT 'o-' || i, 2, 'accepted', $1::timestamptz, replace($5::text, $3::text, 'o-' || i)
            FROM generate_series(1, $6::int) AS i
            """,
            TS, submitted, TEMPLATE_ID, TEMPLATE_CLIENT, accepted, orders,
        )  # fmt: skip
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


def _timed(started: float) -> backups.Progress:
    return lambda message: print(f"  {time.perf_counter() - started:7.2f} s  {message}", flush=True)


async def _run(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(stderr.decode())


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"bench_restore_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(_dsn(args.admin_url, "postgres"))
    created = [name]
    work = Path(tempfile.mkdtemp(prefix="bench-restore-"))
    url = make_url(args.admin_url).set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    settings = Settings(database_url=url, data_dir=work, argon2_time_cost=1, argon2_memory_kib=8192)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        started = time.perf_counter()
        await generate(settings, args.orders)
        print(f"generated {args.orders} orders ({2 * args.orders} events) in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        made = await backups.create_backup(settings, work / "backups")
        dump = made.path / made.manifest["files"][0]["name"]
        print(f"backup created in {time.perf_counter() - started:.1f} s: {dump.stat().st_size / 1e6:.1f} MB", flush=True)
        baseline: list[float] = []
        ours: list[float] = []
        for round_number in range(1, args.rounds + 1):
            target = f"{name}_plain_{round_number}"
            created.append(target)
            await admin.execute(f'CREATE DATABASE "{target}"')
            started = time.perf_counter()
            await _run("pg_restore", "--exit-on-error", "--no-owner", f"--dbname={_dsn(args.admin_url, target)}", str(dump))
            baseline.append(time.perf_counter() - started)
            await admin.execute(f'DROP DATABASE "{target}" WITH (FORCE)')
            started = time.perf_counter()
            result = await backups.restore_backup(settings, made, force=True, progress=_timed(time.perf_counter()))
            ours.append(time.perf_counter() - started)
            if not result.ok:
                print(f"restore FAILED its checks: {result.problems}", file=sys.stderr)
                return 1
            print(f"round {round_number}: pg_restore {baseline[-1]:.2f} s, tradestack restore {ours[-1]:.2f} s", flush=True)
        base, mine = statistics.median(baseline), statistics.median(ours)
        print(
            f"RESULT name=restore orders={args.orders} restore_s={mine:.2f} baseline_pg_restore_s={base:.2f} "
            f"goal_s=60 ratio={mine / base:.2f}"
        )
        return 0
    finally:
        for database in created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname LIKE $1", f"{name}%")
        for row in await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", f"{name}%"):
            await admin.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        await admin.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
