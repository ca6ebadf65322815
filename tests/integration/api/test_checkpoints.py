"""An API process on SQLite checkpoints its write-ahead log in the background (`Database.checkpoints`): its writer
connection, which the order desk and the audit chainer commit on, never does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tradestack.kit import db as db_module
from tradestack.kit.db import Database
from tradestack.kit.runtime import Runtime
from tradestack.models import Instance

from .conftest import Open

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


async def test_the_api_process_checkpoints_the_sqlite_log_while_it_runs_and_not_on_postgresql(
    open_app: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "SQLITE_CHECKPOINT_SECONDS", 0.02)
    real_checkpoint = Database.checkpoint
    results: list[tuple[int, int] | None] = []

    async def checkpoint(self: Database, restart_frames: int = db_module.SQLITE_RESTART_FRAMES) -> tuple[int, int] | None:
        results.append(await real_checkpoint(self, restart_frames))
        return results[-1]

    monkeypatch.setattr(Database, "checkpoint", checkpoint)
    async with open_app() as (app, _):
        runtime: Runtime = app.state.runtime
        database = runtime.database
        for n in range(20):
            async with database.writing(), database.writer_session() as session:
                session.add(Instance(id=f"checkpointed-{n:02d}".ljust(36, "0"), name=f"c{n}", created_at=NOW, seeded_at=NOW))
        written = len(results)
        await asyncio.sleep(0.3)
        if database.dialect == "sqlite":
            copied = [result for result in results[written:] if result is not None and result[0]]
            assert copied, results  # the writer session's commits were copied into the database
            assert all(frames == done for frames, done in copied)
        else:
            assert results == []  # PostgreSQL checkpoints by itself
    stopped = len(results)
    await asyncio.sleep(0.1)
    assert len(results) == stopped  # the task ended with the process's runtime
