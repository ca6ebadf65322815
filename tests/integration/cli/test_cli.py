"""The command line: version, config show, db commands, refusal of default secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tradestack
from tradestack.cli import app
from tradestack.kit import migrations

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
    assert head in runner.invoke(app, ["db", "current"]).output
    assert "(head)" in runner.invoke(app, ["db", "current"]).output
    assert head in runner.invoke(app, ["db", "history"]).output
    check = runner.invoke(app, ["db", "check"])
    assert check.exit_code == 0, check.output

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
