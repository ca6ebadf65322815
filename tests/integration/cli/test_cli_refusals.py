"""The command line refuses what it cannot do with exit code 2 and a message naming what to fix.

In-process (typer's runner), on a fresh SQLite database where one is needed; the happy paths of the
same commands run as real processes in tests/integration/marketdata and tests/integration/trading.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradestack import cli
from tradestack.cli import app
from tradestack.marketdata.datasets import DATASETS

pytestmark = pytest.mark.usefixtures("clean_env")
runner = CliRunner()
PASSWORD = "a-long-enough-password"


@pytest.fixture(autouse=True)
def wide_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables at full width: rich lays a table out in 80 columns when output is not a terminal. Messages need nothing:
    the consoles never break a line (`kit.terminal`), so each refusal below is read whole at rich's 80 columns."""
    monkeypatch.setattr(cli.console, "width", 300)


@pytest.fixture
def on_sqlite(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Commands talk to a fresh, migrated SQLite database under tmp_path."""
    monkeypatch.setenv("TRADESTACK_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("TRADESTACK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRADESTACK_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("TRADESTACK_ARGON2_MEMORY_KIB", "8192")
    upgraded = runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    return tmp_path


@pytest.mark.parametrize("process", ["marketdata", "engine"])
def test_production_processes_refuse_to_start_without_redis(process: str) -> None:
    result = runner.invoke(app, ["serve", process])
    assert result.exit_code == 2
    assert "TRADESTACK_REDIS_URL" in result.output
    assert "up" in result.output  # says where the embedded mode runs it instead


@pytest.mark.parametrize("shard", ["-1", "2"])
def test_engine_refuses_a_shard_outside_the_configured_range(shard: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTACK_REDIS_URL", "redis://127.0.0.1:1/0")  # refused before anything connects
    monkeypatch.setenv("TRADESTACK_ENGINE_SHARDS", "2")
    result = runner.invoke(app, ["serve", "engine", "--shard", shard])
    assert result.exit_code == 2
    assert "--shard must be between 0 and 1" in result.output
    assert "TRADESTACK_ENGINE_SHARDS=2" in result.output


def test_data_sources_lists_every_shipped_data_set_with_its_licence() -> None:
    result = runner.invoke(app, ["data", "sources"])
    assert result.exit_code == 0, result.output
    for dataset in DATASETS.values():
        assert dataset.name in result.output
        assert dataset.licence in result.output


def test_data_import_names_an_unknown_data_set_and_the_known_ones(on_sqlite: Path) -> None:
    result = runner.invoke(app, ["data", "import", "no-such-set"])
    assert result.exit_code == 2
    assert "no-such-set" in result.output
    assert next(iter(DATASETS)) in result.output


def test_data_export_refuses_a_bad_resolution_or_time(on_sqlite: Path) -> None:
    out = on_sqlite / "out.parquet"
    bad_resolution = runner.invoke(app, ["data", "export", "AAPL", "-o", str(out), "--resolution", "7m"])
    assert bad_resolution.exit_code == 2
    assert "7m" in bad_resolution.output
    bad_time = runner.invoke(app, ["data", "export", "AAPL", "-o", str(out), "--start", "yesterday"])
    assert bad_time.exit_code == 2
    assert "not an ISO 8601 time: 'yesterday'" in bad_time.output
    assert not out.exists()


def test_data_export_of_a_series_that_is_not_stored_is_refused(on_sqlite: Path) -> None:
    out = on_sqlite / "out.parquet"
    result = runner.invoke(app, ["data", "export", "AAPL", "-o", str(out), "--start", "2020-01-01"])
    assert result.exit_code == 2
    assert "AAPL" in result.output
    assert not out.exists()


def test_import_csv_refuses_a_missing_file_bad_options_and_incomplete_instruments(on_sqlite: Path) -> None:
    missing = runner.invoke(app, ["data", "import-csv", str(on_sqlite / "nope.csv")])
    assert missing.exit_code == 2
    assert "nope.csv: no such file" in missing.output

    bars = on_sqlite / "zzq.csv"
    bars.write_text("date,open,high,low,close,volume\n2024-01-02,10,11,9,10.5,100\n2024-01-03,10.5,12,10,11,100\n")
    bad_calendar = runner.invoke(app, ["data", "import-csv", str(bars), "--symbol", "ZZQ", "--calendar", "lunar"])
    assert bad_calendar.exit_code == 2
    assert "lunar" in bad_calendar.output

    incomplete = runner.invoke(app, ["data", "import-csv", str(bars), "--symbol", "ZZQ", "--kind", "equity"])
    assert incomplete.exit_code == 2
    for option in ("--venue", "--quote-currency", "--tick-size", "--lot-size"):
        assert option in incomplete.output

    describe = ["--kind", "equity", "--venue", "NASDAQ", "--quote-currency", "USD", "--lot-size", "1"]
    bad_tick = runner.invoke(app, ["data", "import-csv", str(bars), "--symbol", "ZZQ", *describe, "--tick-size", "cheap"])
    assert bad_tick.exit_code == 2
    assert "instrument options" in bad_tick.output


def test_user_create_asks_for_the_password_twice(on_sqlite: Path) -> None:
    created = runner.invoke(app, ["user", "create", "asked@example.com", "--role", "trader"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert created.exit_code == 0, created.output
    assert "created trader asked@example.com" in created.output
    listed = runner.invoke(app, ["user", "list"])
    assert "asked@example.com" in listed.output


def test_check_integrity_passes_on_fresh_books(on_sqlite: Path) -> None:
    result = runner.invoke(app, ["check", "integrity"])
    assert result.exit_code == 0, result.output
    assert "integrity check passed" in result.output
