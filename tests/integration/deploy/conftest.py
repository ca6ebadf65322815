"""A real `tradestack up` installation (SQLite, replayed market data) shared by the smoke, load-test and compose tests.

Its command is the development compose file's (deploy/compose/compose.yaml), with this machine's address, a free port
and the test's data directory in place of the container's."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..trading.processes import PASSWORD, Processes, cli_ok, free_port, process_env, wait_ready  # type: ignore[import-not-found]
from .composefile import DEVELOPMENT, tradestack_services  # type: ignore[import-not-found]


@dataclass
class Installation:
    base: str
    env: dict[str, str]
    cwd: Path
    email: str
    password: str
    processes: Processes


@pytest.fixture(scope="package")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    directory = tmp_path_factory.mktemp("up")
    env = process_env(directory)
    processes = Processes(directory)
    port = free_port()
    try:
        container = {"0.0.0.0": "127.0.0.1", "8000": str(port), "/var/lib/tradestack": str(directory / "data")}  # noqa: S104
        command = [container.get(arg, arg) for arg in tradestack_services(DEVELOPMENT)["tradestack"].command]
        assert command[0] == "up", command
        process = processes.start("up", command, env)
        base = f"http://127.0.0.1:{port}"
        asyncio.run(wait_ready(base, process, timeout=120))
        env["TRADESTACK_DATA_DIR"] = str(directory / "data")
        email = f"smoke-{uuid.uuid4().hex[:8]}@example.com"
        cli_ok(env, directory, "user", "create", email, "--role", "trader", "--password-stdin", stdin=PASSWORD + "\n")
        yield Installation(base, env, directory, email, PASSWORD, processes)
    finally:
        processes.close()
