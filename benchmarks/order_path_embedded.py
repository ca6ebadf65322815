"""Order path, embedded: POST /api/orders on `tradestack up` (SQLite, one process) against a bare aiosqlite app.

    .venv/bin/python benchmarks/order_path_embedded.py [--seconds 6] [--rounds 3] [--connections 1,16]
        [--resting 1000] [--resting-orders 200] [--before DIR]

`tradestack up --no-demo-data` (SQLite in a temporary data directory, the engine and market data in
process, BTC-USD only) is driven with the load of benchmarks/order_path.py: gtc limit buys of
0.001 BTC-USD at a quarter of the mark (accepted, resting, never filling), spread round-robin over
--accounts fresh paper accounts, over 1 (sequential) and 16 keep-alive connections, each sending
its next order as soon as the previous one is answered. Rate limits and the order-rate check are
raised, everything else runs as a user gets it (auth, risk checks, audit, engine message, publish).

Baseline in the same run: benchmarks/bare_orders_sqlite_app.py, one FastAPI route writing one row
in its own transaction through one aiosqlite connection with the same pragmas. Rounds alternate
between the servers; medians are reported, with ratios to the bare app (p50 for sequential,
orders/s for concurrent). `--before DIR` adds a third server: `tradestack up` run from the source
tree DIR (e.g. ``git worktree``/``git archive`` of an older commit; PYTHONPATH=DIR/src), so a
change is measured against what it replaces in the same run.

Resting orders: one account gets --resting gtc limit buys first (untimed), another none; then
--resting-orders sequential orders on each, alternating in blocks of 20: the per-order p50 with
that many open orders on the account, over the p50 with none.

CPU seconds of each server's process tree are read from /proc around every round (ms per
acknowledged order). Every acknowledged order is checked afterwards in the server's SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from decimal import ROUND_DOWN
from pathlib import Path

import httpx
from harness import BIN, ROOT, clean_env, free_port, wait_ready
from order_path import (
    BODY,
    PRICE_FRACTION,
    SYMBOL,
    TICK,
    UNLIMITED,
    Processes,
    RoundResult,
    cpu_table,
    current_mark,
    one_round,
    open_accounts,
    run_async,
    summary_line,
)
from quotes_api import sign_in

DEPOSIT = "1000000"


@dataclass
class Server:
    name: str
    port: int
    pid: int
    headers: dict[str, str]
    limit_price: str
    database: Path | None  # the SQLite file holding `orders` (None: the bare app's own table)


@contextmanager
def process(args: list[str], env: dict[str, str], cwd: Path, ready_url: str) -> Iterator[int]:
    """A server in its own session until the block ends (SIGTERM, then SIGKILL); yields its pid."""
    child = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(ready_url, child, timeout=120)
        yield child.pid
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(10)


def tradestack_up(stack: ExitStack, name: str, data_dir: Path, source: Path | None) -> Server:
    """`tradestack up` on a fresh SQLite data directory (from `source`/src when given), a trader signed in."""
    env = clean_env(
        TRADESTACK_DATA_DIR=str(data_dir),
        TRADESTACK_LOG_LEVEL="warning",
        TRADESTACK_MARKETDATA_SYMBOLS=f'["{SYMBOL}"]',
        TRADESTACK_RATE_LIMIT_PER_IP=UNLIMITED,
        TRADESTACK_RATE_LIMIT_PER_PRINCIPAL=UNLIMITED,
        TRADESTACK_RISK_MAX_ORDERS_PER_MINUTE="100000000",
        TRADESTACK_ACCESS_TOKEN_TTL_SECONDS=str(86_400),
    )
    cwd = ROOT
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
        cwd = source
    tradestack = str(BIN / "tradestack")
    for command in (["db", "upgrade"], ["user", "create", f"bench-{name}@example.com", "--role", "trader", "--password-stdin"]):
        done = subprocess.run(
            [tradestack, *command], env=env, cwd=cwd, input=PASSWORD + "\n", capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise RuntimeError(f"{name}: tradestack {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    port = free_port()
    command = [tradestack, "up", "--port", str(port), "--data-dir", str(data_dir), "--no-demo-data"]
    base = f"http://127.0.0.1:{port}"
    pid = stack.enter_context(process(command, env, cwd, f"{base}/api/ready"))
    headers = {"Authorization": f"Bearer {sign_in(base, f'bench-{name}@example.com', PASSWORD)}"}
    mark = current_mark(base, headers, None, data_dir / "none.log")
    limit_price = str((mark * PRICE_FRACTION).quantize(TICK, rounding=ROUND_DOWN))
    return Server(name, port, pid, headers, limit_price, data_dir / "tradestack.db")


PASSWORD = secrets.token_urlsafe(18)


def bare(stack: ExitStack, data_dir: Path) -> Server:
    port = free_port()
    command = [
        str(BIN / "uvicorn"), "bare_orders_sqlite_app:app", "--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    env = clean_env(BENCH_SQLITE_PATH=str(data_dir / "bare.db"))
    pid = stack.enter_context(process(command, env, ROOT, f"http://127.0.0.1:{port}/health"))
    return Server("bare aiosqlite", port, pid, {}, "1.00", None)


def accounts_of(server: Server, count: int, name: str) -> list[str]:
    if server.database is None:
        return [f"bare-{name}-{i}" for i in range(count)]
    return list(run_async(open_accounts(f"http://127.0.0.1:{server.port}", server.headers, count, name)))


def verify(server: Server, rounds: list[RoundResult]) -> str:
    """Every acknowledged order is in the server's database."""
    created = [order_id for r in rounds for order_id in r.created]
    if server.database is None or not created:
        return f"{server.name}: {len(created)} acknowledged"
    connection = sqlite3.connect(server.database)
    try:
        found = 0
        for start in range(0, len(created), 500):
            chunk = created[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found += connection.execute(f"SELECT count(*) FROM orders WHERE id IN ({marks})", chunk).fetchone()[0]  # noqa: S608
    finally:
        connection.close()
    if found != len(created):
        raise RuntimeError(f"{server.name}: {len(created) - found} acknowledged orders are not in its database")
    return f"{server.name}: all {len(created)} acknowledged orders are in its database"


async def sequential_latencies(server: Server, account: str, prefix: str, count: int) -> list[float]:
    """`count` orders one after the other on one account; each one's latency in seconds."""
    latencies = []
    headers = {**server.headers, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
        for n in range(count):
            started = time.perf_counter()
            response = await client.post(
                "/api/orders", content=BODY % (account, f"{prefix}-{n}", server.limit_price), headers=headers
            )
            latencies.append(time.perf_counter() - started)
            if response.status_code != 201:
                raise RuntimeError(f"{server.name}: {response.status_code} {response.text[:300]}")
    return latencies


def resting_figure(server: Server, resting: int, orders: int) -> tuple[float, float]:
    """(p50 ms with `resting` open orders on the account, p50 ms with none)."""
    loaded, empty = accounts_of(server, 2, "resting")
    run_async(sequential_latencies(server, loaded, "rest", resting))
    with_resting: list[float] = []
    without: list[float] = []
    for block in range(orders // 20):
        with_resting += run_async(sequential_latencies(server, loaded, f"r{block}", 20))
        without += run_async(sequential_latencies(server, empty, f"e{block}", 20))
    return 1000 * statistics.median(with_resting), 1000 * statistics.median(without)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of one load round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server and connection count, alternating")
    parser.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    parser.add_argument("--accounts", type=int, default=20, help="fresh paper accounts per round")
    parser.add_argument("--resting", type=int, default=1000, help="open orders on the loaded account")
    parser.add_argument("--resting-orders", type=int, default=200, help="timed orders per account for the resting figure")
    parser.add_argument("--before", type=Path, help="also run `tradestack up` from this source tree (PYTHONPATH=DIR/src)")
    args = parser.parse_args()
    if args.resting < 1 or args.resting_orders < 20:
        parser.error("--resting must be at least 1 and --resting-orders at least 20 (timed in blocks of 20)")

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="tradestack-bench-embedded-") as tmp:
        root = Path(tmp)
        servers = []
        for name, source in (("tradestack", None), ("before", args.before)):
            if name == "before" and source is None:
                continue
            (root / name).mkdir()
            servers.append(tradestack_up(stack, name, root / name, source))
        (root / "bare").mkdir()
        servers.append(bare(stack, root / "bare"))
        # No PostgreSQL here: a backend of other clients on the machine is not counted as the benchmark's.
        processes = {s.name: Processes({f"{s.name} (one process)": s.pid}, database="(none)") for s in servers}
        results: dict[tuple[str, int], list[RoundResult]] = {}
        counter = itertools.count()
        for connections in args.connections:
            for _ in range(args.rounds):
                for server in servers:
                    accounts = accounts_of(server, args.accounts, f"r{next(counter)}")
                    result = one_round(
                        server.name, server.port, server.headers, accounts, f"o{next(counter)}", server.limit_price,
                        args.seconds, connections, processes[server.name],
                    )  # fmt: skip
                    results.setdefault((server.name, connections), []).append(result)
        checks = [verify(s, [r for (name, _), rounds in results.items() if name == s.name for r in rounds]) for s in servers]
        resting = {s.name: resting_figure(s, args.resting, args.resting_orders) for s in servers if s.database is not None}

    print(
        f"POST /api/orders ({SYMBOL} gtc limit buys resting far below the market) on `tradestack up` (SQLite) and the bare "
        f"aiosqlite app; {args.rounds} rounds of {args.seconds:.0f} s per server and connection count, alternating; medians"
    )
    print(f"{'server':16}{'orders/s':>11}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    figures: dict[str, float] = {}
    for connections in args.connections:
        print(f"{connections} connection(s):")
        for server in servers:
            rounds = results[(server.name, connections)]
            print("  " + summary_line(server.name, rounds))
            for line in cpu_table(rounds):
                print(line)
            key = server.name.split()[0]
            figures[f"{key}_c{connections}_per_s"] = statistics.median(r.acknowledged_per_second for r in rounds)
            figures[f"{key}_c{connections}_p50_ms"] = statistics.median(r.percentile(50) for r in rounds)
            failures = [r.first_error for r in rounds if r.first_error]
            if failures:
                print(f"    first error: {failures[0]}")
    for line in checks:
        print(line)
    for name, (loaded, empty) in resting.items():
        print(
            f"{name}: p50 with {args.resting} open orders on the account {loaded:.2f} ms, with none {empty:.2f} ms, "
            f"ratio {loaded / empty:.2f}"
        )
        figures[f"{name}_resting_ratio"] = loaded / empty
    low, high = min(args.connections), max(args.connections)
    parts = []
    for name in [s.name.split()[0] for s in servers if s.database is not None]:
        seq_ratio = figures[f"{name}_c{low}_p50_ms"] / figures[f"bare_c{low}_p50_ms"]
        conc_ratio = figures[f"{name}_c{high}_per_s"] / figures[f"bare_c{high}_per_s"]
        print(
            f"{name}: sequential p50 {seq_ratio:.1f}x the bare app's (goal <= 4x); {high} connections "
            f"{conc_ratio:.3f} of its orders/s (goal >= 0.3); resting ratio {figures[f'{name}_resting_ratio']:.2f} (goal <= 1.3)"
        )
        seq_ms, per_s, resting_ratio = (
            figures[f"{name}_c{low}_p50_ms"],
            figures[f"{name}_c{high}_per_s"],
            figures[f"{name}_resting_ratio"],
        )
        parts.append(
            f"{name}_seq_p50_ms={seq_ms:.2f} {name}_c{high}_per_s={per_s:.0f} {name}_seq_p50_ratio={seq_ratio:.2f} "
            f"{name}_c{high}_ratio={conc_ratio:.3f} {name}_resting_ratio={resting_ratio:.2f}"
        )
    bare_part = f"bare_seq_p50_ms={figures[f'bare_c{low}_p50_ms']:.2f} bare_c{high}_per_s={figures[f'bare_c{high}_per_s']:.0f}"
    headline = figures[f"tradestack_c{high}_per_s"] / figures[f"bare_c{high}_per_s"]
    print(f"RESULT name=order_path_embedded {' '.join(parts)} {bare_part} ratio={headline:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
