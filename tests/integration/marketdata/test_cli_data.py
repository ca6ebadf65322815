"""`tradestack data ...` as a user runs it: the installed command in a subprocess, on a fresh SQLite database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tradestack.marketdata.datasets import DATASETS

pytestmark = pytest.mark.slow
TRADESTACK = str(Path(sys.executable).parent / "tradestack")
NEW_INSTRUMENT = ["--kind", "equity", "--venue", "NASDAQ", "--quote-currency", "USD", "--tick-size", "0.01", "--lot-size", "1"]
HEADER = "date,open,high,low,close,volume\n"


class Cli:
    """Runs the installed `tradestack` with a clean environment pointing at one database."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.cwd = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTACK_")}
        self.env.update(TRADESTACK_DATABASE_URL=database_url, TRADESTACK_DATA_DIR=str(data_dir), COLUMNS="200")

    def __call__(self, *args: str | Path, code: int = 0) -> tuple[str, str]:
        """Run; check the exit code; return (stdout, stderr) with whitespace runs folded to one space."""
        done = subprocess.run(
            [TRADESTACK, *map(str, args)], env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == code, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return " ".join(done.stdout.split()), " ".join(done.stderr.split())

    def series(self) -> dict[str, tuple[str, str, str, str]]:
        """`data list` as {symbol: (resolution, bars, first, last)}."""
        out, _ = self("data", "list")
        return {m[0]: m[1:] for m in re.findall(r"│ (\S+) +│ (\S+) +│ (\d+) +│ (\S+) +│ (\S+) +│", out)}


@pytest.fixture
def cli(sqlite_url: str, tmp_path: Path) -> Cli:
    run = Cli(sqlite_url, tmp_path)
    run("db", "upgrade")
    return run


def _csv(path: Path, *rows: str) -> Path:
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return path


def test_import_csv_of_a_new_instrument_then_again_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    bars = _csv(
        tmp_path / "zzq.csv",
        "2024-01-02,10,11,9,10.5,100",
        "2024-01-03,10.5,12,10,11,200",
        "2024-01-04,11,11.5,10.5,11.2,150",
    )
    out, _ = cli("data", "import-csv", bars, "--symbol", "ZZQ", *NEW_INSTRUMENT)
    assert "resolution inferred from the timestamps: 1d" in out
    assert "3 bars stored, 0 already present, 0 conflicting (kept as stored), 0 rows refused" in out
    assert cli.series() == {"ZZQ": ("1d", "3", "2024-01-02T00:00:00+00:00", "2024-01-04T00:00:00+00:00")}

    out, _ = cli("data", "import-csv", bars, "--symbol", "ZZQ", *NEW_INSTRUMENT)
    assert "0 bars stored, 3 already present, 0 conflicting (kept as stored), 0 rows refused" in out
    out, _ = cli("data", "import-csv", bars, "--symbol", "ZZQ")  # now a known instrument
    assert "0 bars stored, 3 already present" in out
    assert cli.series() == {"ZZQ": ("1d", "3", "2024-01-02T00:00:00+00:00", "2024-01-04T00:00:00+00:00")}


def test_import_csv_refuses_bad_rows_and_bad_files(cli: Cli, tmp_path: Path) -> None:
    inverted = _csv(
        tmp_path / "inverted.csv",
        "2024-02-01,10,11,9,10.5,100",
        "2024-02-02,10.5,9,12,11,200",  # high below low
        "2024-02-05,11,11.5,10.5,11.2,150",
    )
    out, _ = cli("data", "import-csv", inverted, "--symbol", "AAPL")
    assert "refused AAPL 1d: 2024-02-02T00:00:00+00:00: high 9 is below low 12" in out
    assert "2 bars stored, 0 already present, 0 conflicting (kept as stored), 1 rows refused" in out
    assert cli.series() == {"AAPL": ("1d", "2", "2024-02-01T00:00:00+00:00", "2024-02-05T00:00:00+00:00")}

    no_close = tmp_path / "no_close.csv"
    no_close.write_text("date,open,high,low,volume\n2024-03-01,10,11,9,100\n", encoding="utf-8")
    _, err = cli("data", "import-csv", no_close, "--symbol", "AAPL", code=2)
    assert "no_close.csv: missing column(s) close." in err

    not_a_number = _csv(tmp_path / "nan.csv", "2024-03-01,10,11,9,10.5,100", "2024-03-04,10.5,abc,10,11,200")
    _, err = cli("data", "import-csv", not_a_number, "--symbol", "AAPL", code=2)
    assert "nan.csv line 3: column 'high' is not a number: 'abc'" in err

    good = _csv(tmp_path / "good.csv", "2024-03-04,10,11,9,10.5,100", "2024-03-05,10.5,12,10,11,200")
    _, err = cli("data", "import-csv", good, "--symbol", "ZZUNKNOWN", code=2)
    assert "unknown symbol(s) ZZUNKNOWN" in err
    assert "describe a new instrument with --kind, --venue, --quote-currency, --tick-size and --lot-size" in err
    # Nothing of the refused files was stored.
    assert cli.series() == {"AAPL": ("1d", "2", "2024-02-01T00:00:00+00:00", "2024-02-05T00:00:00+00:00")}


def test_export_to_parquet_and_import_it_into_a_fresh_database(cli: Cli, tmp_path: Path) -> None:
    out, _ = cli("data", "import", "us-equities-daily")
    assert "0 rows refused" in out
    stored = cli.series()["AAPL"]
    exported = tmp_path / "aapl.parquet"
    out, _ = cli("data", "export", "AAPL", "--resolution", "1d", "--out", exported)
    assert f"{stored[1]} bars of AAPL 1d written to {exported}" in out
    assert pq.read_table(exported).num_rows == int(stored[1])
    _, err = cli("data", "export", "ZZNOPE", "--resolution", "1d", "--out", tmp_path / "nope.parquet", code=2)
    assert "unknown symbol 'ZZNOPE'" in err
    assert not (tmp_path / "nope.parquet").exists()

    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    fresh = Cli(f"sqlite+aiosqlite:///{(fresh_dir / 'fresh.db').as_posix()}", fresh_dir)
    fresh("db", "upgrade")
    out, _ = fresh("data", "import-parquet", exported)
    assert f"{stored[1]} bars stored, 0 already present, 0 conflicting (kept as stored), 0 rows refused" in out
    assert fresh.series() == {"AAPL": stored}
    # The round trip is exact: exporting again gives the same table.
    again = tmp_path / "again.parquet"
    fresh("data", "export", "AAPL", "--resolution", "1d", "--out", again)
    assert pq.read_table(again).equals(pq.read_table(exported))


def test_import_of_an_unknown_data_set_lists_the_valid_ones(cli: Cli) -> None:
    _, err = cli("data", "import", "nope", code=2)
    assert "unknown data set(s) nope" in err
    assert f"use {', '.join(DATASETS)}" in err
