"""`tradestack loadtest` (Locust headless) against a real `tradestack up` on 127.0.0.1, for a few seconds."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ..trading.processes import run_cli  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow


def _loadtest(installation: object, out: Path, *extra: str) -> object:
    inst = installation
    return run_cli(
        inst.env, inst.cwd, "loadtest", "--base-url", inst.base, "--email", inst.email, "--password", inst.password,  # type: ignore[attr-defined]
        "--users", "5", "--spawn-rate", "5", "--duration", "6s", "--out", str(out), *extra,
    )  # fmt: skip


def test_loadtest_default_mix_meets_default_slos_and_writes_report(installation: object, tmp_path: Path) -> None:
    done = _loadtest(installation, tmp_path / "report")
    assert done.returncode == 0, done.stdout + done.stderr  # type: ignore[attr-defined]
    rows = list(csv.DictReader((tmp_path / "report" / "loadtest_stats.csv").open()))
    names = {row["Name"] for row in rows}
    assert {"quotes", "candles", "accounts", "order place", "order cancel", "first quote", "Aggregated"} <= names, names
    total = next(row for row in rows if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0
    assert (tmp_path / "report" / "loadtest.html").stat().st_size > 0
    assert "error_rate=1%" in done.stdout  # type: ignore[attr-defined]


def test_loadtest_impossible_slo_exits_1_naming_it(installation: object, tmp_path: Path) -> None:
    done = _loadtest(installation, tmp_path / "report", "--slo", "error_rate=1%,rps=100000")
    assert done.returncode == 1, done.stdout + done.stderr  # type: ignore[attr-defined]
    assert "SLO missed: rps=100000" in " ".join(done.stderr.split())  # type: ignore[attr-defined]


def test_loadtest_unreadable_slo_is_refused_naming_it(installation: object, tmp_path: Path) -> None:
    done = _loadtest(installation, tmp_path / "report", "--slo", "p97=1s")
    assert done.returncode == 2
    assert "unknown SLO 'p97'" in " ".join(done.stderr.split())  # type: ignore[attr-defined]
