"""Candles (the body of GET /api/market/candles) against the floor: the same rows read by a bare driver and dumped by orjson.

    .venv/bin/python benchmarks/candles.py [--rounds 5] [--repeat 20] [--backend sqlite|postgresql|both] [--explain]
                                           [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

For each backend a throwaway database (SQLite file in a temporary directory; PostgreSQL
database ``bench_<random>`` created through --admin-url and dropped at the end) is migrated
and gets the shipped AAPL history (``us-equities-daily`` and ``aapl-intraday``, as
``tradestack data import`` stores them). Two queries, as in issue 15:

* ``AAPL 1d``, all history (``limit=10000``, about 3,270 daily bars, no aggregation);
* ``AAPL 1h``, all history built from the stored 1-minute bars (about 2,382 bars in).

Three ways, alternating within each round, each timed over --repeat calls, medians reported:

* ``tradestack``: `MarketDataService.candles_json`, what the endpoint sends now (on PostgreSQL a
  Core query returning text tuples, roll-up in SQL; on SQLite the stored text read by the sqlite3
  module in one trip, rolled up in Python; JSON text without an object per bar);
* ``previous``: what the endpoint did before (`MarketDataService.candles`, ORM rows, a Bar per
  row, one pydantic `CandleOut` per candle, `model_dump`, orjson) - kept in the service for
  the signals module, so it is measured in the same run;
* ``floor``: the stdlib ``sqlite3`` module (or asyncpg) reading the same stored rows of the
  series (text columns) and ``orjson.dumps`` of them, no aggregation, no validation.

No HTTP, no authentication: this measures what the candles code costs. The last line is
``RESULT name=candles ... ratio=<worst tradestack/floor>`` (the goal is <= 3).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from pydantic import SecretStr
from sqlalchemy import event
from sqlalchemy.engine import make_url

from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import sqlite_rows
from tradestack.kit.runtime import Runtime
from tradestack.kit.web import OrjsonResponse
from tradestack.marketdata import datasets, repository
from tradestack.marketdata.flows import import_datasets
from tradestack.marketdata.schemas import CandleList, CandleOut
from tradestack.marketdata.service import MarketDataService

QUERIES = (("AAPL", "1d", "1d"), ("AAPL", "1h", "1m"))  # symbol, timeframe, stored resolution read
GOAL_RATIO = 3.0


async def previous_body(service: MarketDataService, symbol: str, timeframe: str) -> bytes:
    found = await service.candles(symbol, timeframe, start=None, end=None, limit=10_000)
    body = CandleList(
        symbol=found.symbol,
        timeframe=found.timeframe.value,
        source_resolution=found.source_resolution.value,
        candles=[CandleOut(ts=b.ts, open=b.open, high=b.high, low=b.low, close=b.close, volume=b.volume) for b in found.bars],
    )
    return OrjsonResponse(body.model_dump(mode="json")).body


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


async def explain(runtime: Runtime, service: MarketDataService, dialect: str, symbol: str, timeframe: str) -> None:
    """Print the plan of every statement one candles_json call runs (range queries must stay index scans)."""
    captured: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    async def record_sqlite(session: Any, statement: str, parameters: Any) -> list[tuple[Any, ...]]:
        captured.append((statement, tuple(parameters)))
        return await sqlite_rows(session, statement, parameters)

    engine = runtime.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    setattr(repository, "sqlite_rows", record_sqlite)  # noqa: B010 - SQLite's range reads bypass SQLAlchemy's cursor events
    try:
        await service.candles_json(symbol, timeframe, start=None, end=None, limit=10_000)
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
            print(f"  EXPLAIN {symbol} {timeframe}: {' '.join(statement.split())[:160]}...")
            for line in lines:
                print(f"      {line}")


async def timed(call: Callable[[], Awaitable[bytes]], repeat: int) -> float:
    """Median milliseconds of one call over `repeat` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def run_backend(name: str, database_url: str, data_dir: Path, args: argparse.Namespace) -> list[tuple[str, float]]:
    settings = Settings(
        database_url=database_url, data_dir=data_dir, secret_key=SecretStr(secrets.token_urlsafe(48)), log_level="warning"
    )
    runtime = Runtime.open(settings)
    try:
        await migrations.upgrade(runtime.database.engine)
        service = MarketDataService(runtime)
        await service.seed_instruments()
        await import_datasets(runtime, [datasets.load("us-equities-daily"), datasets.load("aapl-intraday")])
        pool = None
        if name == "sqlite":
            floor = sqlite_floor(Path(make_url(database_url).database or ""))
        else:
            url = make_url(database_url).set(drivername="postgresql")
            pool = await asyncpg.create_pool(url.render_as_string(hide_password=False), min_size=1, max_size=2)
            floor = postgres_floor(pool)
        ratios = []
        if args.explain:
            for symbol, timeframe, _ in QUERIES:
                await explain(runtime, service, name, symbol, timeframe)
        for symbol, timeframe, stored in QUERIES:
            new = await service.candles_json(symbol, timeframe, start=None, end=None, limit=10_000)
            old = await previous_body(service, symbol, timeframe)
            if orjson.loads(new) != orjson.loads(old):
                raise SystemExit(f"{name} {symbol} {timeframe}: the new body differs from the previous one")
            rows = len(orjson.loads(await floor(symbol, stored)))
            figures: dict[str, list[float]] = {"tradestack": [], "previous": [], "floor": []}
            for _ in range(args.rounds):
                figures["floor"].append(await timed(lambda s=symbol, r=stored: floor(s, r), args.repeat))
                figures["tradestack"].append(
                    await timed(
                        lambda s=symbol, t=timeframe: service.candles_json(s, t, start=None, end=None, limit=10_000),
                        args.repeat,
                    )
                )
                figures["previous"].append(await timed(lambda s=symbol, t=timeframe: previous_body(service, s, t), args.repeat))
            medians = {key: statistics.median(values) for key, values in figures.items()}
            ratio = medians["tradestack"] / medians["floor"]
            candles = len(orjson.loads(new)["candles"])
            print(
                f"{name:10} {symbol} {timeframe} ({rows} rows -> {candles} candles): "
                f"tradestack {medians['tradestack']:.2f} ms, previous {medians['previous']:.2f} ms, "
                f"floor {medians['floor']:.2f} ms; tradestack/floor {ratio:.2f}, "
                f"previous/floor {medians['previous'] / medians['floor']:.2f}, "
                f"speed-up {medians['previous'] / medians['tradestack']:.1f}x"
            )
            ratios.append((f"{name}_{timeframe}", ratio))
        if pool is not None:
            await pool.close()
        return ratios
    finally:
        await runtime.close()


async def main_async(args: argparse.Namespace) -> None:
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    ratios: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-candles-") as tmp:
        for backend in backends:
            data_dir = Path(tmp) / backend
            data_dir.mkdir()
            if backend == "sqlite":
                ratios += await run_backend(backend, f"sqlite+aiosqlite:///{data_dir / 'bench.db'}", data_dir, args)
                continue
            database = f"bench_{secrets.token_hex(4)}"
            admin = await asyncpg.connect(args.admin_url)
            await admin.execute(f'CREATE DATABASE "{database}"')
            try:
                url = make_url(args.admin_url).set(drivername="postgresql+asyncpg", database=database)
                ratios += await run_backend(backend, url.render_as_string(hide_password=False), data_dir, args)
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                await admin.close()
    worst = max(ratio for _, ratio in ratios)
    figures = " ".join(f"{label}={ratio:.2f}" for label, ratio in ratios)
    verdict = "MET" if worst <= GOAL_RATIO else "NOT MET"
    print(f"goal: <= {GOAL_RATIO:.0f}x the floor on every query: {verdict}")
    print(f"RESULT name=candles {figures} ratio={worst:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20, help="calls per timing")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--explain", action="store_true", help="print the query plans first")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
