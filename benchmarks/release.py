"""A full canary under client load on this machine, with real PostgreSQL, Redis, HAProxy and Prometheus.

Runs the release tests' one-host installation (tests/integration/deploy/onehost.py, test profile intervals), then:

1. a good release 10/50/100 under load: total deploy time and the client requests that failed;
2. a bad release (the test-only wrapper that fails every second quotes call): time from the first failed
   measurement, and from the weight change that exposed it, to the new colour's weight 0; failed client requests.

Baseline, measured in the same run: the time from starting a plain `serve api` colour to ready, i.e. a restart without
any release procedure. ``ratio`` = good deploy time / that baseline.

Needs PostgreSQL (TRADESTACK_TEST_POSTGRES_URL, default postgres@127.0.0.1:5432) and Redis (TRADESTACK_TEST_REDIS_URL).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import types
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
# The repository's tests as a package of their own (an installed package may already be called `tests`).
_tests = types.ModuleType("repo_tests")
_tests.__path__ = [str(ROOT / "tests")]
sys.modules["repo_tests"] = _tests

from repo_tests.integration.deploy.onehost import HERE, ClientLoad, python_command, start_one_host  # noqa: E402
from repo_tests.integration.trading.processes import QuotePump, free_port, wait_ready  # noqa: E402

from tradestack.kit.config import Settings  # noqa: E402

POSTGRES = os.environ.get("TRADESTACK_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("TRADESTACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _deploy_under_load(host, spec_path: Path) -> tuple[int, dict, ClientLoad, float]:  # type: ignore[no-untyped-def]
    load = ClientLoad(host.haproxy_url)
    await load.sign_in(host.env["TRADESTACK_SMOKE_EMAIL"])
    async with load.running():
        await asyncio.sleep(1)
        started = time.monotonic()
        code, _ = await host.deploy_async("start", str(spec_path))
        elapsed = time.monotonic() - started
        await asyncio.sleep(1)
    state = json.loads((host.directory / "deploy-state" / "state.json").read_text())
    return code, state, load, elapsed


async def main() -> None:
    name = f"ts_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_dsn(POSTGRES))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    database = make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    host = None
    with tempfile.TemporaryDirectory() as directory:
        try:
            host = await start_one_host(Path(directory), database, REDIS, namespace)
            # Baseline: a plain colour start to ready (no release procedure), on a spare port.
            port = free_port()
            started = time.monotonic()
            plain = host.processes.start("baseline", ["serve", "api", "--port", str(port)], host.env)
            await wait_ready(f"http://127.0.0.1:{port}", plain)
            baseline = time.monotonic() - started
            host.processes.kill(plain)
            settings = Settings(database_url=database, redis_url=REDIS, redis_namespace=namespace, data_dir=Path(directory) / "p")
            async with QuotePump(settings, "BTC-USD", 40000, 40040, every=0.2):
                bad_spec = host.write_spec(
                    host.spec(version="bench-bad", command=python_command(HERE / "bad_release.py")), "bad.yaml"
                )
                bad_code, bad, bad_load, _ = await _deploy_under_load(host, bad_spec)
                good_spec = host.write_spec(host.spec(version="bench-good"), "good.yaml")
                good_code, good, good_load, good_elapsed = await _deploy_under_load(host, good_spec)
        finally:
            if host is not None:
                host.processes.close()
                from tradestack.deploy.engine import listener_pids

                for colour in ("blue", "green"):
                    for pid in listener_pids(host.ports[colour]):
                        os.kill(pid, 9)
            admin = await asyncpg.connect(_dsn(POSTGRES))
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    print(f"baseline: plain colour start to ready {baseline:.2f} s")
    print(f"good release: exit {good_code}, phase {good['phase']}, deploy time {good_elapsed:.2f} s "
          f"(engine: {good['duration_seconds']} s), client outcomes {dict(good_load.outcomes)}")  # fmt: skip
    print(f"bad release: exit {bad_code}, phase {bad['phase']} ({bad['reason']}), weight 0 after "
          f"{bad['rollback_seconds']} s from the first failed measurement, {bad['bad_step_seconds']} s from the bad step; "
          f"client outcomes {dict(bad_load.outcomes)}")  # fmt: skip
    failed_good = good_load.count("", "failed")
    failed_bad = bad_load.count("", "failed")
    print(
        f"RESULT name=release deploy_seconds={good_elapsed:.2f} rollback_seconds={bad['rollback_seconds']} "
        f"bad_step_to_zero_seconds={bad['bad_step_seconds']} failed_requests_good={failed_good} "
        f"failed_requests_bad={failed_bad} baseline_ready_seconds={baseline:.2f} ratio={good_elapsed / baseline:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
