"""Audit chain: entries chained per second in batches (the leased chainer) vs one at a time (the drain it replaced).

    .venv/bin/python benchmarks/audit_chain.py [--database postgresql|sqlite] [--entries 2000] [--rounds 5] [--batch 500]

Each round stages `--entries` audit entries in the outbox (not timed; 50 per transaction, as
committed orders would), then times moving all of them into the hash chain:

- batched: `AuditService.chain_batch` with the chainer's lease (renewed in every batch), up to
  `--batch` entries per transaction: claim by DELETE ... RETURNING, one head read, hashes in
  Python, one executemany INSERT ... RETURNING and one for the personal rows (audit_personal);
- one at a time (baseline): the drain this replaced, as each order's request ran it after its
  commit: per entry one transaction with the global advisory lock (PostgreSQL), the oldest outbox
  row, the head of the chain, an ORM insert and flush, the outbox row deleted.

The two alternate (which goes first flips every round); the figures are medians over rounds.
`ratio` = batched entries/s / one-at-a-time entries/s. The hot path's share is measured apart:
`stage_us` is the median time of `AuditService.stage` (one INSERT in the caller's open
transaction) over `--entries` orders, each in its own transaction -- all an order pays for its
audit entry now (before, it also waited for its one-at-a-time drain). The chain is verified at the
end, outside the timed region. PostgreSQL runs on a throwaway database of the test server
(TRADESTACK_TEST_POSTGRES_URL, default postgresql+asyncpg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import asyncpg
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from tradestack.audit.repository import AuditRepository
from tradestack.audit.service import GENESIS_HASH, AuditService, canonical_content, entry_hash
from tradestack.core.clock import LiveClock
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database
from tradestack.models.audit import AuditEntry, AuditOutbox

POSTGRES_URL = os.environ.get("TRADESTACK_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
CHAIN_LOCK_KEY = 0x74_73_61_75_64_69_74  # the advisory lock key the old drain used


def _entry(n: int) -> dict[str, object]:
    return {
        "action": "order.submit",
        "outcome": "success",
        "actor_user_id": "9b2f3c1e-8f5e-4c4e-9d1a-3f1f4c2b7a10",
        "actor_email": "trader@example.com",
        "target": f"order:{uuid.uuid4()}",
        "ip": "127.0.0.1",
        "user_agent": "benchmark",
        "detail": {"symbol": "AAPL", "side": "buy", "quantity": "10", "n": n},
    }


async def stage(audit: AuditService, count: int) -> None:
    for start in range(0, count, 50):
        async with audit.database.session() as session:
            await audit.stage_many(session, [_entry(n) for n in range(start, min(count, start + 50))])


async def chain_batched(audit: AuditService, batch: int) -> int:
    holder = "benchmark-chainer"
    if not await audit.take_lease(holder):
        raise RuntimeError("the benchmark could not take the chainer lease")
    total = 0
    while chained := await audit.chain_batch(batch, holder=holder):
        total += chained
    await audit.release_lease(holder)
    return total


async def drain_one_at_a_time(database: Database) -> int:
    """The replaced path: what `AuditService._drain` did for the one entry each order's flush found."""
    total = 0
    postgresql = database.dialect == "postgresql"
    while True:
        async with database.session() as session:
            if postgresql:
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
            query = select(AuditOutbox).order_by(AuditOutbox.id).limit(1)
            if postgresql:
                query = query.with_for_update(skip_locked=True)
            waiting = list((await session.execute(query)).scalars())
            if not waiting:
                return total
            head = await AuditRepository(session).last()
            prev_hash = head.hash if head is not None else GENESIS_HASH
            for row in waiting:
                fields = json.loads(row.fields)
                fields["ts"] = datetime.fromisoformat(fields["ts"])
                entry = AuditEntry(**fields, prev_hash=prev_hash)
                entry.hash = prev_hash = entry_hash(entry.prev_hash, canonical_content(entry))
                session.add(entry)
            await session.flush()
            for row in waiting:
                await session.delete(row)
            total += len(waiting)


async def stage_cost_us(audit: AuditService, count: int) -> float:
    timings = []
    for n in range(count):
        async with audit.database.session() as session:
            started = time.perf_counter_ns()
            await audit.stage(session, **_entry(n))
            timings.append(time.perf_counter_ns() - started)
    return statistics.median(timings) / 1000


async def run(database: Database, entries: int, rounds: int, batch: int) -> dict[str, float]:
    audit = AuditService(database, LiveClock())
    batched: list[float] = []
    single: list[float] = []
    for round_number in range(rounds):
        order = ("batched", "single") if round_number % 2 == 0 else ("single", "batched")
        for kind in order:
            await stage(audit, entries)
            started = time.perf_counter()
            chained = await chain_batched(audit, batch) if kind == "batched" else await drain_one_at_a_time(database)
            elapsed = time.perf_counter() - started
            if chained != entries:
                raise RuntimeError(f"{kind} chained {chained} of {entries} staged entries")
            (batched if kind == "batched" else single).append(entries / elapsed)
            print(f"round {round_number + 1} {kind:8s} {entries / elapsed:10.0f} entries/s", flush=True)
    stage_us = await stage_cost_us(audit, entries)
    await chain_batched(audit, batch)
    report = await audit.verify()
    if not report.ok or report.checked != entries * (2 * rounds + 1):
        raise RuntimeError(f"the chain does not verify after the benchmark: {report}")
    return {"batched": statistics.median(batched), "single": statistics.median(single), "stage_us": stage_us}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        admin_dsn = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)
        name = f"audit_bench_{uuid.uuid4().hex[:8]}"
        if args.database == "postgresql":
            admin = await asyncpg.connect(admin_dsn)
            await admin.execute(f'CREATE DATABASE "{name}"')
            await admin.close()
            url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        else:
            url = f"sqlite+aiosqlite:///{Path(scratch) / 'bench.db'}"
        database = Database(Settings(database_url=url, data_dir=Path(scratch)))
        try:
            await migrations.upgrade(database.engine)
            figures = await run(database, args.entries, args.rounds, args.batch)
        finally:
            await database.dispose()
            if args.database == "postgresql":
                admin = await asyncpg.connect(admin_dsn)
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()
    ratio = figures["batched"] / figures["single"]
    print(
        f"RESULT name=audit_chain database={args.database} batched_entries_per_s={figures['batched']:.0f} "
        f"one_at_a_time_entries_per_s={figures['single']:.0f} stage_us={figures['stage_us']:.0f} ratio={ratio:.1f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
