"""`tradestack deploy` against real daemons: PostgreSQL, Redis, two `serve api` colours, HAProxy (weights through its
runtime API) and Prometheus (analysis), with client load through HAProxy during the deploy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from sqlalchemy.engine import make_url

from tradestack.kit.config import Settings

from ..trading.processes import TRADESTACK, QuotePump  # type: ignore[import-not-found]
from .onehost import HERE, ClientLoad, OneHost, python_command, start_one_host  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow


@pytest.fixture
async def one_host(tmp_path: Path, postgres_url: str, redis_server: str) -> AsyncIterator[OneHost]:
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    host: OneHost | None = None
    pump: QuotePump | None = None
    try:
        host = await start_one_host(tmp_path, postgres_url, redis_server, namespace)
        settings = Settings(
            database_url=postgres_url, redis_url=redis_server, redis_namespace=namespace, data_dir=tmp_path / "pump"
        )
        pump = QuotePump(settings, "BTC-USD", 40000, 40040, every=0.2)
        await pump.__aenter__()
        yield host
    finally:
        # Servers first (the colours the deploy engine started run in sessions of their own), then the pump.
        if host is not None:
            host.processes.close()
            for colour in ("blue", "green"):
                _kill_listener(host.ports[colour])
        if pump is not None:
            await asyncio.wait_for(pump.__aexit__(None, None, None), 30)
        with redis.Redis.from_url(redis_server) as client:
            keys = list(client.scan_iter(f"{namespace}:*"))
            if keys:
                client.delete(*keys)


def _kill_listener(port: int) -> None:
    from tradestack.deploy.engine import listener_pids

    for pid in listener_pids(port):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)


def _state(host: OneHost) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((host.directory / "deploy-state" / "state.json").read_text())
    return state


def _weights_events(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k in {"blue", "green"}} for e in state["events"] if e["event"] == "weights"]


async def _audit_actions(postgres_url: str) -> list[str]:
    dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT action FROM audit_entries WHERE action LIKE 'deploy.%' ORDER BY id")
    finally:
        await connection.close()
    return [row["action"] for row in rows]


@pytest.mark.timeout(900)
async def test_bad_release_rolled_back_then_unready_green_never_gets_traffic(one_host: OneHost, postgres_url: str) -> None:
    """A green that answers errors is rolled back by analysis; then a green that never gets ready gets no request."""
    host = one_host
    # -- bad release (test-only wrapper: the real app whose quotes service fails every second call) --
    spec = host.write_spec(host.spec(version="v-bad", command=python_command(HERE / "bad_release.py")), "bad.yaml")
    load = ClientLoad(host.haproxy_url)
    await load.sign_in(host.env["TRADESTACK_SMOKE_EMAIL"])
    async with load.running():
        await asyncio.sleep(1)
        code, out = await host.deploy_async("start", str(spec))
    assert code == 1, out
    assert "analysis_failed" in out
    state = _state(host)
    assert state["phase"] == "rolled_back"
    assert state["reason"] == "analysis_failed"
    # Caught at the first step: green never got more than 10 %, and is back at 0 (read back), blue at 100.
    assert _weights_events(state) == [{"green": 10, "blue": 90}, {"green": 0, "blue": 100}]
    assert host.haproxy.weights() == {"blue": 100, "green": 0}
    assert state["rollback_seconds"] is not None
    assert state["bad_step_seconds"] >= state["rollback_seconds"]
    # Idempotent reads were retried on blue by HAProxy: no client saw the bad release's 500s.
    assert load.count("read", "failed") == 0, load.failures[:10]
    assert load.count("order", "failed") == 0, load.failures[:10]
    assert await _audit_actions(postgres_url) == ["deploy.start", "deploy.rollback"]
    metrics = (host.directory / "deploy-state" / "deploy.prom").read_text()
    assert 'deploy_aborted_total{reason="analysis_failed"} 1.0' in metrics
    assert host.blue is not None
    assert host.blue.poll() is None  # blue still serving

    # -- a green whose /api/ready never answers 200 --
    # A release whose database is behind (no schema): /api/ready stays 503.
    empty_db = f"sqlite+aiosqlite:///{host.directory / 'empty.db'}"
    spec_data = host.spec(version="v-unready", env={"TRADESTACK_DATABASE_URL": empty_db})
    spec_data["target"]["readyTimeout"] = "5s"
    spec = host.write_spec(spec_data, "unready.yaml")
    served_before = int(host.haproxy.stat("green")["stot"])
    done = host.deploy("start", str(spec))
    assert done.returncode == 1, done.stdout + done.stderr
    state = _state(host)
    assert state["reason"] == "not_ready"
    assert _weights_events(state) == [{"green": 0, "blue": 100}]
    assert int(host.haproxy.stat("green")["stot"]) == served_before  # not one request reached the unready green
    assert host.haproxy.weights() == {"blue": 100, "green": 0}


@pytest.mark.timeout(900)
async def test_kill_9_mid_deploy_then_rollback_then_good_release(one_host: OneHost, postgres_url: str) -> None:
    """kill -9 of the deploy command at 10 %: status shows it, rollback restores blue; then a good 10/50/100 release."""
    host = one_host
    spec_data = host.spec(version="v-killed")
    spec_data["steps"] = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]  # waits for promote at 10 %
    spec = host.write_spec(spec_data, "killed.yaml")
    deploy = subprocess.Popen(
        [TRADESTACK, "deploy", "start", str(spec)], env=host.env, cwd=host.directory,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        path = host.directory / "deploy-state" / "state.json"
        if path.exists() and _state(host)["phase"] == "paused":
            break
        assert deploy.poll() is None, deploy.stdout.read().decode() if deploy.stdout else ""
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the deploy never paused at 10 %")
    deploy.kill()  # kill -9 of the deploy command itself
    deploy.wait(10)
    assert host.haproxy.weights() == {"blue": 90, "green": 10}
    status = host.deploy("status", str(spec), "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert (shown["phase"], shown["step"], shown["weight"]) == ("paused", 1, 10)
    assert shown["haproxy_weights"] == {"blue": 90, "green": 10}
    again = host.deploy("start", str(spec))
    assert again.returncode != 0
    assert "whose command died" in " ".join(again.stderr.split())
    rolled = host.deploy("rollback", str(spec))
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert host.haproxy.weights() == {"blue": 100, "green": 0}
    assert _state(host)["phase"] == "rolled_back"
    history = host.deploy("history", str(spec))
    assert "v-killed" in history.stdout
    assert "rolled_back" in history.stdout

    # -- a good release through 10/50/100 under client load --
    spec = host.write_spec(host.spec(version="v-good"), "good.yaml")
    load = ClientLoad(host.haproxy_url)
    await load.sign_in(host.env["TRADESTACK_SMOKE_EMAIL"])
    async with load.running():
        await asyncio.sleep(1)
        code, out = await host.deploy_async("start", str(spec))
        await asyncio.sleep(1)  # keep loading after the switch: green alone now
    assert code == 0, out
    state = _state(host)
    assert state["phase"] == "completed", out
    assert (state["old"], state["new"]) == ("blue", "green")
    # Weights read back from HAProxy at each step match the spec (10/50/100).
    assert _weights_events(state) == [{"green": 10, "blue": 90}, {"green": 50, "blue": 50}, {"green": 100, "blue": 0}]
    assert host.haproxy.weights() == {"blue": 0, "green": 100}
    analyses = [e for e in state["events"] if e["event"] == "analysis"]
    assert [a["phase"] for a in analyses] == ["successful"] * 3, analyses
    # Zero failed client requests (reads keep-alive and new connections, order placements) through the whole deploy.
    assert load.failures == [], load.failures[:10]
    assert load.count("read keep-alive", "ok") > 50
    assert load.count("read new-connection", "ok") > 20
    assert load.count("order", "ok") > 10
    # Green really served: HAProxy counted its sessions. Blue was stopped with SIGTERM and exited cleanly.
    assert int(host.haproxy.stat("green")["stot"]) > 0
    assert host.blue is not None
    assert host.blue.wait(30) == 0
    assert (await _audit_actions(postgres_url))[-2:] == ["deploy.start", "deploy.complete"]
    metrics = (host.directory / "deploy-state" / "deploy.prom").read_text()
    assert 'deploy_duration_seconds{outcome="completed"}' in metrics
    status = host.deploy("status", str(spec), "--json")
    assert json.loads(status.stdout)["haproxy_weights"] == {"blue": 0, "green": 100}
