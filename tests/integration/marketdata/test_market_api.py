"""REST market data on both stacks: instruments, candles from real shipped history, cached quotes and books, readiness."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy.exc
from fastapi import FastAPI

from tradestack.domain.marketdata import Bar, BookLevel, OrderBook, Quote, Side, Timeframe, Trade
from tradestack.identity.permissions import Role
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.recent import CANDLE_CACHE
from tradestack.marketdata.repository import BarRepository
from tradestack.marketdata.runner import STORE_GRACE, LiveCandles, Publisher
from tradestack.marketdata.service import HEARTBEAT_KEY
from tradestack.ops.service import HealthService

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import StoreHistory, shipped  # type: ignore[import-not-found]


async def _viewer(make_user: MakeUser) -> dict[str, str]:
    user = await make_user(Role.VIEWER)
    headers: dict[str, str] = user.headers
    return headers


async def test_instruments_come_with_trading_rules(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    headers = await _viewer(make_user)
    response = await client.get("/api/market/instruments", headers=headers)
    assert response.status_code == 200, response.text
    by_symbol = {i["symbol"]: i for i in response.json()["instruments"]}
    assert {"AAPL", "MSFT", "EURUSD", "BTC-USD", "BHP", "RELIANCE", "SPX"} <= set(by_symbol)
    aapl = by_symbol["AAPL"]
    assert (aapl["kind"], aapl["venue"], aapl["quote_currency"], aapl["tick_size"], aapl["lot_size"]) == (
        "equity", "NASDAQ", "USD", "0.01", "1",
    )  # fmt: skip
    assert aapl["timezone"] == "America/New_York"
    assert by_symbol["EURUSD"]["base_currency"] == "EUR"
    assert by_symbol["BHP"]["timezone"] == "Australia/Sydney"
    assert by_symbol["BTC-USD"]["open_now"] is True  # crypto never closes
    assert by_symbol["SPX"]["tradable"] is False
    anonymous = await client.get("/api/market/instruments")
    assert anonymous.status_code == 401


async def test_candles_of_aapl_in_2005_are_the_shipped_rows(
    client: httpx.AsyncClient, make_user: MakeUser, store_history: StoreHistory
) -> None:
    await store_history("us-equities-daily", ["AAPL", "IBM"])
    headers = await _viewer(make_user)
    params = {"symbol": "AAPL", "timeframe": "1d", "start": "2005-01-01", "end": "2006-01-01", "limit": "1000"}
    body = (await client.get("/api/market/candles", params=params, headers=headers)).json()
    candles = body["candles"]
    assert body["source_resolution"] == "1d"
    assert len(candles) == 252
    assert candles[0] == {
        "ts": "2005-01-03T00:00:00Z", "open": "64.78", "high": "65.11", "low": "62.6", "close": "63.29",
        "volume": "12357000",
    }  # fmt: skip
    expected = [b for b in shipped("us-equities-daily").bars[("AAPL", Timeframe.D1)] if b.ts.year == 2005]
    assert [Decimal(c["close"]) for c in candles] == [b.close for b in expected]

    # Without start: the last `limit` candles before `end`; with start: the first `limit` from start.
    without_start = {k: v for k, v in params.items() if k != "start"}
    last = (await client.get("/api/market/candles", params={**without_start, "limit": "3"}, headers=headers)).json()
    assert [c["ts"][:10] for c in last["candles"]] == ["2005-12-28", "2005-12-29", "2005-12-30"]
    first = (await client.get("/api/market/candles", params={**params, "limit": "2"}, headers=headers)).json()
    assert [c["ts"][:10] for c in first["candles"]] == ["2005-01-03", "2005-01-04"]


def _resample(bars: list[object], rule: str) -> pd.DataFrame:
    frame = pd.DataFrame(
        [{"ts": b.ts, "open": b.open, "high": b.high, "low": b.low, "close": b.close, "volume": b.volume} for b in bars]  # type: ignore[attr-defined]
    ).set_index("ts")
    aggregated = frame.resample(rule, label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    return aggregated.dropna(subset=["open"])


@pytest.mark.parametrize(
    ("dataset", "symbol", "base", "timeframes"),
    [
        ("aapl-intraday", "AAPL", Timeframe.M1, [Timeframe.M5, Timeframe.M15, Timeframe.H1, Timeframe.D1]),
        ("eurusd-1h", "EURUSD", Timeframe.H1, [Timeframe.D1]),
        ("btc-usd", "BTC-USD", Timeframe.M15, [Timeframe.H1]),
    ],
)
async def test_candles_match_an_independent_pandas_resample(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    store_history: StoreHistory,
    dataset: str,
    symbol: str,
    base: Timeframe,
    timeframes: list[Timeframe],
) -> None:
    await store_history(dataset, [symbol])
    headers = await _viewer(make_user)
    source = shipped(dataset).bars[(symbol, base)]
    rules = {Timeframe.M5: "5min", Timeframe.M15: "15min", Timeframe.H1: "1h", Timeframe.D1: "1D"}
    for tf in timeframes:
        expected = _resample(list(source), rules[tf])
        response = await client.get(
            "/api/market/candles", params={"symbol": symbol, "timeframe": tf.value, "limit": "10000"}, headers=headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["source_resolution"] == base.value
        got = body["candles"]
        assert len(got) == len(expected), (tf, len(got), len(expected))
        for candle, (ts, row) in zip(got, expected.iterrows(), strict=True):
            assert datetime.fromisoformat(candle["ts"]) == ts.to_pydatetime()
            assert [Decimal(candle[k]) for k in ("open", "high", "low", "close", "volume")] == [
                row["open"], row["high"], row["low"], row["close"], row["volume"],
            ], (tf, ts)  # fmt: skip


async def test_a_limit_never_cuts_a_candle(client: httpx.AsyncClient, make_user: MakeUser, store_history: StoreHistory) -> None:
    await store_history("aapl-intraday", ["AAPL"])
    headers = await _viewer(make_user)
    full = (
        await client.get("/api/market/candles", params={"symbol": "AAPL", "timeframe": "1h", "limit": "10000"}, headers=headers)
    ).json()["candles"]
    tail = (
        await client.get("/api/market/candles", params={"symbol": "AAPL", "timeframe": "1h", "limit": "3"}, headers=headers)
    ).json()["candles"]
    head = (
        await client.get(
            "/api/market/candles",
            params={"symbol": "AAPL", "timeframe": "1h", "limit": "2", "start": "2026-07-29T00:00:00Z"},
            headers=headers,
        )
    ).json()["candles"]
    assert tail == full[-3:]
    assert head == full[:2]


async def test_the_same_candles_are_answered_again_and_new_bars_show_at_once(
    client: httpx.AsyncClient, make_user: MakeUser, store_history: StoreHistory, runtime: Runtime
) -> None:
    await store_history("us-equities-daily", ["AAPL"])
    headers = await _viewer(make_user)
    params = {"symbol": "AAPL", "timeframe": "1d", "limit": "2"}
    first = await client.get("/api/market/candles", params=params, headers=headers)
    cache = runtime.components.get(CANDLE_CACHE)
    assert cache is not None
    assert cache.candles == 1  # the closed one kept; the last (newest bar) still forming
    again = await client.get("/api/market/candles", params=params, headers=headers)
    assert again.content == first.content

    last = datetime.fromisoformat(first.json()["candles"][-1]["ts"])
    bar = Bar("AAPL", last + timedelta(days=1), Decimal(1), Decimal(2), Decimal("0.5"), Decimal("1.5"), Decimal(100))
    async with runtime.database.session() as session:
        await BarRepository(session).write("AAPL", Timeframe.D1, [bar], source="test")
    fresh = (await client.get("/api/market/candles", params=params, headers=headers)).json()["candles"]
    assert [c["ts"] for c in fresh] == [first.json()["candles"][-1]["ts"], bar.ts.isoformat().replace("+00:00", "Z")]


async def test_bad_market_requests_are_422_with_a_reason(
    client: httpx.AsyncClient, make_user: MakeUser, store_history: StoreHistory
) -> None:
    await store_history("us-equities-daily", ["IBM"])
    headers = await _viewer(make_user)
    cases = [
        ("/api/market/candles", {"symbol": "NOPE"}, "unknown symbol 'NOPE'"),
        ("/api/market/candles", {"symbol": "IBM", "timeframe": "2m"}, "unknown timeframe '2m'"),
        ("/api/market/candles", {"symbol": "IBM", "start": "2005-02-01", "end": "2005-01-01"}, "must be before end"),
        ("/api/market/candles", {"symbol": "IBM", "timeframe": "1h"}, "IBM is stored at 1d"),
        ("/api/market/candles", {"symbol": "IBM", "limit": "0"}, "limit"),
        ("/api/market/candles", {"symbol": "BHP"}, "no price history is stored for BHP"),
        ("/api/market/quotes", {"symbols": "AAPL,NOPE,ZZZ"}, "unknown symbol(s): NOPE, ZZZ"),
        ("/api/market/quotes", {"symbols": " , "}, "give one or more"),
        ("/api/market/orderbook", {"symbol": "AAPL", "depth": "0"}, "depth"),
        ("/api/market/orderbook", {"symbol": "AAPL"}, "no order book is being published for AAPL"),
    ]
    for path, params, reason in cases:
        response = await client.get(path, params=params, headers=headers)
        assert response.status_code == 422, (path, params, response.text)
        assert reason in response.json()["detail"], (reason, response.json())


async def test_quotes_and_books_are_served_from_the_cache(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    headers = await _viewer(make_user)
    now = runtime.clock.now()
    quote = Quote("MSFT", Decimal("401.10"), Decimal("401.12"), Decimal(300), Decimal(200), Decimal("401.11"), Decimal(5), now)
    publisher = Publisher(runtime)
    await publisher.publish("test", quote)
    body = (await client.get("/api/market/quotes", params={"symbols": "msft,IBM"}, headers=headers)).json()
    assert body["unavailable"] == ["IBM"]
    assert body["quotes"] == [
        {
            "symbol": "MSFT", "bid": "401.1", "ask": "401.12", "bid_size": "300", "ask_size": "200", "last": "401.11",
            "last_size": "5", "ts": now.isoformat().replace("+00:00", "Z"), "source_ts": None,
        }
    ]  # fmt: skip
    book = OrderBook(
        "MSFT",
        tuple(BookLevel(Decimal("401.10") - Decimal("0.01") * i, Decimal(100 + i)) for i in range(5)),
        tuple(BookLevel(Decimal("401.12") + Decimal("0.01") * i, Decimal(200 + i)) for i in range(5)),
        now,
    )
    await publisher.publish("test", book)
    got = (await client.get("/api/market/orderbook", params={"symbol": "MSFT", "depth": "2"}, headers=headers)).json()
    assert got["bids"] == [["401.1", "100"], ["401.09", "101"]]
    assert got["asks"] == [["401.12", "200"], ["401.13", "201"]]


async def test_ready_reports_missing_and_stale_market_data(app: FastAPI, settings: Settings) -> None:
    # Configured as a production replica is: feeds expected (run elsewhere), stale after 5 s.
    runtime = Runtime.open(settings.model_copy(update={"marketdata_feeds": ["replay"], "marketdata_stale_seconds": 5.0}))
    try:
        await _check_readiness(runtime)
    finally:
        await runtime.close()


async def _check_readiness(runtime: Runtime) -> None:
    checker = HealthService(runtime)
    await runtime.cache.delete(HEARTBEAT_KEY)
    report = await checker.readiness(draining=False)
    assert report.status == "not_ready"
    assert "no market data published yet" in (report.checks["marketdata"].detail or "")

    await Publisher(runtime).publish(
        "test", Quote("AAPL", Decimal(1), Decimal(2), Decimal(1), Decimal(1), Decimal(1), Decimal(1), runtime.clock.now())
    )
    assert (await checker.readiness(draining=False)).status == "ready"

    old = runtime.clock.now() - timedelta(seconds=30)
    await runtime.cache.set(HEARTBEAT_KEY, repr(old.astimezone(UTC).timestamp()).encode(), 60)
    report = await checker.readiness(draining=False)
    assert report.status == "not_ready"
    assert "market data is stale: last published 30" in (report.checks["marketdata"].detail or "")


async def test_live_trades_are_stored_as_one_minute_candles_once_complete_and_kept_through_an_outage(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A feed's trades become stored 1m candles (coarser ones are rolled up from them on read); the first minute after
    start is partial (trades before it unknown) and never stored; a database outage delays a candle, never loses it."""
    headers = await _viewer(make_user)
    publisher = Publisher(runtime)
    at = datetime(2031, 1, 6, 15, 0, tzinfo=UTC)

    async def trade(seconds: int, price: str, size: str) -> None:
        await publisher.publish(
            "live-test", Trade("MSFT", Decimal(price), Decimal(size), Side.BUY, at + timedelta(seconds=seconds))
        )
        await publisher.candles_stored()  # stored off the publishing path

    async def stored(timeframe: str = "1m") -> list[list[str]]:
        params = {"symbol": "MSFT", "timeframe": timeframe, "start": at.isoformat(), "end": (at + timedelta(hours=1)).isoformat()}
        response = await client.get("/api/market/candles", params=params, headers=headers)
        if response.status_code == 422 and "no price history is stored for MSFT" in response.text:
            return []
        assert response.status_code == 200, response.text
        return [[c["ts"][11:16], c["open"], c["high"], c["low"], c["close"], c["volume"]] for c in response.json()["candles"]]

    await trade(10, "99", "7")  # 15:00, the partial first minute
    await trade(65, "100.5", "2")  # 15:01
    await trade(80, "101", "1")
    await trade(100, "100.2", "3")
    assert await stored() == []  # 15:01 is not complete yet
    writes = 0
    real_write = BarRepository.write

    async def failing_once(self: BarRepository, *args: Any, **kwargs: Any) -> Any:
        nonlocal writes
        writes += 1
        if writes == 1:
            raise sqlalchemy.exc.OperationalError("INSERT INTO bars", {}, ConnectionRefusedError("database away"))
        return await real_write(self, *args, **kwargs)

    monkeypatch.setattr(BarRepository, "write", failing_once)
    await trade(125, "100.4", "1")  # 15:02 completes 15:01: the database is away
    assert await stored() == []
    await trade(185, "100.6", "4")  # 15:03 completes 15:02: both stored now
    assert await stored() == [
        ["15:01", "100.5", "101", "100.2", "100.2", "6"],
        ["15:02", "100.4", "100.4", "100.4", "100.4", "1"],
    ]
    assert await stored("5m") == [["15:00", "100.5", "101", "100.2", "100.4", "7"]]
    await trade(200, "100.7", "1")  # the same minute again: nothing stored twice
    assert len(await stored()) == 2


