"""/predict: (a) in-process single-prediction latency, (b) over HTTP with 2 API workers, across load.

    .venv/bin/python benchmarks/predict_api.py [--part a|b|both] [--rounds 5] [--calls 2000]
                                                [--seconds 8] [--connections 16] [--snapshots 5000]
                                                [--sweep 1,4,8,16] [--before DIR]

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
With ``--before DIR`` (e.g. ``git archive main | tar -x -C DIR``) the source tree DIR is served too,
from a data directory of its own (PYTHONPATH=DIR/src), as a third server.

Latency depends on the load: every server is measured at each connection count of ``--sweep``
(and at 1 and ``--connections``). One connection is the latency of a request that waits behind no
other (run half as long as the others, as before the sweep existed); at 16 closed-loop connections on
2 shared cores, mostly queueing. Every run also reports the server's CPU time per request (every
process of the server, from /proc): what a request costs, less disturbed than throughput by other
jobs on the machine. Each round goes through the points in order, the servers taking turns at
each point (their order rotating every round); figures are medians of the rounds. The capacity at
the goal is the highest median throughput among the points whose median p99 is below 5 ms (0 when
none is): a throughput the server sustained within the goal, only as fine as the sweep's points.

The RESULT line keeps the ``--connections`` figures (rps, p50_ms, p99_ms, cpu_us_per_request,
baseline_*), the one-connection ones, then capacity_rps_at_goal (and baseline_/before_), each
point's ``c<N>_rps``/``c<N>_p99_ms`` per server, ratio (our throughput over the bare app's at
``--connections``), goal_p99_ms=5 and connections. Goal: p99 < 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import BIN, ROOT, LoadResult, clean_env, free_port, median_result, server, session_cpu_seconds

from tradestack.signals import predictor

PASSWORD = "benchmark password 16"  # noqa: S105 - a throwaway user of a throwaway database
GOAL_P99_MS = 5.0


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
    if len(latencies) < 2:  # nothing answered in time (a worker still loading the model): no percentiles
        return LoadResult(len(latencies) / elapsed, math.inf, math.inf, len(latencies), errors, "python-asyncio")
    q = statistics.quantiles(sorted(latencies), n=100)
    return LoadResult(len(latencies) / elapsed, q[49] * 1000, q[98] * 1000, len(latencies), errors, "python-asyncio")


@dataclass
class _Tree:
    """One server of part (b) and its figures at every connection count of the sweep (one entry per round)."""

    name: str
    port: int
    body: bytes
    headers: dict[str, str]
    leader: int = 0
    loads: dict[int, list[LoadResult]] = field(default_factory=dict)
    cpu: dict[int, list[float]] = field(default_factory=dict)

    def run(self, seconds: float, connections: int) -> None:
        """One closed-loop run at `connections`, with the server's CPU per request (every process of its session)."""
        before = session_cpu_seconds(self.leader)
        result = asyncio.run(_post_load(self.port, self.body, self.headers, seconds, connections))
        self.loads.setdefault(connections, []).append(result)
        used = session_cpu_seconds(self.leader) - before
        self.cpu.setdefault(connections, []).append(used / result.requests * 1e6 if result.requests else math.inf)

    def median(self, connections: int) -> LoadResult:
        return median_result(self.loads[connections])

    def median_cpu(self, connections: int) -> float:
        return statistics.median(self.cpu[connections])

    def capacity(self, goal_ms: float) -> tuple[float, int]:
        """The highest median throughput among the sweep's points whose median p99 is below `goal_ms`, and its
        connection count; (0, 0) when none is."""
        within = [(self.median(c).requests_per_second, c) for c in self.loads if self.median(c).p99_ms < goal_ms]
        return max(within) if within else (0.0, 0)


