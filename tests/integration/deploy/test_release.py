"""`tradestack deploy` against real daemons: PostgreSQL, Redis, two `serve api` colours, HAProxy (weights through its
runtime API) and Prometheus (analysis), with client load through HAProxy during the deploy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import redis
from sqlalchemy.engine import make_url

from tradestack.deploy.engine import listener_pids
from tradestack.kit.config import Settings

from ..trading.processes import TRADESTACK, run_cli  # type: ignore[import-not-found]
from .onehost import (  # type: ignore[import-not-found]
    HERE,
    ClientLoad,
    OneHost,
    ThreadedQuotePump,
    fresh_database,
    python_command,
    start_one_host,
)
from .runbook import localised, runbook_commands  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_host(tmp_path_factory: pytest.TempPathFactory, postgres_server: str, redis_server: str) -> Iterator[OneHost]:
    """One installation for the whole module (its tests run in file order: the first two begin with blue serving, the
    last is colour-agnostic). Quotes flow from a pump in a thread of its own."""
    directory = tmp_path_factory.mktemp("onehost")
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    host: OneHost | None = None
    pump: ThreadedQuotePump | None = None
    with fresh_database(postgres_server) as database_url:
        try:
            host = asyncio.run(start_one_host(directory, database_url, redis_server, namespace))
            host.database_url = database_url
            settings = Settings(
                database_url=database_url, redis_url=redis_server, redis_namespace=namespace, data_dir=directory / "pump"
            )
            pump = ThreadedQuotePump(settings)
            pump.start()
            yield host
        finally:
            # Servers first (the colours the deploy engine started run in sessions of their own), then the pump.
            if host is not None:
                host.processes.close()
                for colour in ("blue", "green"):
                    _kill_listener(host.ports[colour])
            if pump is not None:
                pump.stop()
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
async def test_bad_release_rolled_back_then_unready_green_never_gets_traffic(one_host: OneHost) -> None:
    """A green that answers errors is rolled back by analysis; then a green that never gets ready gets no request."""
    host = one_host
    # -- bad release (test-only wrapper: the real app whose quotes service fails every second call) --
    spec = host.write_spec(host.spec(version="v-bad", command=python_command(HERE / "bad_release.py")), "bad.yaml")
    load = ClientLoad(host.edge_url, certificate=host.edge_certificate)  # through nginx (TLS), then HAProxy
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
    assert await _audit_actions(host.database_url) == ["deploy.start", "deploy.rollback"]
    metrics = (host.directory / "deploy-state" / "deploy.prom").read_text()
    assert 'deploy_aborted_total{reason="analysis_failed"} 1.0' in metrics
    assert host.blue is not None
    assert host.blue.poll() is None  # blue still serving

    # -- a green whose /api/ready never answers 200 --
    # A release whose database is behind: no schema and no migration step in its spec, so it never answers ready (it
    # stops at start-up). With a migration step the expand-only upgrade would create the schema and the green would be
    # ready; this test used to pass only because the green took longer than the 5 s ready timeout to start.
    empty_db = f"sqlite+aiosqlite:///{host.directory / 'empty.db'}"
    spec_data = host.spec(version="v-unready", env={"TRADESTACK_DATABASE_URL": empty_db}, migrate=None)
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
async def test_kill_9_mid_deploy_then_rollback_then_good_release(one_host: OneHost) -> None:
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
    load = ClientLoad(host.edge_url, certificate=host.edge_certificate)  # through nginx (TLS), then HAProxy
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
    assert (await _audit_actions(host.database_url))[-2:] == ["deploy.start", "deploy.complete"]
    metrics = (host.directory / "deploy-state" / "deploy.prom").read_text()
    assert 'deploy_duration_seconds{outcome="completed"}' in metrics
    status = host.deploy("status", str(spec), "--json")
    assert json.loads(status.stdout)["haproxy_weights"] == {"blue": 0, "green": 100}
    # The edge: nginx terminates TLS and sets the security headers on what green answers.
    edge = httpx.get(f"{host.edge_url}/api/health", verify=ssl.create_default_context(cafile=host.edge_certificate))
    assert edge.status_code == 200
    assert edge.headers["strict-transport-security"].startswith("max-age=")
    for header in ("x-content-type-options", "x-frame-options", "content-security-policy", "strict-transport-security"):
        assert len(edge.headers.get_list(header)) == 1, (header, edge.headers.get_list(header))  # never doubled
    assert (edge.headers["x-content-type-options"], edge.headers["x-frame-options"]) == ("nosniff", "DENY")
    assert "script-src 'self'" in edge.headers["content-security-policy"]  # the application's, for its dashboard


async def _alembic_version(database_url: str) -> list[str]:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        return [row["version_num"] for row in await connection.fetch("SELECT version_num FROM alembic_version")]
    finally:
        await connection.close()


@pytest.mark.timeout(900)
async def test_gates_refuse_then_runbook_walk_then_abort_by_hand(one_host: OneHost) -> None:
    """Whichever colour serves: a release with a contract migration is refused before anything starts; one that fails
    smoke never gets traffic; the release-and-rollback runbook's commands run in order (`promote` resumes a pause,
    `promote --full` skips the rest, `rollback` in the bake period flips back); `abort` mid-way rolls back."""
    host = one_host
    old, new = host.serving()
    served_before = int(host.haproxy.stat(new)["stot"])
    version_before = await _alembic_version(host.database_url)

    # -- a release whose new migration drops what the serving version reads: refused, nothing started or applied --
    from .contract_release import release_migrations  # type: ignore[import-not-found]

    scripts, (contract,) = release_migrations(host.directory, "contract")
    spec_data = host.spec(
        version="v-contract", migrate=[*python_command(HERE / "contract_release.py"), "db", "upgrade", "--expand-only"],
        env={"TEST_MIGRATIONS_DIR": str(scripts)},
    )  # fmt: skip
    done = host.deploy("start", str(host.write_spec(spec_data, "contract.yaml")))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"migration refused: {contract} not expand-only" in " ".join((done.stdout + done.stderr).split())
    state = host.state()
    assert (state["phase"], state["reason"]) == ("rolled_back", "migration_refused")
    assert "started" not in [e["event"] for e in state["events"]]  # the new colour never ran
    assert await _alembic_version(host.database_url) == version_before
    assert host.haproxy.weights() == {old: 100, new: 0}

    # -- a release that fails its smoke test (the smoke user's password is wrong): never gets a request --
    spec_data = host.spec(version="v-smoke")
    spec_data["target"]["smoke"]["passwordEnv"] = "WRONG_SMOKE_PASSWORD"
    done = host.deploy("start", str(host.write_spec(spec_data, "smoke.yaml")), env={"WRONG_SMOKE_PASSWORD": "not it"})
    assert done.returncode == 1, done.stdout + done.stderr
    state = host.state()
    assert (state["phase"], state["reason"]) == ("rolled_back", "smoke_failed")
    assert "login" in next(e for e in state["events"] if e["event"] == "rollback")["detail"]
    assert _weights_events(state) == [{new: 0, old: 100}]
    assert int(host.haproxy.stat(new)["stot"]) == served_before
    assert not listener_pids(host.ports[new])  # stopped

    # -- the release-and-rollback runbook, walked line by line: `promote` resumes the pause at 10 %, `promote --full`
    # skips 75 % from the pause at 50 %, `rollback` in the bake period flips back to the old colour --
    spec_data = host.spec(version="v-runbook")
    spec_data["steps"] = [
        {"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 75}, {"setWeight": 100},
    ]  # fmt: skip
    spec_data["target"]["bake"] = "5m"
    spec = host.write_spec(spec_data, "runbook.yaml")
    here = {"deploy/release/release.yaml": str(spec), "https://trade.example.com": host.edge_url}
    skipped = {
        "deploy abort": "the abort scenario below",
        "loadtest": "staging only: tests/integration/deploy/test_loadtest.py runs it against `tradestack up`",
    }
    ran, deploy = [], None
    for line in runbook_commands():
        args = localised(line, here)
        name = " ".join(a for a in args[:2] if not a.startswith(("-", "/")))
        if name in skipped:
            continue
        ran.append(" ".join(line))
        if name == "deploy start":
            deploy = host.deploy_in_background(spec)
            await host.wait_paused_at(deploy, 1)
            assert host.haproxy.weights() == {new: 10, old: 90}
            continue
        done = run_cli({**host.env, "SSL_CERT_FILE": host.edge_certificate}, host.directory, *args)
        assert done.returncode == 0, f"tradestack {' '.join(args)}: {done.stdout}{done.stderr}"
        if args[:2] == ["deploy", "promote"] and "--full" not in args:
            await host.wait_paused_at(deploy, 3)  # type: ignore[arg-type]
            assert host.haproxy.weights() == {new: 50, old: 50}
        elif args[:2] == ["deploy", "promote"]:
            assert host.state()["phase"] == "baking"
            assert host.haproxy.weights() == {new: 100, old: 0}
        elif args[:2] == ["deploy", "rollback"]:
            assert deploy is not None
            assert deploy.wait(60) == 1
            assert host.haproxy.weights() == {old: 100, new: 0}
        elif args[:1] == ["smoke"]:
            assert json.loads(done.stdout)["ok"] is True
    assert len(ran) == len(runbook_commands()) - 2, ran
    state = host.state()
    assert (state["phase"], state["reason"]) == ("rolled_back", "rolled_back_in_bake")
    assert _weights_events(state) == [{new: 10, old: 90}, {new: 50, old: 50}, {new: 100, old: 0}, {new: 0, old: 100}]
    assert not listener_pids(host.ports[new])  # the new colour stopped; the old one served on throughout

    # -- abort by hand mid-way: the new colour back to 0, stopped; the deploy command exits 1 --
    spec_data = host.spec(version="v-aborted")
    spec_data["steps"] = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]
    spec = host.write_spec(spec_data, "aborted.yaml")
    deploy = host.deploy_in_background(spec)
    await host.wait_paused_at(deploy, 1)
    aborted = host.deploy("abort", str(spec))
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert deploy.wait(60) == 1
    state = host.state()
    assert (state["phase"], state["reason"]) == ("rolled_back", "aborted")
    assert _weights_events(state) == [{new: 10, old: 90}, {new: 0, old: 100}]
    assert host.haproxy.weights() == {old: 100, new: 0}
    assert not listener_pids(host.ports[new])
    nothing = host.deploy("promote", str(spec))
    assert nothing.returncode == 1
    assert "nothing to promote" in " ".join(nothing.stderr.split())
    actions = await _audit_actions(host.database_url)
    assert actions[-8:] == ["deploy.start", "deploy.rollback"] * 4
