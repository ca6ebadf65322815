"""The candles body built from stored text is, byte for byte, the `CandleList` the ORM path and pydantic render.

`MarketDataService.candles_json` (what ``GET /api/market/candles`` sends) reads SQLite's stored text with
the sqlite3 module and PostgreSQL's with Core queries; `MarketDataService.candles` reads ORM bars and
rolls them up with the domain's `aggregate`. Both must give the same bytes on both backends, for
stored and rolled-up timeframes, ranges, limits that cut a candle, whole and fractional volumes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tradestack.kit.db import sqlite_rows
from tradestack.kit.runtime import Runtime
from tradestack.kit.web import OrjsonResponse
from tradestack.marketdata import repository
from tradestack.marketdata.recent import CandleCache
from tradestack.marketdata.schemas import CandleList, CandleOut
from tradestack.marketdata.service import MarketDataService

from .conftest import StoreHistory  # type: ignore[import-not-found]

AT = datetime(2026, 7, 30, 14, 7, tzinfo=UTC)
SHAPES: list[tuple[str, str, datetime | None, datetime | None, int]] = [
    ("AAPL", "1d", None, None, 10_000),
    ("AAPL", "1d", datetime(2005, 1, 1, tzinfo=UTC), datetime(2006, 1, 1, tzinfo=UTC), 500),
    ("AAPL", "1d", None, datetime(2010, 1, 1, tzinfo=UTC), 7),
    ("AAPL", "1m", AT, None, 50),
    ("AAPL", "5m", None, None, 10_000),
    ("AAPL", "15m", AT, None, 7),  # the row limit cuts the last candle: completed
    ("AAPL", "1h", None, None, 10_000),
    ("AAPL", "1h", None, datetime(2026, 8, 4, 15, 31, tzinfo=UTC), 3),  # the row limit cuts the first candle
    ("AAPL", "15m", datetime(2026, 7, 29, 13, 37, tzinfo=UTC), datetime(2026, 8, 5, tzinfo=UTC), 10_000),  # mid-candle start
    ("AAPL", "1h", datetime(2030, 1, 1, tzinfo=UTC), None, 10),  # nothing there: no candles
    ("EURUSD", "1h", datetime(2017, 3, 5, 22, 10, tzinfo=UTC), None, 500),  # fractional volumes
    ("EURUSD", "1d", None, None, 10_000),
    ("BTC-USD", "15m", None, None, 1_000),
    ("BTC-USD", "1h", datetime(2021, 10, 30, 23, 50, tzinfo=UTC), datetime(2021, 11, 2, 0, 20, tzinfo=UTC), 10_000),
]


async def _orm_body(service: MarketDataService, shape: tuple[str, str, datetime | None, datetime | None, int]) -> bytes:
    symbol, timeframe, start, end, limit = shape
    found = await service.candles(symbol, timeframe, start=start, end=end, limit=limit)
    body = CandleList(
        symbol=found.symbol,
        timeframe=found.timeframe.value,
        source_resolution=found.source_resolution.value,
        candles=[CandleOut(ts=b.ts, open=b.open, high=b.high, low=b.low, close=b.close, volume=b.volume) for b in found.bars],
    )
    return bytes(OrjsonResponse(body.model_dump(mode="json")).body)


async def _store(store_history: StoreHistory) -> None:
    await store_history("us-equities-daily", ["AAPL"])
    await store_history("aapl-intraday", ["AAPL"])
    await store_history("eurusd-1h", ["EURUSD"])
    await store_history("btc-usd", ["BTC-USD"])


async def test_candles_json_is_byte_for_byte_the_orm_and_pydantic_body(runtime: Runtime, store_history: StoreHistory) -> None:
    await _store(store_history)
    service = MarketDataService(runtime)
    sizes = []
    for shape in SHAPES:
        body = await service.candles_json(*shape[:2], start=shape[2], end=shape[3], limit=shape[4])
        assert body == await _orm_body(service, shape), shape
        sizes.append(body.count(b'"ts"'))
    assert sizes[0] > 3000
    assert sizes[9] == 0
    assert all(size > 0 for index, size in enumerate(sizes) if index != 9), sizes


async def test_sqlite_range_reads_are_index_searches(
    runtime: Runtime, store_history: StoreHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    if runtime.database.dialect != "sqlite":
        pytest.skip("PostgreSQL's range reads go through SQLAlchemy (see benchmarks/candles.py --explain)")
    await _store(store_history)
    statements: list[tuple[str, Any]] = []

    async def recorded(session: Any, sql: str, parameters: Any) -> list[tuple[Any, ...]]:
        statements.append((sql, list(parameters)))
        return await sqlite_rows(session, sql, parameters)

    monkeypatch.setattr(repository, "sqlite_rows", recorded)
    service = MarketDataService(runtime)
    for shape in SHAPES:  # without the cache: every candle read
        await service.candles_json(*shape[:2], start=shape[2], end=shape[3], limit=shape[4], cache=CandleCache())
    assert len(statements) > len(SHAPES)  # the completions of cut candles included
    cache = CandleCache()
    for shape in SHAPES + SHAPES[::-1]:  # with it: the reads of open tails and of candles before the kept ones
        await service.candles_json(*shape[:2], start=shape[2], end=shape[3], limit=shape[4], cache=cache)
    assert cache.candles > 0
    async with runtime.database.engine.connect() as connection:
        for sql, parameters in statements:
            plan = " | ".join(
                str(row[-1]) for row in await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, tuple(parameters))
            )
            assert "SCAN bar" not in plan, plan  # the stored-series probe too: every table read is an index search
            if sql.startswith("SELECT (SELECT ts FROM bars"):
                continue  # `BarRepository.stored`: probes of bars and bar_versions
            assert plan.startswith("SEARCH bars USING INDEX sqlite_autoindex_bars_1 (symbol=? AND resolution=?"), plan
            assert "TEMP B-TREE" not in plan, plan  # ORDER BY ts is the index order, forwards or backwards
