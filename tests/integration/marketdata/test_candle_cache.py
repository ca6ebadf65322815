"""Candles from the process's cache are, byte for byte, the candles read from the database, whoever wrote the bars.

Every write of bars changes its series' version in the same transaction (`BarRepository`), and a
request reads the version first, so another process's write, retention's deletions and a live
candle show in the very next request; on both stacks.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import insert

from tradestack.domain.marketdata import Bar, Side, Timeframe, Trade
from tradestack.identity.permissions import Role
from tradestack.kit.db import Database
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.recent import CANDLE_CACHE, CandleCache
from tradestack.marketdata.repository import BarRepository
from tradestack.marketdata.runner import Publisher
from tradestack.marketdata.service import MarketDataService
from tradestack.models.marketdata import BarRow
from tradestack.ops.retention import apply_retention

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import StoreHistory  # type: ignore[import-not-found]

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


def _bar(symbol: str, ts: datetime, price: str = "100", volume: str = "10") -> Bar:
    p = Decimal(price)
    return Bar(symbol, ts, p, p + 1, p - 1, p, Decimal(volume))


async def _body(service: MarketDataService, cache: CandleCache | None, *request: object) -> bytes:
    symbol, timeframe, start, end, limit = request
    return await service.candles_json(symbol, timeframe, start=start, end=end, limit=limit, cache=cache)  # type: ignore[arg-type]


async def test_cached_bodies_are_the_uncached_bodies_through_writes_of_every_kind(
    runtime: Runtime, store_history: StoreHistory, tmp_path: Path
) -> None:
    """Random requests (latest and ranges, limits, timeframes), with bars appended, inserted in the middle,
    replaced and deleted by another connection between them: the shared cache answers as an empty one would."""
    await store_history("us-equities-daily", ["AAPL"])
    await store_history("aapl-intraday", ["AAPL"])
    service = MarketDataService(runtime)
    cache = CandleCache()
    spans = {s.resolution: (s.first, s.last) for s in await service.series() if s.symbol == "AAPL"}
    other = Database(runtime.settings)  # another connection pool, as another process has
    rng = random.Random(15)
    minute_first, minute_last = spans[Timeframe.M1]
    day_first, day_last = spans[Timeframe.D1]
    newest = minute_last
    try:
        for step in range(240):
            timeframe = rng.choice(["1m", "5m", "15m", "1h", "1d", "1d"])
            first, last = (day_first, day_last) if timeframe == "1d" else (minute_first, newest + MINUTE)
            span = (last - first).total_seconds()
            at = first + timedelta(seconds=rng.uniform(-0.05, 1.05) * span)
            start = at if rng.random() < 0.4 else None
            end = None if rng.random() < 0.6 else at + timedelta(seconds=rng.uniform(0.001, 0.5) * span)
            limit = rng.choice([1, 2, 7, 60, 500, 10_000])
            request = ("AAPL", timeframe, start, end, limit)
            assert await _body(service, cache, *request) == await _body(service, CandleCache(), *request), (step, request)
            if step % 20 == 19:
                kind = ["append", "middle", "replace", "delete"][(step // 20) % 4]
                async with other.session() as session:
                    bars = BarRepository(session)
                    if kind == "append":
                        newest += MINUTE * rng.choice([1, 1, 61])
                        await bars.write("AAPL", Timeframe.M1, [_bar("AAPL", newest, "190")], source="test")
                    elif kind == "middle":  # an hour of the stored days, at minutes that were not stored
                        hour = minute_first + timedelta(hours=rng.randrange(int((newest - minute_first).total_seconds() // 3600)))
                        await bars.write(
                            "AAPL", Timeframe.M1, [_bar("AAPL", hour + timedelta(seconds=30), "1", "3")], source="test"
                        )
                    elif kind == "replace":
                        day = day_last - timedelta(days=rng.randrange(30))
                        await bars.write("AAPL", Timeframe.D1, [_bar("AAPL", day, "5")], source="test", replace=True)
                        await bars.write("AAPL", Timeframe.M1, [_bar("AAPL", minute_first, "7")], source="test", replace=True)
                    else:
                        cut = minute_first + timedelta(hours=rng.randrange(48))
                        assert await bars.delete("AAPL", Timeframe.M1, cut, cut + timedelta(minutes=90)) >= 0
        assert cache.candles > 0
    finally:
        await other.dispose()


_OTHER_PROCESS = """
import asyncio, json, sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from tradestack.domain.marketdata import Bar, Timeframe
from tradestack.kit.config import Settings
from tradestack.kit.db import Database
from tradestack.marketdata.repository import BarRepository

