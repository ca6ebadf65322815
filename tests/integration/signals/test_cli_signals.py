"""`tradestack data import-lob`, `signals train-lob --promote` and `signals show` as a user runs them (SQLite)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ...unit.signals.test_lob_import import _events

pytestmark = pytest.mark.slow
TRADESTACK = str(Path(sys.executable).parent / "tradestack")


def _run(env: dict[str, str], *args: str, code: int = 0) -> str:
    done = subprocess.run([TRADESTACK, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == code, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return " ".join((done.stdout + done.stderr).split())


def test_import_lob_then_train_promote_and_show(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTACK_")}
    env.update(TRADESTACK_DATA_DIR=str(tmp_path), COLUMNS="200")
    events = tmp_path / "events.csv"
    rows = _events(4_000, seed=9)
    rows.insert(10, {**rows[0], "order_id": "ghost", "action": "deleted"})
    with events.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _run(env, "db", "upgrade")
    imported = _run(env, "data", "import-lob", str(events), "--name", "test-book", "--depth", "5")
    assert "line 12: order ghost is deleted before it was created" in imported
    assert "(1 rows refused) saved to" in imported

    trained = _run(env, "signals", "train-lob", "--lob", "test-book", "--horizon", "5", "--promote")
    assert "majority baseline" in trained
    assert "OFI check" in trained
    version = trained.split("registered ")[1].split()[0]
    assert version.startswith("orderbook-")
    assert f"promoted {version}" in trained
    shown = _run(env, "signals", "show", version)
    assert "imported order book test-book" in shown
    assert "promoted" in shown


def test_the_first_start_trainer_clears_the_being_trained_marker_when_it_ends(tmp_path: Path) -> None:
    from tradestack.signals import artifacts

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTACK_")}
    env.update(TRADESTACK_DATA_DIR=str(tmp_path), COLUMNS="200")
    _run(env, "db", "upgrade")
    artifacts.mark_first_training(tmp_path, os.getpid())  # as `up` leaves it for the trainer it starts
    assert artifacts.first_training_in_progress(tmp_path)
    skipped = _run(env, "signals", "first-start")  # no equities stored: nothing to train on
    assert "first start: alpha model skipped" in skipped
    assert not artifacts.first_training_in_progress(tmp_path)
    assert not (tmp_path / "models" / artifacts.FIRST_TRAINING_FILE).exists()
