"""Off-site copy of a backup to S3, against a local S3-compatible server (moto's, started on a free port)."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database
from tradestack.ops.backup import BackupError, create_backup

PORTS = range(25500, 25600)


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
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = _free_port()
    server = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        for _ in range(100):
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_a_backup_is_copied_to_s3_manifest_last_and_byte_exact(tmp_path: Path, s3_endpoint: str) -> None:
    settings = Settings(data_dir=tmp_path, backup_s3_endpoint_url=s3_endpoint)
    database = Database(settings)
    await migrations.upgrade(database.engine)
    await database.dispose()
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="offsite")
    heard: list[str] = []

    backup = await create_backup(settings, tmp_path / "backups", copy_to="s3://offsite/tradestack", progress=heard.append)

    keys = [item["Key"] for item in s3.list_objects_v2(Bucket="offsite")["Contents"]]
    prefix = f"tradestack/{backup.id}/"
    assert sorted(keys) == sorted(prefix + name for name in ("manifest.json", backup.manifest["files"][0]["name"]))
    uploads = [message for message in heard if message.startswith("uploaded ")]
    assert uploads[-1].startswith(f"uploaded s3://offsite/{prefix}manifest.json")  # the manifest goes last
    entry = backup.manifest["files"][0]
    body = s3.get_object(Bucket="offsite", Key=prefix + entry["name"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == entry["sha256"]

    with pytest.raises(BackupError, match="s3://missing-bucket/"):
        await create_backup(settings, tmp_path / "backups", copy_to="s3://missing-bucket")
