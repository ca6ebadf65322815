"""`tradestack dr drill`: pgBackRest PITR on a throwaway cluster passes and prints measured RTO/RPO."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pgbackrest") is None and os.environ.get("CI") != "true", reason="needs pgbackrest")
def test_dr_drill_restores_to_a_point_in_time_and_measures(tmp_path: Path) -> None:
    tradestack = str(Path(sys.executable).parent / "tradestack")
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRADESTACK_")}
    env["TRADESTACK_DATA_DIR"] = str(tmp_path)
    command = [tradestack, "dr", "drill", "--traffic-seconds", "2", "--json"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=280, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith('{"rto_seconds"')))
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["rto_seconds"] > 0
    assert 0 <= report["rpo_seconds"] < 5  # heartbeats every 50 ms: the last one before the target is recovered
    assert report["heartbeats_recovered"] >= report["heartbeats_acknowledged_before_target"] > 0
    assert report["orders_recovered"] >= report["orders_acknowledged_before_target"] > 0


@pytest.mark.slow
def test_failover_to_the_synchronous_replica_loses_no_acknowledged_order(tmp_path: Path) -> None:
    tradestack = str(Path(sys.executable).parent / "tradestack")
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRADESTACK_")}
    env["TRADESTACK_DATA_DIR"] = str(tmp_path)
    command = [tradestack, "dr", "drill", "--replica", "--traffic-seconds", "3", "--json"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=280, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith('{"rto_seconds"')))
    assert report["ok"] is True, report["problems"]
    assert report["sync_state"] == "sync"
    assert report["acknowledged_lost"] == 0
    assert report["rpo_seconds"] == 0
    assert report["heartbeats_recovered"] >= report["heartbeats_acknowledged"] > 0
    assert report["orders_recovered"] >= report["orders_acknowledged"] > 0
