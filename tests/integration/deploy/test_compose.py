"""The compose files' `tradestack` services run for real, here, without Docker: each service's command with its
environment (secrets as files, production settings), then its own healthcheck, on real PostgreSQL and Redis.

What differs from a container is only where things are: /run/secrets/* are files in the test's directory, the
database and Redis are the test's, the API listens on 127.0.0.1 and a free port (TRADESTACK_HOST/PORT, which the
healthcheck reads too). Every service of the image is covered: a new one fails `test_every_service_is_run_here`.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ..trading.processes import TRADESTACK, Processes, free_port, log_tail, process_env  # type: ignore[import-not-found]
from .composefile import DEVELOPMENT, PRODUCTION, Service, map_paths, tradestack_services  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow

# The production services in the order compose starts them (depends_on), and what this test starts.
PRODUCTION_ORDER = ["migrate", "engine", "marketdata", "api-blue"]
SAME_AS = {"api-green": "api-blue"}  # the other colour: the same command, environment and healthcheck


def _healthy(service: Service, env: dict[str, str], cwd: Path, timeout: float = 90) -> str:
    argv = service.healthcheck_argv(TRADESTACK, sys.executable)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode == 0:
            return done.stdout
        last = done.stdout + done.stderr
        time.sleep(1)
    raise AssertionError(f"{service.name}'s healthcheck never passed: {last[-2000:]}")


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory, postgres_server: str, redis_server: str) -> Iterator[dict[str, object]]:
    import asyncio

    import asyncpg
    from sqlalchemy.engine import make_url

    directory = tmp_path_factory.mktemp("compose")
    name = f"ts_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = make_url(postgres_server).set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(admin_dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    database_url = make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    secrets = directory / "secrets"
    secrets.mkdir()
    values = {
        "database_url": database_url,
        "database_replica_url": database_url,
        "redis_url": redis_server,
        "secret_key": "k" * 48,
        "encryption_key": base64.b64encode(os.urandom(32)).decode(),
    }
    for secret, value in values.items():
        (secrets / secret).write_text(value + "\n")
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    port = free_port()
    services = tradestack_services(PRODUCTION)
    processes = Processes(directory)

    def env_of(service: Service) -> dict[str, str]:
        env = process_env(directory, TRADESTACK_REDIS_NAMESPACE=namespace)
        env.update({key: map_paths(value, {"/run/secrets": str(secrets)}) for key, value in service.environment.items()})
        if "TRADESTACK_HOST" in env:
            env.update(TRADESTACK_HOST="127.0.0.1", TRADESTACK_PORT=str(port))
        return env

    try:
        migrate = services["migrate"]
        done = subprocess.run(
            [TRADESTACK, *migrate.command], env=env_of(migrate), cwd=directory, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        started = {}
        for service_name in PRODUCTION_ORDER[1:]:
            service = services[service_name]
            started[service_name] = processes.start(service_name, service.command, env_of(service))
        yield {"services": services, "env_of": env_of, "directory": directory, "port": port, "started": started}
    finally:
        processes.close()
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        with redis.Redis.from_url(redis_server) as client:
            keys = list(client.scan_iter(f"{namespace}:*"))
            if keys:
                client.delete(*keys)


def test_every_service_is_run_here() -> None:
    production = tradestack_services(PRODUCTION)
    assert set(production) == set(PRODUCTION_ORDER) | set(SAME_AS), "a new tradestack service: run it in this test"
    for other, same in SAME_AS.items():
        a, b = production[other], production[same]
        assert (a.command, a.environment, a.healthcheck) == (b.command, b.environment, b.healthcheck)
    assert set(tradestack_services(DEVELOPMENT)) == {"tradestack"}  # run by the `installation` fixture (conftest.py)


@pytest.mark.timeout(300)
def test_production_services_start_from_their_compose_command_and_pass_their_healthcheck(
    production: dict[str, object],
) -> None:
    services: dict[str, Service] = production["services"]  # type: ignore[assignment]
    env_of = production["env_of"]
    directory: Path = production["directory"]  # type: ignore[assignment]
    started: dict[str, subprocess.Popen[bytes]] = production["started"]  # type: ignore[assignment]
    for service_name in PRODUCTION_ORDER[1:]:
        service = services[service_name]
        process = started[service_name]
        try:
            out = _healthy(service, env_of(service), directory)  # type: ignore[operator]
        except AssertionError:
            raise AssertionError(f"{service_name}: {log_tail(process)}") from None
        assert process.poll() is None, log_tail(process)
        if service.command[:2] == ["serve", "marketdata"]:
            assert "marketdata: ok" in " ".join(out.split()), out
    # The colours read their secrets from the files: the API answers /api/ready (database, cache, schema, feeds).
    import httpx

    ready = httpx.get(f"http://127.0.0.1:{production['port']}/api/ready", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"]["ok"] is True


def test_development_healthcheck_passes_against_the_compose_command(installation: object) -> None:
    """The `installation` fixture runs compose.yaml's `up` command; its healthcheck passes against it."""
    service = tradestack_services(DEVELOPMENT)["tradestack"]
    inst = installation
    env = {**inst.env, "TRADESTACK_PORT": inst.base.rsplit(":", 1)[1]}  # type: ignore[attr-defined]
    _healthy(service, env, inst.cwd, timeout=30)  # type: ignore[attr-defined]


def test_a_failing_dependency_fails_the_worker_healthcheck(production: dict[str, object]) -> None:
    """`tradestack check dependencies` is no rubber stamp: with Redis unreachable it exits 1 naming the cache."""
    services: dict[str, Service] = production["services"]  # type: ignore[assignment]
    engine = services["engine"]
    env = production["env_of"](engine)  # type: ignore[operator]
    env.pop("TRADESTACK_REDIS_URL_FILE")
    env["TRADESTACK_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    done = subprocess.run(
        engine.healthcheck_argv(TRADESTACK, sys.executable), env=env, cwd=production["directory"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "dependencies failing: cache" in " ".join(done.stderr.split())
