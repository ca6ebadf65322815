"""Real server processes: startup, several workers sharing metrics, draining on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tradestack.kit.metrics import BATCHED

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent
TRADESTACK = Path(sys.executable).parent / "tradestack"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTACK_") or k.startswith("TRADESTACK_TEST_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # No market-data feed in these processes (tests/integration/marketdata covers them): ready must not wait for one.
    env.update(TRADESTACK_DATA_DIR=str(tmp_path / "var"), TRADESTACK_LOG_LEVEL="info", TRADESTACK_MARKETDATA_FEEDS="[]")
    env.update(extra)
    return env


def _wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            out = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"server exited with {process.returncode}:\n{out[-3000:]}")
        try:
            if httpx.get(f"{base}/api/ready", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base} not ready within {timeout} s")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        # A session of its own, so cleanup can kill the workers uvicorn spawned along with their parent.
        process = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def test_up_migrates_seeds_and_serves(tmp_path: Path, spawn: object) -> None:
    port = free_port()
    process = spawn([str(TRADESTACK), "up", "--port", str(port), "--data-dir", str(tmp_path / "data")], _env(tmp_path))  # type: ignore[operator]
    base = f"http://127.0.0.1:{port}"
    _wait_ready(base, process, timeout=120)  # first start imports the shipped history (as in the contract test)
    assert httpx.get(f"{base}/api/health").json() == {"status": "ok"}
    assert (tmp_path / "data" / "tradestack.db").is_file()
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def _pids_that_counted_requests(directory: Path) -> set[str]:
    pids = set()
    for path in directory.glob("counter_*.db"):
        keys = [key for key, *_ in MmapedDict.read_all_values_from_file(str(path))]
        if any('"api_requests"' in key for key in keys):
            pids.add(re.sub(r"\D", "", path.stem))
    return pids


def test_two_workers_share_one_metrics_view(tmp_path: Path, spawn: object, sqlite_url: str) -> None:
    env = _env(tmp_path, TRADESTACK_DATABASE_URL=sqlite_url)
    subprocess.run([str(TRADESTACK), "db", "upgrade"], env=env, check=True, capture_output=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prom")
    (tmp_path / "prom").mkdir()
    port = free_port()
    process = spawn([str(TRADESTACK), "serve", "api", "--port", str(port), "--workers", "2"], env)  # type: ignore[operator]
    base = f"http://127.0.0.1:{port}"
    _wait_ready(base, process)
    # Both workers served requests: each one's counter file holds api_requests samples. (Any process that
    # imports a label-less counter has a counter file, the supervisor included, so a file alone proves nothing.)
    # On a loaded machine one worker can take the first connections while the other still starts,
    # so keep sending (fresh connections) until both have served some, within a bound.
    requests = 0
    worker_pids: set[str] = set()
    while requests < 60 or (len(worker_pids) < 2 and requests < 3000):
        with httpx.Client() as fresh_connection:
            assert fresh_connection.get(f"{base}/api/health").status_code == 200
        requests += 1
        worker_pids = _pids_that_counted_requests(tmp_path / "prom")
    assert len(worker_pids) == 2, worker_pids
    # Each worker writes its request metrics within `BATCHED.seconds` (the one answering /metrics, at once).
    time.sleep(BATCHED.seconds + 0.5)
    text = httpx.get(f"{base}/metrics").text
    match = re.search(r'api_requests_total\{method="GET",route="/api/health",status_class="2xx"\} (\S+)', text)
    assert match, text[:2000]
    assert float(match.group(1)) == requests
    assert f'api_request_duration_seconds_count{{method="GET",route="/api/health",status_class="2xx"}} {float(requests)}' in text
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0

    # Every line the server wrote is one JSON object; each request is logged once with its context.
    output = process.stdout.read().decode() if process.stdout else ""
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    access = [r for r in records if r["event"] == "request" and r["route"] == "/api/health"]
    assert len(access) == requests
    assert all({"ts", "level", "event", "request_id", "route", "status", "duration_ms"} <= set(r) for r in access)
    assert len({r["request_id"] for r in access}) == requests
    assert all(r["status"] == 200 and r["ts"].endswith("Z") for r in access)


def _slow_app(tmp_path: Path, spawn: object, sqlite_url: str, **extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """run_slow_app.py (its /test/slow route) started on a fresh SQLite database and ready; the process and its base URL."""
    env = _env(
        tmp_path,
        TRADESTACK_DATABASE_URL=sqlite_url,
        PYTHONPATH=str(HERE),
        SLOW_APP_STARTED_MARKER=str(tmp_path / "slow-request-started"),
        **extra,
    )
    subprocess.run([str(TRADESTACK), "db", "upgrade"], env=env, check=True, capture_output=True)
    port = free_port()
    env["TRADESTACK_PORT"] = str(port)
    process = spawn([sys.executable, str(HERE / "run_slow_app.py")], env)  # type: ignore[operator]
    base = f"http://127.0.0.1:{port}"
    _wait_ready(base, process)
    return process, base


def _slow_request_in_flight(
    tmp_path: Path, base: str, seconds: int, timeout: float
) -> tuple[threading.Thread, dict[str, object]]:
    """A GET /test/slow?seconds=`seconds` on a thread of its own, returned once the server began serving it, with the
    dict its status and body (or the client's error) go into."""
    marker = tmp_path / "slow-request-started"
    result: dict[str, object] = {}

    def slow_call() -> None:
        try:
            response = httpx.get(f"{base}/test/slow", params={"seconds": seconds}, timeout=timeout)
            result["status"], result["body"] = response.status_code, response.json()
        except httpx.HTTPError as exc:  # pragma: no cover - the failure the tests exist to catch
            result["error"] = repr(exc)

    caller = threading.Thread(target=slow_call)
    caller.start()
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the slow request never reached the server"
    return caller, result


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_the_in_flight_request_finish(tmp_path: Path, spawn: object, sqlite_url: str, workers: int) -> None:
    process, base = _slow_app(tmp_path, spawn, sqlite_url, TRADESTACK_DRAIN_SECONDS="3", TRADESTACK_WORKERS=str(workers))
    caller, result = _slow_request_in_flight(tmp_path, base, seconds=4, timeout=30)
    process.send_signal(signal.SIGTERM)
    # With workers, uvicorn's supervisor forwards the signal on its next tick (up to ~0.5 s, longer on a
    # loaded machine): while the slow request is still in flight (the drain window) the probe must turn 503.
    ready = httpx.get(f"{base}/api/ready", timeout=5)
    while ready.status_code != 503 and caller.is_alive():
        time.sleep(0.05)
        ready = httpx.get(f"{base}/api/ready", timeout=5)
    assert ready.status_code == 503
    assert ready.json()["checks"]["draining"]["ok"] is False
    caller.join(30)
    assert result == {"status": 200, "body": {"slept": 4.0}}
    assert process.wait(30) == 0
    log = process.stdout.read().decode() if process.stdout else ""
    assert '"event":"drain_started"' in log


def _workers_of(supervisor: int) -> list[int]:
    """The worker processes uvicorn's supervisor `supervisor` spawned (multiprocessing's spawn children)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return sorted(int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes())


def test_a_worker_starved_longer_than_uvicorns_own_health_check_keeps_its_requests(
    tmp_path: Path, spawn: object, sqlite_url: str
) -> None:
    """Workers that cannot answer the supervisor's ping for 8 s (stopped here, as busy workers on a loaded machine are
    starved) are not killed: uvicorn's own 5 s health check would kill them and drop the requests they are serving;
    `worker_healthcheck_seconds` allows 30."""
    process, base = _slow_app(tmp_path, spawn, sqlite_url, TRADESTACK_WORKERS="2")
    workers = _workers_of(process.pid)
    assert len(workers) == 2, workers
    caller, result = _slow_request_in_flight(tmp_path, base, seconds=1, timeout=60)
    for worker in workers:  # whichever serves the request
        os.kill(worker, signal.SIGSTOP)
    try:
        time.sleep(8)  # the supervisor pings every 0.5 s: a 5 s health check gives up within this
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):  # killed by the supervisor: what this test exists to catch
                os.kill(worker, signal.SIGCONT)
    caller.join(60)
    assert result == {"status": 200, "body": {"slept": 1.0}}
    assert _workers_of(process.pid) == workers
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    log = process.stdout.read().decode() if process.stdout else ""
    assert "died" not in log
