"""Shared benchmark plumbing: start servers on free loopback ports, drive load, parse results.

Load comes from wrk when it is installed (`scripts/ensure-wrk.sh`), else from a small asyncio
HTTP/1.1 keep-alive client. Only 127.0.0.1 is ever targeted and every run is bounded in time.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    tool: str


PORT_RANGE_ENV = "TRADESTACK_BENCH_PORTS"
"""Optional ``LOW-HIGH`` range the benchmarks take their ports from (shared machines); else any free port."""

_next_port: list[int] = []


def free_port() -> int:
    """A free loopback port: from ``$TRADESTACK_BENCH_PORTS`` (``LOW-HIGH``) when set, else one the OS picks."""
    spec = os.environ.get(PORT_RANGE_ENV)
    if not spec:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port
    low, high = (int(part) for part in spec.split("-", 1))
    if not _next_port:
        _next_port.append(low + os.getpid() % max(1, high - low + 1))
    for _ in range(high - low + 1):
        candidate = _next_port[0]
        _next_port[0] = low if candidate >= high else candidate + 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    raise RuntimeError(f"no free port in {PORT_RANGE_ENV}={spec}")


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")


@contextmanager
def server(args: list[str], env: dict[str, str], ready_url: str, ready_timeout: float = 300) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process for the duration of the block; SIGTERM it afterwards (start-up is not timed).

    The process leads a session of its own: `session_cpu_seconds` counts it and its workers."""
    process = subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_ready(ready_url, process, ready_timeout)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def session_cpu_seconds(leader: int) -> float:
    """CPU time (user + system) used so far by the live processes of the session ``leader`` leads (Linux /proc).

    Less sensitive than throughput to other jobs on the machine: a request costs the same CPU when it waits longer.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (name) "; the name may hold spaces
        if int(fields[3]) == leader:  # session id
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, *, seconds: int, connections: int, threads: int, headers: dict[str, str] | None = None) -> LoadResult:
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    percentiles = {int(p): _ms(v, u) for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    return LoadResult(rps, percentiles[50], percentiles[99], total, errors, "wrk")


async def _python_load(host: str, port: int, path: str, seconds: float, connections: int, headers: dict[str, str]) -> LoadResult:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    ).encode()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if not head.startswith(b"HTTP/1.1 2"):
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return LoadResult(len(latencies) / elapsed, q[49] * 1000, q[98] * 1000, len(latencies), errors, "python-asyncio")


def load(url: str, *, seconds: int, connections: int, threads: int = 2, headers: dict[str, str] | None = None) -> LoadResult:
    """Drive `url` (loopback only) for `seconds` and return throughput and latency."""
    parsed = httpx.URL(url)
    if parsed.host not in {"127.0.0.1", "localhost", "::1"}:
        raise ValueError("benchmarks only target the loopback interface")
    if shutil.which("wrk"):
        return run_wrk(url, seconds=seconds, connections=connections, threads=threads, headers=headers)
    return asyncio.run(
        _python_load(parsed.host, parsed.port or 80, parsed.raw_path.decode(), seconds, connections, headers or {})
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTACK_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(extra)
    return env


def median_result(results: list[LoadResult]) -> LoadResult:
    """Medians of alternating rounds (requests and errors summed)."""
    return LoadResult(
        requests_per_second=statistics.median(r.requests_per_second for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        tool=results[0].tool,
    )