async def main():
    database = Database(Settings(database_url=sys.argv[1], data_dir=Path(sys.argv[2])))
    print("ready", flush=True)
    for line in sys.stdin:
        symbol, resolution, ts, price, replace = json.loads(line)
        p = Decimal(price)
        async with database.session() as session:
            bar = Bar(symbol, datetime.fromisoformat(ts), p, p, p, p, Decimal(1))
            await BarRepository(session).write(symbol, Timeframe(resolution), [bar], source="other", replace=replace)
        print("written", flush=True)
    await database.dispose()

asyncio.run(main())
"""


async def test_bars_another_process_stores_show_in_the_next_request(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, store_history: StoreHistory, tmp_path: Path
) -> None:
    """No second of staleness: a live candle or an import in another process is in the very next answer."""
    await store_history("us-equities-daily", ["AAPL"])
    await store_history("aapl-intraday", ["AAPL"])
    headers = (await make_user(Role.VIEWER)).headers
    script = tmp_path / "other.py"
    script.write_text(_OTHER_PROCESS)
    other = await asyncio.create_subprocess_exec(
        sys.executable, str(script), runtime.database.url, str(tmp_path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert other.stdin is not None
    assert other.stdout is not None
    assert await asyncio.wait_for(other.stdout.readline(), 60) == b"ready\n"

    async def write(resolution: str, ts: datetime, price: str, *, replace: bool = False) -> None:
        assert other.stdin is not None
        assert other.stdout is not None
        other.stdin.write(json.dumps(["AAPL", resolution, ts.isoformat(), price, replace]).encode() + b"\n")
        await other.stdin.drain()
        assert await asyncio.wait_for(other.stdout.readline(), 30) == b"written\n"

    async def candles(timeframe: str, limit: int) -> list[dict[str, str]]:
        params = {"symbol": "AAPL", "timeframe": timeframe, "limit": str(limit)}
        response = await client.get("/api/market/candles", params=params, headers=headers)
        assert response.status_code == 200, response.text
        found: list[dict[str, str]] = response.json()["candles"]
        return found

    try:
        days = await candles("1d", 2)
        assert days == await candles("1d", 2)
        next_day = datetime.fromisoformat(days[-1]["ts"]) + timedelta(days=1)
        await write("1d", next_day, "123.5")  # an import in another process
        assert [c["ts"] for c in await candles("1d", 2)] == [days[-1]["ts"], next_day.isoformat().replace("+00:00", "Z")]

        hours = await candles("1h", 5)  # built from the stored minutes; the closed ones kept
        last = datetime.fromisoformat(hours[-1]["ts"])
        await write("1m", last + timedelta(hours=1), "150")  # a live candle in another process: a new hour
        now = await candles("1h", 5)
        assert [c["ts"] for c in now[:-1]] == [c["ts"] for c in hours[1:]]
        assert now[-1]["close"] == "150"
        closed = datetime.fromisoformat(hours[-2]["ts"])
        await write("1m", closed, "999", replace=True)  # a closed candle changed by another process
        changed = await candles("1h", 5)
        assert changed[-3]["high"] == "999", changed[-3]
    finally:
        assert other.stdin is not None
        other.stdin.close()
        await asyncio.wait_for(other.wait(), 30)


async def test_retention_deleting_bars_changes_the_candles_at_once(runtime: Runtime) -> None:
    service = MarketDataService(runtime)
    await service.seed_instruments()
    now = runtime.clock.now()
    old = datetime(now.year - 3, 1, 1, tzinfo=UTC)  # older than the default 730 days kept for 1h bars
    async with runtime.database.session() as session:
        bars = BarRepository(session)
        await bars.write("AAPL", Timeframe.H1, [_bar("AAPL", old + n * timedelta(hours=1)) for n in range(24 * 10)], source="t")
        await bars.write("AAPL", Timeframe.D1, [_bar("AAPL", old + n * timedelta(days=1)) for n in range(5)], source="t")
    latest = ("AAPL", "1h", None, None, 10_000)
    assert (await _body(service, None, *latest)).count(b'"ts"') == 240
    assert runtime.components.get_or_create(CANDLE_CACHE, CandleCache).candles == 239  # all but the newest
    report = await apply_retention(runtime)
    assert report.bars == 24 * 5
    body = await _body(service, None, *latest)
    assert body.count(b'"ts"') == 240 - 24 * 5
    assert body == await _body(service, CandleCache(), *latest)


async def test_a_live_candle_is_in_the_next_answer_and_keeps_the_closed_candles(runtime: Runtime) -> None:
    """A feed's stored minute is an append: the series' version changes, its closed version does not."""
    service = MarketDataService(runtime)
    await service.seed_instruments()
    publisher = Publisher(runtime)
    at = datetime(2031, 1, 6, 15, 0, tzinfo=UTC)
    cache = runtime.components.get_or_create(CANDLE_CACHE, CandleCache)

    async def trade(seconds: int, price: str) -> None:
        await publisher.publish("live-test", Trade("MSFT", Decimal(price), Decimal(1), Side.BUY, at + timedelta(seconds=seconds)))
        await publisher.candles_stored()

    async def versions() -> tuple[int, int]:
        async with runtime.database.read_session() as session:
            version = (await BarRepository(session).stored("MSFT"))[Timeframe.M1]
        assert version is not None
        return version.version, version.closed

    latest = ("MSFT", "5m", None, None, 100)
    for minute in range(1, 13):  # 15:01 is the partial first minute (never stored); 15:02 .. 15:11 stored as each completes
        await trade(60 * minute + 5, f"{100 + minute}")
    before = await versions()
    body = await _body(service, None, *latest)
    assert body.count(b'"ts"') == 3  # 15:00, 15:05 and the open 15:10
    kept = cache.candles
    assert kept == 2
    await trade(60 * 13 + 5, "200")  # stores 15:12 (one trade at 112): the open candle grows
    after = await versions()
    assert after[0] != before[0]
    assert after[1] == before[1]
    body = await _body(service, None, *latest)
    assert body.endswith(b'"close":"112","volume":"3"}]}')
    assert body == await _body(service, CandleCache(), *latest)
    assert cache.candles == kept  # the closed candles were kept, not built again
    for minute in range(14, 17):  # 15:13 .. 15:15 stored: 15:10 closes, 15:15 opens
        await trade(60 * minute + 5, f"{100 + minute}")
    body = await _body(service, None, *latest)
    assert body.count(b'"ts"') == 4
    assert body == await _body(service, CandleCache(), *latest)
    assert cache.candles == 3


async def test_an_append_by_a_writer_that_keeps_no_versions_shows_in_the_next_answer(runtime: Runtime) -> None:
    """The previous release during a rollout writes bars without `bar_versions`: its appends (live candles) must still
    show at once, since a cached answer is tied to the series' newest bar as well as to its version."""
    service = MarketDataService(runtime)
    await service.seed_instruments()
    start = datetime(2030, 3, 4, tzinfo=UTC)
    async with runtime.database.session() as session:
        await BarRepository(session).write("AAPL", Timeframe.D1, [_bar("AAPL", start + n * DAY) for n in range(5)], source="t")
    latest = ("AAPL", "1d", None, None, 100)
    assert (await _body(service, None, *latest)).count(b'"ts"') == 5
    async with runtime.database.session() as session:  # as an older release's writer: the bars only
        appended = _bar("AAPL", start + 5 * DAY, price="150")
        await session.execute(
            insert(BarRow).values(
                symbol="AAPL",
                resolution="1d",
                ts=appended.ts,
                open=appended.open,
                high=appended.high,
                low=appended.low,
                close=appended.close,
                volume=appended.volume,
                source="old release",
            )
        )
    body = await _body(service, None, *latest)
    assert body.count(b'"ts"') == 6
    assert body.endswith(b'"close":"150","volume":"10"}]}')
    assert body == await _body(service, CandleCache(), *latest)
