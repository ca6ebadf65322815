"""`tradestack db upgrade --expand-only` (the deploy's migration step) against a real database, in a real process:
a release whose new migrations (an expand, then a contract) include one that drops what the running version reads is
refused with nothing applied, naming only the contract revision; allowed by name, both are applied."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ..trading.processes import cli_ok, process_env  # type: ignore[import-not-found]
from .contract_release import release_migrations  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent


def _release_cli(env: dict[str, str], cwd: Path, scripts: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HERE / "contract_release.py"), *args], env={**env, "TEST_MIGRATIONS_DIR": str(scripts)},
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _state(db: Path) -> tuple[str, set[str]]:
    with sqlite3.connect(db) as connection:
        version = connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        columns = {row[1] for row in connection.execute("PRAGMA table_info(users)")}
    return version, columns


def test_contract_migration_refused_with_nothing_applied_until_allowed_by_name(tmp_path: Path) -> None:
    db = tmp_path / "tradestack.db"
    env = process_env(tmp_path, TRADESTACK_DATABASE_URL=f"sqlite+aiosqlite:///{db}")
    cli_ok(env, tmp_path, "db", "upgrade")  # the running version's schema
    head, columns = _state(db)
    assert "must_change_password" in columns

    scripts, (expand, contract) = release_migrations(tmp_path, "expand", "contract")
    refused = _release_cli(env, tmp_path, scripts, "db", "upgrade", "--expand-only")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    err = " ".join(refused.stderr.split())
    assert f"{contract}: drops column must_change_password: ALTER TABLE users DROP COLUMN must_change_password" in err
    assert f"migration refused: {contract} not expand-only" in err  # the expand revision is not named
    assert expand not in err
    assert f"--allow-contract {contract}" in err
    assert _state(db) == (head, columns)  # nothing applied, not even the expand revision before it

    allowed = _release_cli(env, tmp_path, scripts, "db", "upgrade", "--expand-only", "--allow-contract", contract)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert f"expand-only: {expand}, {contract}" in allowed.stdout
    version, columns_after = _state(db)
    assert version == contract
    assert "nickname" in columns_after
    assert "must_change_password" not in columns_after


def test_a_plain_index_build_on_a_table_in_use_is_named_then_applied(tmp_path: Path) -> None:
    db = tmp_path / "tradestack.db"
    env = process_env(tmp_path, TRADESTACK_DATABASE_URL=f"sqlite+aiosqlite:///{db}")
    cli_ok(env, tmp_path, "db", "upgrade")
    scripts, (expand, index) = release_migrations(tmp_path, "expand", "index")
    done = _release_cli(env, tmp_path, scripts, "db", "upgrade", "--expand-only")
    assert done.returncode == 0, done.stdout + done.stderr
    err = " ".join(done.stderr.split())
    assert f"{index}: builds index ix_users_nickname with a plain CREATE INDEX: writes to users wait until it is built" in err
    assert "CREATE INDEX ix_users_nickname ON users (nickname)" in err
    assert expand not in err  # the column it adds holds nobody up
    assert f"expand-only: {expand}, {index}" in done.stdout
    assert _state(db)[0] == index
