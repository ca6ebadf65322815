"""GET /api/health on Tradestack (2 uvicorn workers) against a bare FastAPI endpoint on the same settings.

    .venv/bin/python benchmarks/api_baseline.py [--seconds 8] [--rounds 3] [--connections 64]
                                                [--log-level info] [--database-url URL]

Both servers run uvicorn with 2 workers (httptools + uvloop, no uvicorn access log) and stay
up for the whole run; load rounds alternate between them and the medians are reported, so
a noisy neighbour hurts both alike. Tradestack keeps its own middleware: request id, one JSON
access-log line per request (at --log-level info), Prometheus metrics shared across workers.
Last line: ``RESULT name=api_baseline rps=... p99_ms=... baseline_rps=... ... ratio=<rps / baseline rps>``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path

from harness import BIN, LoadResult, clean_env, free_port, load, median_result, server

WORKERS = 2


def start_tradestack(stack: ExitStack, args: argparse.Namespace, data_dir: Path) -> str:
    database_url = args.database_url or f"sqlite+aiosqlite:///{data_dir / 'bench.db'}"
    env = clean_env(
        TRADESTACK_DATA_DIR=str(data_dir), TRADESTACK_DATABASE_URL=database_url, TRADESTACK_LOG_LEVEL=args.log_level,
        TRADESTACK_MARKETDATA_FEEDS="[]",  # no feed process here: readiness must not wait for one
    )  # fmt: skip
    subprocess.run([str(BIN / "tradestack"), "db", "upgrade"], env=env, check=True, capture_output=True)
    port = free_port()
    command = [str(BIN / "tradestack"), "serve", "api", "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)]
    stack.enter_context(server(command, env, f"http://127.0.0.1:{port}/api/ready"))
    return f"http://127.0.0.1:{port}/api/health"


def start_bare(stack: ExitStack) -> str:
    port = free_port()
    command = [
        str(BIN / "uvicorn"), "bare_app:app", "--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(WORKERS), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    stack.enter_context(server(command, clean_env(), f"http://127.0.0.1:{port}/api/health"))
    return f"http://127.0.0.1:{port}/api/health"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8, help="length of one load round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server, alternating")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--log-level", default="info", help="Tradestack log level (info logs every request)")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()

    results: dict[str, list[LoadResult]] = {"tradestack": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="tradestack-bench-") as tmp, ExitStack() as stack:
        urls = {"tradestack": start_tradestack(stack, args, Path(tmp)), "bare": start_bare(stack)}
        for url in urls.values():
            load(url, seconds=2, connections=args.connections)  # warm-up
        for _ in range(args.rounds):
            for name, url in urls.items():
                results[name].append(load(url, seconds=args.seconds, connections=args.connections))

    ours, bare = median_result(results["tradestack"]), median_result(results["bare"])
    print(
        f"GET /api/health, {WORKERS} uvicorn workers each, {args.connections} connections, "
        f"{args.rounds} x {args.seconds} s per server (alternating), load by {ours.tool}, Tradestack log level {args.log_level}"
    )
    print(f"{'median of rounds':18}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, result in (("tradestack", ours), ("bare fastapi", bare)):
        print(f"{name:18}{result.requests_per_second:10.0f}{result.p50_ms:9.2f}{result.p99_ms:9.2f}{result.errors:8d}")
    for name, rounds in results.items():
        print(f"  {name} rounds req/s: " + ", ".join(f"{r.requests_per_second:.0f}" for r in rounds))
    ratio = ours.requests_per_second / bare.requests_per_second
    print(f"ratio tradestack/bare: throughput {ratio:.2f}, p99 {ours.p99_ms / bare.p99_ms:.2f}")
    print(
        f"RESULT name=api_baseline rps={ours.requests_per_second:.0f} p50_ms={ours.p50_ms:.2f} p99_ms={ours.p99_ms:.2f} "
        f"errors={ours.errors} baseline_rps={bare.requests_per_second:.0f} baseline_p50_ms={bare.p50_ms:.2f} "
        f"baseline_p99_ms={bare.p99_ms:.2f} baseline_errors={bare.errors} connections={args.connections} ratio={ratio:.2f}"
    )


if __name__ == "__main__":
    main()
