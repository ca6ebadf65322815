"""Is the API still responsive while a burst of failed sign-ins hits it?

    .venv/bin/python benchmarks/login_burst.py [--attempts 300] [--concurrency 50]

Starts `tradestack up` (default argon2 parameters, default limits) on a free loopback port,
measures GET /api/health latency with the server idle, then again while `--attempts` failed
sign-ins for one account arrive `--concurrency` at a time. Prints p50/p99 for both, the ratio,
how many attempts were answered 401 (argon2 ran) and 429 (refused before hashing). Last line:
``RESULT name=login_burst ... p99_ms=<during the burst> idle_p99_ms=... ratio=<p99 during / p99 idle>``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from harness import BIN, clean_env, free_port, server


async def probe_latencies(client: httpx.AsyncClient, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        response = await client.get("/api/health")
        response.raise_for_status()
        out.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)


def percentiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=100)
    return q[49], q[98]


async def run(base: str, attempts: int, concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency + 5)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        idle: list[float] = []
        stop = asyncio.Event()
        probe = asyncio.create_task(probe_latencies(client, stop, idle))
        await asyncio.sleep(3)
        stop.set()
        await probe

        busy: list[float] = []
        stop = asyncio.Event()
        probe = asyncio.create_task(probe_latencies(client, stop, busy))
        gate = asyncio.Semaphore(concurrency)
        codes: dict[int, int] = {}

        async def attempt(i: int) -> None:
            async with gate:
                response = await client.post(
                    "/api/auth/login", json={"email": "victim@example.com", "password": f"guess-{i:06d}"}
                )
                codes[response.status_code] = codes.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(attempt(i) for i in range(attempts)))
        burst_seconds = time.perf_counter() - started
        stop.set()
        await probe

    idle_p50, idle_p99 = percentiles(idle)
    busy_p50, busy_p99 = percentiles(busy)
    print(f"{attempts} failed sign-ins for one account, {concurrency} concurrent, finished in {burst_seconds:.2f} s")
    print(f"answers: {dict(sorted(codes.items()))}  (401 = password checked, 429 = refused before hashing)")
    print(f"GET /api/health idle:        p50 {idle_p50:6.2f} ms  p99 {idle_p99:6.2f} ms  ({len(idle)} probes)")
    print(f"GET /api/health during burst: p50 {busy_p50:6.2f} ms  p99 {busy_p99:6.2f} ms  ({len(busy)} probes)")
    print(f"ratio during/idle: p50 {busy_p50 / idle_p50:.2f}, p99 {busy_p99 / idle_p99:.2f}")
    print(
        f"RESULT name=login_burst attempts={attempts} concurrency={concurrency} burst_s={burst_seconds:.2f} "
        f"answered_401={codes.get(401, 0)} answered_429={codes.get(429, 0)} p50_ms={busy_p50:.2f} p99_ms={busy_p99:.2f} "
        f"idle_p50_ms={idle_p50:.2f} idle_p99_ms={idle_p99:.2f} ratio={busy_p99 / idle_p99:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attempts", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tradestack-bench-") as tmp:
        port = free_port()
        env = clean_env(TRADESTACK_LOG_LEVEL="warning", TRADESTACK_MARKETDATA_FEEDS="[]")
        command = [str(BIN / "tradestack"), "up", "--port", str(port), "--data-dir", str(Path(tmp))]
        with server(command, env, f"http://127.0.0.1:{port}/api/ready"):
            asyncio.run(run(f"http://127.0.0.1:{port}", args.attempts, args.concurrency))


if __name__ == "__main__":
    main()
