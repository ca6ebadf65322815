"""Candles (the body of GET /api/market/candles) against the floor: the same rows read by a bare driver and dumped by orjson.

    .venv/bin/python benchmarks/candles.py [--rounds 5] [--repeat 20] [--backend sqlite|postgresql|both] [--explain]
                                           [--before DIR] [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

For each backend a throwaway database (SQLite file in a temporary directory; PostgreSQL
database ``bench_<random>`` created through --admin-url and dropped at the end) is migrated
and gets the shipped AAPL history (``us-equities-daily`` and ``aapl-intraday``, as
``tradestack data import`` stores them). Two queries, as in issue 15:

* ``AAPL 1d``, all history (``limit=10000``, about 3,270 daily bars, no aggregation);
* ``AAPL 1h``, all history built from the stored 1-minute bars (about 2,382 bars in).

Each code tree runs in a process of its own (this worktree; with ``--before DIR`` also the
source tree DIR, e.g. a ``git archive`` of main, as PYTHONPATH=DIR/src) on its own database;
the rounds alternate between them (order swapped every round), each figure timed over
--repeat calls, medians reported:

* ``uncached``: `MarketDataService.candles_json` with nothing kept from before (a new
  `CandleCache` per call where the tree has one): every candle read and built;
* ``cached``: the candles endpoint (its function, no HTTP or authentication) asked the same
  question again and again: the realistic chart case, many viewers of one chart;
* ``live``: the same, with one new bar of the queried series stored (untimed) before each call,
  as a feed storing a candle a minute does: whatever the tree keeps must survive or be rebuilt;
* ``floor``: the stdlib ``sqlite3`` module (or asyncpg) reading the same stored rows of the
  series (text columns) and ``orjson.dumps`` of them, no aggregation, no validation.

Every ratio is to the floor measured in this worktree's process. The last line is
``RESULT name=candles ... ratio=<worst uncached/floor>`` (the goal is <= 3) with the cached
figures beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from pydantic import SecretStr
from sqlalchemy import event
from sqlalchemy.engine import make_url

from tradestack.domain.marketdata import Bar, Timeframe
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import sqlite_rows
from tradestack.kit.runtime import Runtime
from tradestack.marketdata import datasets, endpoints, repository
from tradestack.marketdata.flows import import_datasets
from tradestack.marketdata.repository import BarRepository
from tradestack.marketdata.service import MarketDataService

QUERIES = (("AAPL", "1d", "1d"), ("AAPL", "1h", "1m"))  # symbol, timeframe, stored resolution read
FIGURES = ("floor", "uncached", "cached", "live")
GOAL_RATIO = 3.0
LOAD = os.getloadavg


def sqlite_floor(path: Path) -> Callable[[str, str], Awaitable[bytes]]:
    connection = sqlite3.connect(path)

    async def floor(symbol: str, resolution: str) -> bytes:
        rows = connection.execute(
            "SELECT ts, open, high, low, close, volume FROM bars WHERE symbol = ? AND resolution = ? ORDER BY ts",
            (symbol, resolution),
        ).fetchall()
        return orjson.dumps(rows)

    return floor


def postgres_floor(pool: Any) -> Callable[[str, str], Awaitable[bytes]]:
    async def floor(symbol: str, resolution: str) -> bytes:
        async with pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT ts, open::text, high::text, low::text, close::text, volume::text FROM bars "
                "WHERE symbol = $1 AND resolution = $2 ORDER BY ts",
                symbol,
                resolution,
            )
        return orjson.dumps([tuple(row) for row in rows])

    return floor


class Tree:
    """The candles code of the tree this process runs: uncached, the endpoint, and a bar appended to a series."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.service = MarketDataService(runtime)
        self._fresh_cache: Callable[[], Any] | None = None
        if "cache" in inspect.signature(self.service.candles_json).parameters:
            from tradestack.marketdata.recent import CandleCache  # absent from trees before it

            self._fresh_cache = CandleCache
        self._next: dict[tuple[str, str], Any] = {}

    async def uncached(self, symbol: str, timeframe: str) -> bytes:
        extra = {} if self._fresh_cache is None else {"cache": self._fresh_cache()}
        return await self.service.candles_json(symbol, timeframe, start=None, end=None, limit=10_000, **extra)

    async def endpoint(self, symbol: str, timeframe: str) -> bytes:
        response = await endpoints.candles(self.runtime, None, symbol, timeframe, None, None, 10_000)  # type: ignore[arg-type]
        return bytes(response.body)

    async def append(self, symbol: str, resolution: str) -> None:
        """Store the series' next bar (one step after its newest), as a feed storing a live candle does."""
        tf = Timeframe(resolution)
        if (symbol, resolution) not in self._next:
            async with self.runtime.database.read_session() as session:
                [last] = await BarRepository(session).last(symbol, tf, 1)
            self._next[symbol, resolution] = last
        last = self._next[symbol, resolution]
        bar = Bar(symbol, last.ts + tf.delta, last.close, last.close + 1, last.close - 1, last.close, Decimal(100))
        async with self.runtime.database.session() as session:
            await BarRepository(session).write(symbol, tf, [bar], source="bench")
        self._next[symbol, resolution] = bar