def _tradestack_env(data_dir: str, source: Path | None) -> dict[str, str]:
    env = clean_env(
        TRADESTACK_DATA_DIR=data_dir, TRADESTACK_LOG_LEVEL="warning",
        TRADESTACK_RATE_LIMIT_PER_IP="100000000/minute", TRADESTACK_RATE_LIMIT_PER_PRINCIPAL="100000000/minute",
        TRADESTACK_RATE_LIMIT_ROUTES=json.dumps({"POST /predict": "100000000/minute"}),
        TRADESTACK_MARKETDATA_FEEDS="[]", TRADESTACK_ACCESS_TOKEN_TTL_SECONDS="3600",  # noqa: S106
    )  # fmt: skip
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    return env


def _prepare(data_dir: str, env: dict[str, str], snapshots: int) -> None:
    """A fresh data directory: schema, the benchmark's trader, a promoted order-book model."""
    tradestack = str(BIN / "tradestack")
    subprocess.run([tradestack, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run([tradestack, "user", "create", "bench@example.com", "--role", "trader", "--password-stdin"],
                   env=env, check=True, capture_output=True, input=PASSWORD.encode())  # fmt: skip
    subprocess.run([tradestack, "signals", "train-lob", "--snapshots", str(snapshots), "--promote"], env=env, check=True,
                   capture_output=True)  # fmt: skip


def _signed_in(port: int, body: bytes) -> dict[str, str]:
    """The bearer header of the benchmark's trader, once /predict has answered it 200."""
    # The first requests hash the password and load the model: seconds on a loaded machine.
    login = httpx.post(
        f"http://127.0.0.1:{port}/api/auth/login", json={"email": "bench@example.com", "password": PASSWORD}, timeout=120
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    check = httpx.post(
        f"http://127.0.0.1:{port}/predict", content=body, headers={**headers, "Content-Type": "application/json"}, timeout=120
    )
    if check.status_code != 200:
        raise RuntimeError(f"/predict answered {check.status_code}: {check.text}")
    return headers


def part_b(rounds: int, seconds: int, connections: int, snapshots: int, sweep: list[int], before: Path | None) -> None:
    points = sorted({1, *sweep, connections})
    body = json.dumps({"symbol": "BTC-USD", "book": _book(2), "previous": _book(1)}).encode()
    bare_body = json.dumps({"symbol": "BTC-USD", "book": _book(2)}).encode()
    sources: list[tuple[str, Path | None]] = [("tradestack", None)] + ([("before", before)] if before is not None else [])
    with contextlib.ExitStack() as stack:
        trees: list[_Tree] = []
        for name, source in sources:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-predict-{name}-"))
            env = _tradestack_env(data_dir, source)
            _prepare(data_dir, env, snapshots)
            port = free_port()
            api = [str(BIN / "tradestack"), "serve", "api", "--port", str(port), "--workers", "2"]
            # Start-up imports LightGBM, scikit-learn and the app: minutes, not seconds, when other jobs load the machine.
            process = stack.enter_context(server(api, env, f"http://127.0.0.1:{port}/api/health", ready_timeout=300))
            trees.append(_Tree(name, port, body, _signed_in(port, body), process.pid))
        bare_port = free_port()
        bare = [str(BIN / "uvicorn"), "bare_predict_app:app", "--app-dir", str(ROOT / "benchmarks"), "--port", str(bare_port),
                "--workers", "2", "--log-level", "warning", "--no-access-log"]  # fmt: skip
        bare_process = stack.enter_context(server(bare, clean_env(), f"http://127.0.0.1:{bare_port}/docs", ready_timeout=300))
        trees.append(_Tree("bare", bare_port, bare_body, {}, bare_process.pid))
        # Warm-up: each worker loads the model (LightGBM's import: seconds of CPU) on its first /predict; until
        # both workers answer without that pause (p99 under 50 ms for 2 s), at most 10 times.
        for tree in trees:
            for _ in range(10):
                warm = asyncio.run(_post_load(tree.port, tree.body, tree.headers, 2, connections))
                if warm.p99_ms < 50:
                    break
        for number in range(rounds):
            for point in points:
                # Alternated: the servers take turns at each point, in an order that rotates every round.
                for tree in trees[number % len(trees) :] + trees[: number % len(trees)]:
                    # One connection (a request that waits behind no other: no queueing) ran half as long before
                    # the sweep; the 16-connection run and every other point run `seconds`.
                    tree.run(seconds / 2 if point == 1 and point != connections else seconds, point)
            print(f"round {number + 1}: " + "; ".join(
                f"{tree.name} " + ", ".join(
                    f"{c}c {tree.loads[c][-1].requests_per_second:.0f} req/s p99 {tree.loads[c][-1].p99_ms:.2f} ms "
                    f"CPU {tree.cpu[c][-1]:.0f} us" for c in points)
                for tree in trees))  # fmt: skip
    ours, theirs = trees[0], trees[-1]
    print(f"{'connections':>11}  " + "  ".join(f"{t.name + ' req/s':>16} {t.name + ' p99 ms':>16} {'CPU us':>7}" for t in trees))
    for point in points:
        print(f"{point:>11}  " + "  ".join(
            f"{t.median(point).requests_per_second:>16.0f} {t.median(point).p99_ms:>16.2f} {t.median_cpu(point):>7.0f}"
            for t in trees))  # fmt: skip
    for tree in trees:
        rps, at = tree.capacity(GOAL_P99_MS)
        print(f"{tree.name}: highest throughput with p99 < {GOAL_P99_MS:g} ms: {rps:.0f} req/s ({at} connections)"
              if at else f"{tree.name}: p99 >= {GOAL_P99_MS:g} ms at every connection count measured")  # fmt: skip
    a, b = ours.median(connections), theirs.median(connections)
    a1, b1 = ours.median(1), theirs.median(1)
    sweep_fields = " ".join(
        f"{prefix}c{point}_rps={tree.median(point).requests_per_second:.0f} "
        f"{prefix}c{point}_p99_ms={tree.median(point).p99_ms:.2f}"
        for prefix, tree in zip(("", *(["before_"] if len(trees) == 3 else []), "baseline_"), trees, strict=True)
        for point in points
    )
    before_fields = ""
    if len(trees) == 3:
        old = trees[1]
        before_fields = (
            f"before_rps={old.median(connections).requests_per_second:.0f} before_p99_ms={old.median(connections).p99_ms:.2f} "
            f"before_cpu_us_per_request={old.median_cpu(connections):.0f} "
            f"before_capacity_rps_at_goal={old.capacity(GOAL_P99_MS)[0]:.0f} "
        )
    print(
        f"RESULT name=predict_api rps={a.requests_per_second:.0f} p50_ms={a.p50_ms:.2f} p99_ms={a.p99_ms:.2f} "
        f"errors={a.errors} cpu_us_per_request={ours.median_cpu(connections):.0f} "
        f"baseline_cpu_us_per_request={theirs.median_cpu(connections):.0f} "
        f"one_connection_p50_ms={a1.p50_ms:.2f} one_connection_p99_ms={a1.p99_ms:.2f} "
        f"baseline_rps={b.requests_per_second:.0f} baseline_p99_ms={b.p99_ms:.2f} "
        f"baseline_one_connection_p50_ms={b1.p50_ms:.2f} baseline_one_connection_p99_ms={b1.p99_ms:.2f} "
        f"capacity_rps_at_goal={ours.capacity(GOAL_P99_MS)[0]:.0f} "
        f"baseline_capacity_rps_at_goal={theirs.capacity(GOAL_P99_MS)[0]:.0f} "
        f"{before_fields}{sweep_fields} "
        f"ratio={a.requests_per_second / b.requests_per_second:.2f} goal_p99_ms={GOAL_P99_MS:g} connections={connections}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("a", "b", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--snapshots", type=int, default=5000)
    parser.add_argument("--sweep", default="1,4,8,16", help="connection counts of part (b), comma-separated")
    parser.add_argument("--before", type=Path, help="part (b): also serve this source tree (PYTHONPATH=DIR/src)")
    args = parser.parse_args()
    if args.part in ("a", "both"):
        part_a(args.rounds, args.calls, args.snapshots)
    if args.part in ("b", "both"):
        sweep = [int(part) for part in args.sweep.split(",") if part.strip()]
        part_b(min(args.rounds, 3), args.seconds, args.connections, args.snapshots, sweep, args.before)


if __name__ == "__main__":
    main()
