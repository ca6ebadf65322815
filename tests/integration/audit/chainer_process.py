"""A chainer in a process of its own that stops in the middle of a batch (rows claimed and appended, not committed).

Usage: python chainer_process.py DATABASE_URL LEASE_SECONDS DATA_DIR. It takes the lease, starts a batch,
creates DATA_DIR/stopped once the batch's rows are appended, then blocks (the whole process, like a
stalled one) until DATA_DIR/resume exists, and prints how the batch ended: ``committed N`` or
``failed <error>``. Tests kill it while it waits, or let it resume after another chainer took over.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from tradestack.audit.repository import AuditRepository
from tradestack.audit.service import AuditService
from tradestack.core.clock import LiveClock
from tradestack.kit.config import Settings
from tradestack.kit.db import Database


async def main(url: str, lease_seconds: float, data_dir: Path) -> None:
    database = Database(Settings(database_url=url, data_dir=data_dir))
    audit = AuditService(database, LiveClock(), lease_seconds=lease_seconds)
    real_append = AuditRepository.append

    async def append_then_stall(self: AuditRepository, rows: Any, personal: Any = ()) -> None:
        await real_append(self, rows, personal)
        (data_dir / "stopped").write_text(str(len(rows)))
        while not (data_dir / "resume").exists():
            time.sleep(0.05)  # blocks the event loop: the process is stuck, not just this task

    AuditRepository.append = append_then_stall  # type: ignore[method-assign]
    try:
        if not await audit.take_lease("doomed"):
            sys.stdout.write("failed no lease\n")
            return
        try:
            chained = await audit.chain_batch(1000, holder="doomed")
        except Exception as exc:  # noqa: BLE001 - reported to the test
            sys.stdout.write(f"failed {type(exc).__name__}\n")
        else:
            sys.stdout.write(f"committed {chained}\n")
    finally:
        await database.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])))