async def explain(runtime: Runtime, tree: Tree, dialect: str, symbol: str, timeframe: str, stored: str) -> None:
    """Print the plan of every statement a cold request, then a repeat after a stored bar, runs (index scans only)."""
    captured: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    async def record_sqlite(session: Any, statement: str, parameters: Any) -> list[tuple[Any, ...]]:
        captured.append((statement, tuple(parameters)))
        return await sqlite_rows(session, statement, parameters)

    await tree.endpoint(symbol, timeframe)  # the closed candles kept
    await tree.append(symbol, stored)
    engine = runtime.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    setattr(repository, "sqlite_rows", record_sqlite)  # noqa: B010 - SQLite's range reads bypass SQLAlchemy's cursor events
    try:
        await tree.uncached(symbol, timeframe)
        await tree.endpoint(symbol, timeframe)
    finally:
        event.remove(engine, "before_cursor_execute", record)
        setattr(repository, "sqlite_rows", sqlite_rows)  # noqa: B010
    prefix = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
    async with runtime.database.engine.connect() as connection:
        for statement, parameters in captured:
            if "bars" not in statement:
                continue
            plan = await connection.exec_driver_sql(prefix + statement, parameters)
            lines = [" ".join(str(part) for part in row[-1:]) for row in plan]
            print(f"  EXPLAIN {symbol} {timeframe}: {' '.join(statement.split())[:200]}...", file=sys.stderr)
            for line in lines:
                print(f"      {line}", file=sys.stderr)


async def timed(
    call: Callable[[], Awaitable[bytes]], repeat: int, before_each: Callable[[], Awaitable[None]] | None = None
) -> float:
    """Median milliseconds of one call over `repeat` calls (`before_each` untimed)."""
    times = []
    for _ in range(repeat):
        if before_each is not None:
            await before_each()
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def child(args: argparse.Namespace) -> None:
    """One code tree on its own database: set up, then one round of every figure per line read, as JSON."""
    name, database_url, data_dir = args.child, args.database_url, Path(args.data_dir)
    settings = Settings(
        database_url=database_url, data_dir=data_dir, secret_key=SecretStr(secrets.token_urlsafe(48)), log_level="warning"
    )
    runtime = Runtime.open(settings)
    pool = None
    try:
        await migrations.upgrade(runtime.database.engine)
        tree = Tree(runtime)
        await tree.service.seed_instruments()
        await import_datasets(runtime, [datasets.load("us-equities-daily"), datasets.load("aapl-intraday")])
        if name == "sqlite":
            floor = sqlite_floor(Path(make_url(database_url).database or ""))
        else:
            url = make_url(database_url).set(drivername="postgresql")
            pool = await asyncpg.create_pool(url.render_as_string(hide_password=False), min_size=1, max_size=2)
            floor = postgres_floor(pool)
        if args.explain:
            for symbol, timeframe, stored in QUERIES:
                await explain(runtime, tree, name, symbol, timeframe, stored)
        sizes = {}
        for symbol, timeframe, stored in QUERIES:
            uncached, cached = await tree.uncached(symbol, timeframe), await tree.endpoint(symbol, timeframe)
            if uncached != cached:
                raise SystemExit(f"{name} {symbol} {timeframe}: the cached body differs from the uncached one")
            sizes[f"{symbol} {timeframe}"] = [
                len(orjson.loads(await floor(symbol, stored))),
                len(orjson.loads(uncached)["candles"]),
            ]
        print(json.dumps({"sizes": sizes}), flush=True)
        for _ in sys.stdin:
            figures: dict[str, dict[str, float]] = {}
            for symbol, timeframe, stored in QUERIES:
                figures[f"{symbol} {timeframe}"] = {
                    "floor": await timed(lambda s=symbol, r=stored: floor(s, r), args.repeat),
                    "uncached": await timed(lambda s=symbol, t=timeframe: tree.uncached(s, t), args.repeat),
                    "cached": await timed(lambda s=symbol, t=timeframe: tree.endpoint(s, t), args.repeat),
                    "live": await timed(
                        lambda s=symbol, t=timeframe: tree.endpoint(s, t),
                        args.repeat,
                        lambda s=symbol, r=stored: tree.append(s, r),
                    ),
                }
            print(json.dumps(figures), flush=True)
    finally:
        if pool is not None:
            await pool.close()
        await runtime.close()


