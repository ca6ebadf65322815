"""The disaster-recovery runbook's PostgreSQL procedure, run as written against a throwaway cluster
started from the installed PostgreSQL server binaries (on a free port of its own)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tradestack.ops.drill import Cluster, free_port, pg_bin

from .test_backup_cli import run_runbook


@pytest.fixture
def cluster() -> Iterator[tuple[Cluster, int]]:
    """A fresh PostgreSQL cluster (trust authentication, superuser postgres) with an empty `tradestack` database."""
    work = Path(tempfile.mkdtemp(prefix="tradestack-runbook-pg-"))  # pytest's tmp_path is private to root
    cluster = Cluster(work, work / "unused.conf")
    if cluster.as_postgres:
        shutil.chown(work, "postgres", "postgres")
    data = work / "data"
    cluster.run(pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
    port = free_port()
    cluster.start(data, port, "-c fsync=off")
    try:
        cluster.run(pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "tradestack")
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
    results = run_runbook("postgresql-restore", env)
    # progress on the long steps: each table dumped and checksummed, each table restored
    created_log = results["tradestack backup create"].stderr
    assert 'pg_dump: dumping contents of table "public.users"' in created_log
    assert "checksummed users: 1 rows" in created_log
    assert 'pg_restore: processing data for table "public.users"' in results["tradestack backup restore latest"].stderr
    manifest = json.loads(next((tmp_path / "var" / "backups").glob("*/manifest.json")).read_text())
    assert manifest["dialect"] == "postgresql"
    assert manifest["fingerprint"]["tables"]["users"]["rows"] == 1
    assert manifest["fingerprint"]["audit_head"] in results["tradestack audit verify"].stdout
    assert results['psql --dbname=tradestack --tuples-only --command="SELECT count(*) FROM users"'].stdout.strip() == "1"
