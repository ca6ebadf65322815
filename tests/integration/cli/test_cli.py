"""The command line: version, config show, db commands, refusal of default secrets."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

import tradestack
from tradestack.cli import app
from tradestack.kit import migrations

from ...conftest import _asyncpg_dsn  # type: ignore[import-not-found]

pytestmark = pytest.mark.usefixtures("clean_env")
runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert tradestack.__version__ in result.output


@pytest.mark.parametrize("command", [[], ["serve"], ["db"], ["config"], ["up"], ["serve", "api"], ["db", "downgrade"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTACK_SECRET_KEY", "z" * 40)
    monkeypatch.setenv("TRADESTACK_DATABASE_URL", "postgresql://u:topsecret@127.0.0.1/db")
    result = runner.invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["secret_key"] == "**********"
    assert "topsecret" not in result.output
    assert "z" * 40 not in result.output
    table = runner.invoke(app, ["config", "show"])
    assert table.exit_code == 0
    assert "TRADESTACK_SECRET_KEY" in table.output


def test_production_refuses_default_secret_and_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTACK_ENVIRONMENT", "production")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "TRADESTACK_SECRET_KEY" in result.output


def test_invalid_setting_is_reported_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTACK_PORT", "not-a-port")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "TRADESTACK_PORT" in result.output


def test_db_upgrade_current_history_check_downgrade(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTACK_DATABASE_URL", database_url)
    head = migrations.head_revisions()[0]
    current = runner.invoke(app, ["db", "current"])
    assert current.exit_code == 0, current.output
    assert "base" in current.output
    assert "behind head" in current.output

    upgrade = runner.invoke(app, ["db", "upgrade"])
    assert upgrade.exit_code == 0, upgrade.output
    assert f"applied {head}: " in upgrade.output  # each revision as it is applied, with its message and time
    assert len(re.findall(r"^  applied \S+: .* \(\d+\.\d s\)$", upgrade.output, re.M)) == len(migrations.history())
    assert head in runner.invoke(app, ["db", "current"]).output
    assert "(head)" in runner.invoke(app, ["db", "current"]).output
    assert head in runner.invoke(app, ["db", "history"]).output
    check = runner.invoke(app, ["db", "check"])
    assert check.exit_code == 0, check.output

    one_step = runner.invoke(app, ["db", "downgrade", "-1"])  # as its help says: not taken for an option
    assert one_step.exit_code == 0, one_step.output
    assert f"reverted {head}: " in one_step.output
    assert "behind head" in runner.invoke(app, ["db", "current"]).output
    downgrade = runner.invoke(app, ["db", "downgrade", "base"])
    assert downgrade.exit_code == 0, downgrade.output
    assert "base" in runner.invoke(app, ["db", "current"]).output


def test_db_check_fails_when_models_have_no_migration(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sqlalchemy import Column, Integer, Table

    from tradestack.models import Base

    monkeypatch.setenv("TRADESTACK_DATABASE_URL", sqlite_url)
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    extra = Table("unmigrated_things", Base.metadata, Column("id", Integer, primary_key=True))
    try:
        result = runner.invoke(app, ["db", "check"])
    finally:
        Base.metadata.remove(extra)
    assert result.exit_code == 1
    assert "unmigrated_things" in result.output


async def test_db_upgrade_and_downgrade_name_who_holds_the_migration_lock_and_stop_after_lock_wait(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL, a `db upgrade` while another run migrates says who that is and, past --lock-wait, exits 1 having
    applied nothing; `db downgrade` too."""
    monkeypatch.setenv("TRADESTACK_DATABASE_URL", postgres_url)
    other = await asyncpg.connect(_asyncpg_dsn(postgres_url), server_settings={"application_name": "release-blue"})
    try:
        await other.execute(f"SELECT pg_advisory_lock({migrations.MIGRATION_LOCK_KEY})")
        pid = other.get_server_pid()
        upgrade = await asyncio.wait_for(asyncio.to_thread(runner.invoke, app, ["db", "upgrade", "--lock-wait", "0.5"]), 60)
        assert upgrade.exit_code == 1, upgrade.output
        output = " ".join(upgrade.output.split())
        assert f"for the migration lock, held by backend pid {pid} (release-blue" in output
        assert "nothing applied" in output
        assert f"pg_terminate_backend({pid})" in output
        assert "base" in (await asyncio.to_thread(runner.invoke, app, ["db", "current"])).output
        downgrade = await asyncio.wait_for(
            asyncio.to_thread(runner.invoke, app, ["db", "downgrade", "base", "--lock-wait", "0"]), 60
        )
        assert downgrade.exit_code == 1, downgrade.output
        assert f"backend pid {pid} (release-blue" in " ".join(downgrade.output.split())
        refused = await asyncio.to_thread(runner.invoke, app, ["db", "upgrade", "--lock-wait", "-1"])
        assert refused.exit_code == 2
        assert "--lock-wait" in refused.output
    finally:
        await other.close()


async def test_db_upgrade_says_what_a_waiting_revision_waits_for(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `db upgrade` whose index build waits for an older transaction (a backup's, say) names it, and how to go on."""
    monkeypatch.setenv("TRADESTACK_DATABASE_URL", postgres_url)
    monkeypatch.setattr(migrations, "MIGRATION_STEP_WATCH_SECONDS", 0.1)
    monkeypatch.setattr(migrations, "MIGRATION_STEP_WAIT_REPORT_SECONDS", 0.3)
    assert (await asyncio.to_thread(runner.invoke, app, ["db", "upgrade", "h27pg_a"])).exit_code == 0
    backup = await asyncpg.connect(_asyncpg_dsn(postgres_url), server_settings={"application_name": "nightly-backup"})
    try:
        await backup.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await backup.fetchval("SELECT count(*) FROM orders")
        upgrade = asyncio.ensure_future(asyncio.to_thread(runner.invoke, app, ["db", "upgrade", "h28rec_a"]))
        await asyncio.sleep(2.0)
        assert not upgrade.done()
        await backup.execute("COMMIT")
        result = await asyncio.wait_for(upgrade, 60)
    finally:
        await backup.close()
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "CREATE INDEX CONCURRENTLY ix_orders_working ON orders" in output
    assert f"waits for backend pid {backup.get_server_pid()} (nightly-backup" in output
    assert "in a transaction since" in output
    assert "pg_terminate_backend" in output
    assert "database at h28rec_a" in output
