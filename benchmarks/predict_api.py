"""/predict: (a) in-process single-prediction latency, (b) over HTTP with 2 API workers.

    .venv/bin/python benchmarks/predict_api.py [--part a|b|both] [--rounds 5] [--calls 2000]
                                                [--seconds 8] [--connections 16] [--snapshots 5000]

(a) In process, one prediction from a provided 10-level book and its predecessor: the model path
(`predictor.features_of_snapshot` + the promoted model's `probability_up_one`, as /predict calls them) and the whole service call
(`PredictorService.predict_json`: book checks, features, model, metrics, answer JSON) on an embedded
runtime (SQLite, in-process cache), against a baseline in the same run: the same features and
logistic regression written as plain Python loops. Rounds alternate; medians of per-call
latencies. Goal: < 100 µs per prediction.

(b) Over HTTP: a fresh data directory (SQLite), ``tradestack db upgrade``, a trader from
``tradestack user create``, ``tradestack signals train-lob --snapshots N --promote``, then
``tradestack serve api --workers 2`` with the rate limits raised (the load generator is one user);
closed-loop keep-alive connections POST the provided book. Baseline in the same run:
benchmarks/bare_predict_app.py (bare FastAPI, 2 workers, same body validation, fixed answer).
Each round also runs one connection against each (half as long): the latency of a request that
waits behind no other, where 16 closed-loop connections on 2 shared cores mostly measure queueing.
Each 16-connection round also reports the servers' CPU time per request (every process of the
server, from /proc): what a request costs, less disturbed than throughput by other jobs on the machine.
Rounds alternate; medians. Goal: p99 < 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import BIN, ROOT, LoadResult, clean_env, free_port, median_result, server, session_cpu_seconds

from tradestack.signals import predictor

PASSWORD = "benchmark password 16"  # noqa: S105 - a throwaway user of a throwaway database


def _book(seed: int) -> dict[str, list[list[str]]]:
    rng = np.random.default_rng(seed)
    mid = 100.0 + rng.integers(-5, 5) * 0.01
    return {
        "bids": [[f"{mid - 0.01 * (i + 1):.2f}", str(int(rng.integers(1, 40)))] for i in range(10)],
        "asks": [[f"{mid + 0.01 * (i + 1):.2f}", str(int(rng.integers(1, 40)))] for i in range(10)],
    }


def _plain_prediction(model: predictor.LogisticModel, prev: list[list[float]], cur: list[list[float]]) -> float:
    bp, bs, ap, as_ = cur
    pbp, pbs, pap, pas = prev

    def imbalance(k: int) -> float:
        b = sum(bs[:k])
        a = sum(as_[:k])
        return (b - a) / (b + a)

    mid = (bp[0] + ap[0]) / 2
    spread = ap[0] - bp[0]
    micro = (ap[0] * bs[0] + bp[0] * as_[0]) / (bs[0] + as_[0])
    bid_slope = sum(bs) / (bp[0] - bp[-1])
    ask_slope = sum(as_) / (ap[-1] - ap[0])
    e = (bs[0] if bp[0] >= pbp[0] else 0.0) - (pbs[0] if bp[0] <= pbp[0] else 0.0)
    e = e - (as_[0] if ap[0] <= pap[0] else 0.0) + (pas[0] if ap[0] >= pap[0] else 0.0)
    x = [imbalance(1), imbalance(3), imbalance(5), imbalance(10), (micro - mid) / spread, spread / mid,
         (bid_slope - ask_slope) / (bid_slope + ask_slope), e / (bs[0] + as_[0])]  # fmt: skip
    z = model.intercept
    for value, mean, scale, coef in zip(x, model.mean, model.scale, model.coef, strict=True):
        z += (value - mean) / scale * coef
    return 1.0 / (1.0 + math.exp(-z))


def part_a(rounds: int, calls: int, snapshots: int) -> None:
    from tradestack.kit.config import Settings
    from tradestack.kit.runtime import Runtime
    from tradestack.signals.schemas import BookIn
    from tradestack.signals.service import PredictorService, SignalService

    async def run() -> None:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = Settings(data_dir=Path(data_dir), _env_file=None)  # type: ignore[call-arg]
            runtime = Runtime.open(settings)
            from tradestack.kit import migrations

            await migrations.upgrade(runtime.database.engine)
            trained = await PredictorService(runtime).train(snapshots=snapshots)
            await SignalService(runtime).promote(trained.model.version)
            service = PredictorService(runtime)
            model = predictor.model_from_text((trained.directory / "model.txt").read_text())
            prev_json, cur_json = _book(1), _book(2)
            arrays = [
                [[float(level[i]) for level in b[side]] for b in (prev_json, cur_json)]
                for side in ("bids", "asks")
                for i in (0, 1)
            ]
            prev_lists = [a[0] for a in arrays]
            cur_lists = [a[1] for a in arrays]
            book_in, prev_in = BookIn.model_validate(cur_json), BookIn.model_validate(prev_json)
            print(f"model kept by train-lob: {trained.evaluation.chosen}")
            # The baseline's logistic regression, fitted here whichever model train-lob kept.
            sample = predictor.simulate(3_000, seed=5)
            x, y = predictor.features(sample), predictor.labels(sample, predictor.DEFAULT_HORIZON)
            logistic = predictor.fit_logistic(x[~np.isnan(y)], y[~np.isnan(y)])
            medians: dict[str, list[float]] = {"model": [], "service": [], "plain": []}
            await service.predict("BTC-USD", book_in, prev_in)  # warm up: loads the model
            for _ in range(rounds):
                timings: dict[str, list[float]] = {name: [] for name in medians}
                for _ in range(calls):
                    start = time.perf_counter()
                    model.probability_up_one(predictor.features_of_snapshot(cur_lists, prev_lists))
                    timings["model"].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    await service.predict_json("BTC-USD", book_in, prev_in)
                    timings["service"].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    _plain_prediction(logistic, prev_lists, cur_lists)
                    timings["plain"].append(time.perf_counter() - start)
                for name, values in timings.items():
                    if values:
                        medians[name].append(statistics.median(values) * 1e6)
                print("round: " + ", ".join(f"{n} {m[-1]:.1f} us" for n, m in medians.items() if m))
            await runtime.close()
            model_us, service_us = statistics.median(medians["model"]), statistics.median(medians["service"])
            plain_us = statistics.median(medians["plain"])
            print(
                f"RESULT name=predict_inprocess model={trained.evaluation.chosen} model_us={model_us:.1f} "
                f"service_us={service_us:.1f} baseline_plain_python_us={plain_us:.1f} ratio={model_us / plain_us:.2f} goal_us=100"
            )

    asyncio.run(run())


async def _post_load(port: int, body: bytes, headers: dict[str, str], seconds: float, connections: int) -> LoadResult:
    lines = [
        "POST /predict HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    head = ("\r\n".join(lines + [f"{k}: {v}" for k, v in headers.items()]) + "\r\n\r\n").encode()
    request = head + body
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                answer = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", answer, re.I).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if not answer.startswith(b"HTTP/1.1 2"):
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(sorted(latencies), n=100)
    return LoadResult(len(latencies) / elapsed, q[49] * 1000, q[98] * 1000, len(latencies), errors, "python-asyncio")


def part_b(rounds: int, seconds: int, connections: int, snapshots: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        port, bare_port = free_port(), free_port()
        env = clean_env(
            TRADESTACK_DATA_DIR=data_dir, TRADESTACK_LOG_LEVEL="warning",
            TRADESTACK_RATE_LIMIT_PER_IP="100000000/minute", TRADESTACK_RATE_LIMIT_PER_PRINCIPAL="100000000/minute",
            TRADESTACK_RATE_LIMIT_ROUTES=json.dumps({"POST /predict": "100000000/minute"}),
            TRADESTACK_MARKETDATA_FEEDS="[]", TRADESTACK_ACCESS_TOKEN_TTL_SECONDS="3600",  # noqa: S106
        )  # fmt: skip
        tradestack = str(BIN / "tradestack")
        subprocess.run([tradestack, "db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run([tradestack, "user", "create", "bench@example.com", "--role", "trader", "--password-stdin"],
                       env=env, check=True, capture_output=True, input=PASSWORD.encode())  # fmt: skip
        subprocess.run([tradestack, "signals", "train-lob", "--snapshots", str(snapshots), "--promote"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        body = json.dumps({"symbol": "BTC-USD", "book": _book(2), "previous": _book(1)}).encode()
        bare_body = json.dumps({"symbol": "BTC-USD", "book": _book(2)}).encode()
        api = [tradestack, "serve", "api", "--port", str(port), "--workers", "2"]
        bare = [str(BIN / "uvicorn"), "bare_predict_app:app", "--app-dir", str(ROOT / "benchmarks"), "--port", str(bare_port),
                "--workers", "2", "--log-level", "warning", "--no-access-log"]  # fmt: skip
        # Start-up imports LightGBM, scikit-learn and the app: minutes, not seconds, when other jobs load the machine.
        with (
            server(api, env, f"http://127.0.0.1:{port}/api/health", ready_timeout=300) as api_process,
            server(bare, env, f"http://127.0.0.1:{bare_port}/docs", ready_timeout=300) as bare_process,
        ):
            # The first requests hash the password and load the model: seconds on a loaded machine.
            login = httpx.post(
                f"http://127.0.0.1:{port}/api/auth/login",
                json={"email": "bench@example.com", "password": PASSWORD},
                timeout=120,
            )
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            check = httpx.post(
                f"http://127.0.0.1:{port}/predict",
                content=body,
                headers={**headers, "Content-Type": "application/json"},
                timeout=120,
            )
            if check.status_code != 200:
                raise RuntimeError(f"/predict answered {check.status_code}: {check.text}")
            # Warm-up: each worker loads the model (LightGBM's import: seconds of CPU) on its first /predict.
            asyncio.run(_post_load(port, body, headers, 3, connections))
            asyncio.run(_post_load(bare_port, bare_body, {}, 3, connections))
            ours: list[LoadResult] = []
            theirs: list[LoadResult] = []
            ours_one: list[LoadResult] = []
            theirs_one: list[LoadResult] = []
            # Server CPU per request (both workers and the supervisor): what a request costs, whatever else runs.
            ours_cpu: list[float] = []
            theirs_cpu: list[float] = []

            def load(into: list[LoadResult], cpu: list[float], leader: int, *args: object) -> None:
                before = session_cpu_seconds(leader)
                into.append(asyncio.run(_post_load(*args)))  # type: ignore[arg-type]
                cpu.append((session_cpu_seconds(leader) - before) / into[-1].requests * 1e6)

            for _ in range(rounds):
                load(ours, ours_cpu, api_process.pid, port, body, headers, seconds, connections)
                load(theirs, theirs_cpu, bare_process.pid, bare_port, bare_body, {}, seconds, connections)
                # One connection: the latency of a request that waits behind no other (no queueing).
                ours_one.append(asyncio.run(_post_load(port, body, headers, seconds / 2, 1)))
                theirs_one.append(asyncio.run(_post_load(bare_port, bare_body, {}, seconds / 2, 1)))
                print(f"round: tradestack {ours[-1].requests_per_second:.0f} req/s p99 {ours[-1].p99_ms:.2f} ms "
                      f"CPU {ours_cpu[-1]:.0f} us/request "
                      f"(1 connection: p50 {ours_one[-1].p50_ms:.2f} p99 {ours_one[-1].p99_ms:.2f} ms); "
                      f"bare {theirs[-1].requests_per_second:.0f} req/s p99 {theirs[-1].p99_ms:.2f} ms "
                      f"CPU {theirs_cpu[-1]:.0f} us/request "
                      f"(1 connection: p50 {theirs_one[-1].p50_ms:.2f} p99 {theirs_one[-1].p99_ms:.2f} ms)")  # fmt: skip
        a, b = median_result(ours), median_result(theirs)
        a1, b1 = median_result(ours_one), median_result(theirs_one)
        print(
            f"RESULT name=predict_api rps={a.requests_per_second:.0f} p50_ms={a.p50_ms:.2f} p99_ms={a.p99_ms:.2f} "
            f"errors={a.errors} cpu_us_per_request={statistics.median(ours_cpu):.0f} "
            f"baseline_cpu_us_per_request={statistics.median(theirs_cpu):.0f} "
            f"one_connection_p50_ms={a1.p50_ms:.2f} one_connection_p99_ms={a1.p99_ms:.2f} "
            f"baseline_rps={b.requests_per_second:.0f} baseline_p99_ms={b.p99_ms:.2f} "
            f"baseline_one_connection_p50_ms={b1.p50_ms:.2f} baseline_one_connection_p99_ms={b1.p99_ms:.2f} "
            f"ratio={a.requests_per_second / b.requests_per_second:.2f} goal_p99_ms=5 connections={connections}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("a", "b", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--snapshots", type=int, default=5000)
    args = parser.parse_args()
    if args.part in ("a", "both"):
        part_a(args.rounds, args.calls, args.snapshots)
    if args.part in ("b", "both"):
        part_b(min(args.rounds, 3), args.seconds, args.connections, args.snapshots)


if __name__ == "__main__":
    main()
