"""The disaster-recovery runbook's SQLite procedure, run as written; and the retention policy."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tradestack.ops.backup import Backup, backups_to_keep, prune_backups

ROOT = Path(__file__).resolve().parents[3]
RUNBOOK = ROOT / "docs" / "runbooks" / "disaster-recovery.md"


def runbook_block(name: str) -> list[str]:
    text = RUNBOOK.read_text()
    match = re.search(rf"<!-- runbook-test: {name} -->\s*```bash\n(.*?)```", text, re.S)
    assert match is not None, f"no runbook-test block {name} in {RUNBOOK}"
    return [line for line in match.group(1).splitlines() if line.strip()]


def run_runbook(name: str, env: dict[str, str]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Migrate, create an admin, then run the runbook block `name` line by line as written.

    A line `$ command` must succeed and `! command` must fail. Checks what every restore procedure
    shows (a restore into a non-empty database refused, the backup verified, then restored) and
    returns the last result of each command.
    """

    def run(command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/bash", "-c", command], env=env, capture_output=True, text=True, input=stdin, timeout=240, check=False
        )

    assert run("tradestack db upgrade").returncode == 0
    created = run("tradestack user create ops@example.com --role admin --password-stdin", "correct horse battery staple\n")
    assert created.returncode == 0, created.stderr
    outputs: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    for line in runbook_block(name):
        expect, command = line[0], line[2:]
        result = run(command)
        outputs.append((command, result))
        if expect == "$":
            assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        else:
            assert expect == "!"
            assert result.returncode != 0, f"{command} should have failed: {result.stdout}"
    results = dict(outputs)  # the last run of each command
    refused = next(result for command, result in outputs if command == "tradestack backup restore latest")
    assert "not empty" in refused.stderr
    assert "verified" in results["tradestack backup verify latest"].stdout
    assert "restored" in results["tradestack backup restore latest"].stdout
    return results


@pytest.mark.slow
def test_the_sqlite_restore_procedure_of_the_runbook(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    # A data directory whose backups' paths are longer than the 80 columns the CLI lays text out in when its output is
    # not a terminal: the path it prints must still come out whole, to be copied.
    data_dir = tmp_path / "a-data-directory-whose-path-is-longer-than-a-line"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TRADESTACK_DATA_DIR": str(data_dir), "HOME": str(tmp_path)}
    results = run_runbook("sqlite-restore", env)
    audit = results["tradestack audit verify"].stdout
    backup = next((data_dir / "backups").glob("*/manifest.json")).parent
    assert len(str(backup)) > 80
    assert str(backup) in results["tradestack backup create"].stdout
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["fingerprint"]["tables"]["users"]["rows"] == 1
    assert manifest["fingerprint"]["audit_head"] in audit


def _backup(root: Path, when: datetime, *, verified: bool | None = None) -> Backup:
    path = root / when.strftime("%Y%m%dT%H%M%S")
    path.mkdir(parents=True)
    manifest = {"created_at": when.isoformat(), "files": []}
    (path / "manifest.json").write_text(json.dumps(manifest))
    verification = None if verified is None else {"ok": verified}
    if verification is not None:
        (path / "verification.json").write_text(json.dumps(verification))
    return Backup(path, manifest, verification)


def test_retention_keeps_daily_weekly_monthly_and_the_last_verified(tmp_path: Path) -> None:
    now = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    # Two backups a day for 120 days; only one old backup was ever verified.
    backups = [_backup(tmp_path, now - timedelta(hours=12 * i)) for i in range(240)]
    old_verified = _backup(tmp_path, now - timedelta(days=200, hours=1), verified=True)
    failed = _backup(tmp_path, now - timedelta(days=1, hours=3), verified=False)
    keep = backups_to_keep([*backups, old_verified, failed], daily=7, weekly=4, monthly=12)
    kept = sorted((b for b in [*backups, old_verified, failed] if b.id in keep), key=lambda b: b.created_at)
    days = {b.created_at.date() for b in kept}
    assert {(now - timedelta(days=d)).date() for d in range(7)} <= days  # the last 7 days
    assert old_verified.id in keep  # the last verified backup survives any policy
    assert backups[0].id in keep  # the newest
    assert len(keep) <= 1 + 1 + 7 + 4 + 12
    # Months: the newest backup of each month that has backups is kept (Aug..Dec 2026 here, plus the verified one).
    assert {b.created_at.strftime("%Y-%m") for b in kept} >= {"2026-08", "2026-09", "2026-10", "2026-11", "2026-12"}

    deleted = prune_backups(tmp_path, daily=7, weekly=4, monthly=12)
    remaining = {path.name for path in tmp_path.iterdir()}
    assert remaining == keep
    assert len(deleted) == 242 - len(keep)
    assert prune_backups(tmp_path, daily=0, weekly=0, monthly=0) != []
    assert {path.name for path in tmp_path.iterdir()} == {backups[0].id, old_verified.id}
