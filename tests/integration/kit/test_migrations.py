"""Migrations go up, all the way down and up again on both databases, and agree with the models."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect

from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database
from tradestack.models import Base


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_upgrade_downgrade_to_base_upgrade_again(database_url: str, tmp_path: Path) -> None:
    db = Database(Settings(database_url=database_url, data_dir=tmp_path))
    try:
        assert await migrations.current_revisions(db.engine) == ()
        await migrations.upgrade(db.engine)
        assert await migrations.current_revisions(db.engine) == migrations.head_revisions()
        assert set(Base.metadata.tables) <= await _tables(db)

        await migrations.downgrade(db.engine, "base")
        assert await migrations.current_revisions(db.engine) == ()
        assert await _tables(db) <= {"alembic_version"}

        await migrations.upgrade(db.engine)
        assert await migrations.current_revisions(db.engine) == migrations.head_revisions()
        await migrations.check(db.engine)
    finally:
        await db.dispose()


async def test_each_step_down_and_up_works(database_url: str, tmp_path: Path) -> None:
    db = Database(Settings(database_url=database_url, data_dir=tmp_path))
    try:
        revisions = [revision for revision, _, _ in reversed(migrations.history())]
        for revision in revisions:
            await migrations.upgrade(db.engine, revision)
            await migrations.downgrade(db.engine, "-1")
            await migrations.upgrade(db.engine, revision)
            assert await migrations.current_revisions(db.engine) == (revision,)
    finally:
        await db.dispose()


def test_single_head() -> None:
    assert len(migrations.head_revisions()) == 1