def test_a_minute_no_trade_closed_is_complete_once_its_grace_passed_and_only_once() -> None:
    candles = LiveCandles()
    at = datetime(2031, 1, 6, 15, 0, tzinfo=UTC)
    assert candles.add(Trade("AAPL", Decimal(1), Decimal(1), Side.BUY, at + timedelta(seconds=5)))[1] == []
    assert candles.due(at + timedelta(minutes=5)) == []  # the first minute is partial: never stored
    candles.add(Trade("AAPL", Decimal(2), Decimal(1), Side.BUY, at + timedelta(seconds=70)))
    assert candles.due(at + timedelta(seconds=120) + STORE_GRACE - timedelta(microseconds=1)) == []
    [complete] = candles.due(at + timedelta(seconds=120) + STORE_GRACE)
    assert (complete.ts, complete.close) == (at + timedelta(minutes=1), Decimal(2))
    assert candles.due(at + timedelta(minutes=10)) == []
    assert candles.add(Trade("AAPL", Decimal(3), Decimal(1), Side.BUY, at + timedelta(seconds=130)))[1] == []


async def test_a_database_that_hangs_never_holds_back_quotes(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Complete candles are stored off the publishing path: while their write hangs, trades and quotes still go out."""
    release = asyncio.Event()

    async def hanging(*_: Any, **__: Any) -> Any:
        await release.wait()

    monkeypatch.setattr(BarRepository, "write", hanging)
    publisher = Publisher(runtime)
    at = datetime(2031, 1, 6, 15, 0, tzinfo=UTC)
    for minute in range(4):
        trade = Trade("MSFT", Decimal(100 + minute), Decimal(1), Side.BUY, at + timedelta(minutes=minute, seconds=5))
        await asyncio.wait_for(publisher.publish("live-test", trade), 2)
    quote = Quote("MSFT", Decimal(1), Decimal(2), Decimal(1), Decimal(1), Decimal(1), Decimal(1), runtime.clock.now())
    await asyncio.wait_for(publisher.publish("live-test", quote), 2)
    release.set()
    await publisher.candles_stored()