def _stdout(process: asyncio.subprocess.Process) -> asyncio.StreamReader:
    if process.stdout is None:
        raise SystemExit("the benchmark process has no stdout")
    return process.stdout


async def start_child(
    backend: str, database_url: str, data_dir: Path, args: argparse.Namespace, source: Path | None
) -> tuple[asyncio.subprocess.Process, dict[str, list[int]]]:
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    command = [sys.executable, __file__, "--child", backend, "--database-url", database_url, "--data-dir", str(data_dir)]
    command += ["--repeat", str(args.repeat)] + (["--explain"] if args.explain and source is None else [])
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env
    )
    line = await _stdout(process).readline()
    if not line:
        raise SystemExit(f"{backend} ({source or 'this tree'}): the benchmark process failed to start")
    return process, json.loads(line)["sizes"]


async def run_backend(backend: str, trees: dict[str, Path | None], tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Median figures by tree and query, the trees' rounds alternated."""
    children: dict[str, asyncio.subprocess.Process] = {}
    databases: list[str] = []
    admin = None if backend == "sqlite" else await asyncpg.connect(args.admin_url)
    try:
        sizes = {}
        for label, source in trees.items():
            data_dir = tmp / f"{backend}-{label}"
            data_dir.mkdir()
            if admin is None:
                url = f"sqlite+aiosqlite:///{data_dir / 'bench.db'}"
            else:
                database = f"bench_{secrets.token_hex(4)}"
                await admin.execute(f'CREATE DATABASE "{database}"')
                databases.append(database)
                url = (
                    make_url(args.admin_url)
                    .set(drivername="postgresql+asyncpg", database=database)
                    .render_as_string(hide_password=False)
                )
            children[label], sizes[label] = await start_child(backend, url, data_dir, args, source)
        rounds: dict[str, list[dict[str, dict[str, float]]]] = {label: [] for label in children}
        order = list(children)
        for _ in range(args.rounds):
            for label in order:
                process = children[label]
                if process.stdin is None:
                    raise SystemExit("the benchmark process has no stdin")
                process.stdin.write(b"round\n")
                await process.stdin.drain()
                rounds[label].append(json.loads(await _stdout(process).readline()))
            order.reverse()
        medians = {
            label: {
                query: {figure: statistics.median(r[query][figure] for r in results) for figure in FIGURES}
                for query in results[0]
            }
            for label, results in rounds.items()
        }
        return {"sizes": sizes["after"], "medians": medians}
    finally:
        for process in children.values():
            if process.stdin is not None:
                process.stdin.close()
            await process.wait()
        if admin is not None:
            for database in databases:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.close()


async def main_async(args: argparse.Namespace) -> None:
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    trees: dict[str, Path | None] = {"after": None}
    if args.before is not None:
        trees["before"] = args.before
    results: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-candles-") as tmp:
        for backend in backends:
            found = await run_backend(backend, trees, Path(tmp), args)
            load = " ".join(f"{value:.2f}" for value in LOAD())
            for query, per_tree in found["medians"]["after"].items():
                rows, candles = found["sizes"][query]
                floor = per_tree["floor"]
                print(f"{backend:10} {query} ({rows} rows -> {candles} candles), floor {floor:.2f} ms, load {load}:")
                for label, medians in found["medians"].items():
                    figures = medians[query]
                    print(
                        f"    {label:6}: "
                        + ", ".join(f"{name} {figures[name]:.3f} ms ({figures[name] / floor:.2f}x)" for name in FIGURES[1:])
                        + f"; its own floor {figures['floor']:.2f} ms"
                    )
                for name in FIGURES[1:]:
                    results.append((f"{backend}_{query.split()[1]}_{name}", "after", per_tree[name] / floor))
                    if "before" in found["medians"]:
                        before = found["medians"]["before"][query][name]
                        results.append((f"{backend}_{query.split()[1]}_{name}", "before", before / floor))
    worst = max(ratio for label, tree, ratio in results if tree == "after" and label.endswith("_uncached"))
    print(f"goal: uncached <= {GOAL_RATIO:.0f}x the floor on every query: {'MET' if worst <= GOAL_RATIO else 'NOT MET'}")
    figures = " ".join(
        f"{'before_' if tree == 'before' else ''}{label}={ratio:.3f}"
        for wanted in ("after", "before")
        for label, tree, ratio in results
        if tree == wanted
    )
    print(f"RESULT name=candles {figures} ratio={worst:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20, help="calls per timing")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--explain", action="store_true", help="print the query plans first (to stderr)")
    parser.add_argument("--before", type=Path, help="also measure the source tree DIR (PYTHONPATH=DIR/src), alternated")
    parser.add_argument("--child", choices=["sqlite", "postgresql"], help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    asyncio.run(child(args) if args.child else main_async(args))


if __name__ == "__main__":
    main()
