"""The disaster-recovery runbook's PostgreSQL procedure, run as written against a throwaway cluster
started from the installed PostgreSQL server binaries (on a free port of its own)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tradestack.ops.drill import Cluster, _bin

from .test_backup_cli import runbook_block

PORTS = range(25400, 25500)  # this test's own range, clear of the shared servers


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


@pytest.fixture
def cluster() -> Iterator[tuple[Cluster, int]]:
    """A fresh PostgreSQL cluster (trust authentication, superuser postgres) with an empty `tradestack` database."""
    work = Path(tempfile.mkdtemp(prefix="tradestack-runbook-pg-"))  # pytest's tmp_path is private to root
    cluster = Cluster(work, work / "unused.conf")
    if cluster.as_postgres:
        shutil.chown(work, "postgres", "postgres")
    data = work / "data"
    cluster.run(_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
    port = _free_port()
    cluster.start(data, port, "-c fsync=off")
    try:
        cluster.run(_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "tradestack")
        yield cluster, port
    finally:
        cluster.stop(data)
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.slow
def test_the_postgresql_restore_procedure_of_the_runbook(tmp_path: Path, cluster: tuple[Cluster, int]) -> None:
    _, port = cluster
    bin_dir = Path(sys.executable).parent
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TRADESTACK_DATA_DIR": str(tmp_path / "var"),
        "TRADESTACK_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{port}/tradestack",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(port),
        "PGUSER": "postgres",
    }
    env |= {key: value for key, value in os.environ.items() if key in {"LANG", "LC_ALL"}}

    def run(command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/bash", "-c", command], env=env, capture_output=True, text=True, input=stdin, timeout=240, check=False
        )

    assert run("tradestack db upgrade").returncode == 0
    created = run("tradestack user create ops@example.com --role admin --password-stdin", "correct horse battery staple\n")
    assert created.returncode == 0, created.stderr
    outputs: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    for line in runbook_block("postgresql-restore"):
        expect, command = line[0], line[2:]
        result = run(command)
        outputs.append((command, result))
        if expect == "$":
            assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        else:
            assert expect == "!"
            assert result.returncode != 0, f"{command} should have failed: {result.stdout}"
    results = dict(outputs)
    refused = next(result for command, result in outputs if command == "tradestack backup restore latest")
    assert "not empty" in refused.stderr
    assert "verified" in results["tradestack backup verify latest"].stdout
    assert "restored" in results["tradestack backup restore latest"].stdout
    # progress on the long steps: each table dumped and checksummed, each table restored
    created_log = results["tradestack backup create"].stderr
    assert 'pg_dump: dumping contents of table "public.users"' in created_log
    assert "checksummed users: 1 rows" in created_log
    assert 'pg_restore: processing data for table "public.users"' in results["tradestack backup restore latest"].stderr
    manifest = json.loads(next((tmp_path / "var" / "backups").glob("*/manifest.json")).read_text())
    assert manifest["dialect"] == "postgresql"
    assert manifest["fingerprint"]["tables"]["users"]["rows"] == 1
    assert manifest["fingerprint"]["audit_head"] in results["tradestack audit verify"].stdout.replace("\n", "")
    assert results['psql --dbname=tradestack --tuples-only --command="SELECT count(*) FROM users"'].stdout.strip() == "1"
