"""The ccxt feed against a real ccxt Binance instance whose HTTP layer serves recorded responses.

Only ``exchange.fetch`` is replaced: ccxt still builds every URL, parses every response and
raises its own errors. A request without a recorded response fails the test, naming the URL.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]
import pytest

from tradestack.adapters.ccxt import CcxtFeed, make_exchange
from tradestack.core.clock import SimClock
from tradestack.domain.feeds import FeedError
from tradestack.domain.marketdata import BookLevel, MarketEvent, OrderBook, Quote, Timeframe

FIXTURES = Path(__file__).parents[2] / "fixtures" / "ccxt" / "binance"
BASE = "https://api.binance.com"
# (path, symbol query parameter) -> recorded response body
ROUTES = {
    ("/api/v3/exchangeInfo", None): "exchangeInfo.json",
    ("/api/v3/ticker/24hr", "BTCUSDT"): "ticker_24hr_BTCUSDT.json",
    ("/api/v3/ticker/24hr", "ETHUSDT"): "ticker_24hr_ETHUSDT.json",
    ("/api/v3/depth", "BTCUSDT"): "depth_BTCUSDT.json",
    ("/api/v3/depth", "ETHUSDT"): "depth_ETHUSDT.json",
    ("/api/v3/klines", "BTCUSDT"): "klines_BTCUSDT_1m.json",
}
SYMBOLS = {"BTC-USD": "BTC/USDT", "ETH-USD": "ETH/USDT"}
NOW = datetime(2024, 11, 21, 12, 0, 0, 123000, tzinfo=UTC)  # the fixtures' serverTime


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _utc_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


@dataclass
class RecordedBinance:
    """Stands in for ccxt's HTTP layer: recorded bodies by path and symbol, injectable failures."""

    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    failures: deque[Exception] = field(default_factory=deque)
    overrides: dict[str, Any] = field(default_factory=dict)
    close_calls: int = 0

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        """Same signature and contract as ``ccxt.async_support.Exchange.fetch``: the parsed JSON body."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.requests.append((parts.path, query))
        route = ROUTES.get((parts.path, query.get("symbol")))
        if method != "GET" or f"{parts.scheme}://{parts.netloc}" != BASE or route is None or body is not None:
            self.unrecorded.append(f"{method} {url}")
            raise AssertionError(f"ccxt requested {method} {url}, which has no recorded response")
        if self.failures:
            raise self.failures.popleft()
        return self.overrides[route] if route in self.overrides else _fixture(route)


@pytest.fixture
async def venue() -> AsyncIterator[tuple[Any, RecordedBinance]]:
    """A real ccxt Binance instance, built as the feed builds it, answering from the fixtures."""
    exchange = make_exchange("binance")
    recorded = RecordedBinance()
    exchange.fetch = recorded.fetch
    original_close = exchange.close

    async def close() -> None:
        recorded.close_calls += 1
        await original_close()

    exchange.close = close
    yield exchange, recorded
    await original_close()
    assert recorded.unrecorded == [], f"requests without a recorded response: {recorded.unrecorded}"


def _feed(exchange: Any, symbols: dict[str, str] | None = None, *, at: datetime = NOW, max_retries: int = 3) -> CcxtFeed:
    return CcxtFeed(
        "binance",
        symbols or SYMBOLS,
        poll_seconds=0,
        depth=10,
        exchange=exchange,
        clock=SimClock(at),
        max_retries=max_retries,
        retry_delay=0,
    )


async def _take(feed: CcxtFeed, count: int) -> list[MarketEvent]:
    events: list[MarketEvent] = []
    async with aclosing(feed.events()) as stream:
        async for event in stream:
            events.append(event)
            if len(events) == count:
                break
    return events


async def test_markets_load_from_spot_exchange_info_only(venue: tuple[Any, RecordedBinance]) -> None:
    exchange, recorded = venue
    markets = await exchange.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT"}
    btc = markets["BTC/USDT"]
    assert (btc["id"], btc["spot"], btc["active"]) == ("BTCUSDT", True, True)
    assert (btc["precision"]["price"], btc["precision"]["amount"]) == (0.01, 0.00001)
    assert recorded.requests == [("/api/v3/exchangeInfo", {})]
    assert exchange.enableRateLimit is True


async def test_one_poll_yields_exact_quote_and_ordered_book_per_symbol(venue: tuple[Any, RecordedBinance]) -> None:
    exchange, recorded = venue
    events = await _take(_feed(exchange), 4)

    assert [type(e) for e in events] == [Quote, OrderBook, Quote, OrderBook]
    assert [e.symbol for e in events] == ["BTC-USD", "BTC-USD", "ETH-USD", "ETH-USD"]
    quote, book = events[0], events[1]
    assert isinstance(quote, Quote)
    assert isinstance(book, OrderBook)

    ticker = _fixture("ticker_24hr_BTCUSDT.json")
    assert quote.bid == Decimal(ticker["bidPrice"]) == Decimal("97234.01")
    assert quote.ask == Decimal(ticker["askPrice"]) == Decimal("97234.02")
    assert (quote.bid_size, quote.ask_size) == (Decimal(ticker["bidQty"]), Decimal(ticker["askQty"]))
    assert (quote.last, quote.last_size) == (Decimal(ticker["lastPrice"]), Decimal(ticker["lastQty"]))
    assert quote.ts == _utc_ms(ticker["closeTime"])
    assert quote.source_ts is None

    depth = _fixture("depth_BTCUSDT.json")
    assert book.bids == tuple(BookLevel(Decimal(p), Decimal(q)) for p, q in depth["bids"])
    assert book.asks == tuple(BookLevel(Decimal(p), Decimal(q)) for p, q in depth["asks"])
    assert book.bids[0].price > book.bids[-1].price
    assert book.asks[0].price < book.asks[-1].price
    assert book.ts == NOW  # spot depth carries no timestamp: the clock's

    assert recorded.requests == [
        ("/api/v3/exchangeInfo", {}),
        ("/api/v3/ticker/24hr", {"symbol": "BTCUSDT"}),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "10"}),
        ("/api/v3/ticker/24hr", {"symbol": "ETHUSDT"}),
        ("/api/v3/depth", {"symbol": "ETHUSDT", "limit": "10"}),
    ]


async def test_fetch_bars_returns_exact_ohlcv_with_utc_starts(venue: tuple[Any, RecordedBinance]) -> None:
    exchange, recorded = venue
    since = datetime(2024, 11, 21, 11, 55, tzinfo=UTC)
    bars = await _feed(exchange).fetch_bars("BTC-USD", Timeframe.M1, since, 5)

    klines = _fixture("klines_BTCUSDT_1m.json")
    assert len(bars) == len(klines) == 5
    for bar, row in zip(bars, klines, strict=True):
        assert bar.symbol == "BTC-USD"
        assert bar.ts == _utc_ms(row[0])
        assert bar.ts.utcoffset() == timedelta(0)
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == tuple(Decimal(v) for v in row[1:6])
    assert [b.ts for b in bars] == [since + timedelta(minutes=i) for i in range(5)]
    assert recorded.requests[-1] == (
        "/api/v3/klines",
        {"symbol": "BTCUSDT", "interval": "1m", "limit": "5", "startTime": "1732190100000"},
    )


async def test_fetch_bars_leaves_out_the_bar_still_forming(venue: tuple[Any, RecordedBinance]) -> None:
    exchange, _ = venue
    feed = _feed(exchange, at=datetime(2024, 11, 21, 11, 59, 30, tzinfo=UTC))
    bars = await feed.fetch_bars("BTC-USD", Timeframe.M1, datetime(2024, 11, 21, 11, 55, tzinfo=UTC), 5)
    assert bars[-1].ts == datetime(2024, 11, 21, 11, 58, tzinfo=UTC)
    assert len(bars) == 4


async def test_fetch_bars_refuses_unknown_symbol_and_naive_since(venue: tuple[Any, RecordedBinance]) -> None:
    exchange, recorded = venue
    feed = _feed(exchange)
    with pytest.raises(ValueError, match="DOGE-USD"):
        await feed.fetch_bars("DOGE-USD", Timeframe.M1, None, 5)
    with pytest.raises(ValueError, match="UTC"):
        await feed.fetch_bars("BTC-USD", Timeframe.M1, datetime(2024, 11, 21), 5)  # noqa: DTZ001 - the point of the test
    assert recorded.requests == []


async def test_network_errors_are_retried_until_the_venue_answers(venue: tuple[Any, RecordedBinance]) -> None:
    exchange, recorded = venue
    recorded.failures.extend([ccxt_async.RequestTimeout("binance GET timed out"), ccxt_async.ExchangeNotAvailable("502")])
    events = await _take(_feed(exchange, {"BTC-USD": "BTC/USDT"}, max_retries=3), 2)
    assert [type(e) for e in events] == [Quote, OrderBook]
    paths = [path for path, _ in recorded.requests]
    assert paths == ["/api/v3/exchangeInfo"] * 3 + ["/api/v3/ticker/24hr", "/api/v3/depth"]


async def test_persistent_errors_raise_feed_error_naming_venue_and_cause(venue: tuple[Any, RecordedBinance]) -> None:
    exchange, recorded = venue
    recorded.failures.extend(ccxt_async.NetworkError(f"connection reset {i}") for i in range(10))
    with pytest.raises(FeedError, match=r"ccxt:binance: load_markets.*failed 3 times.*connection reset 2") as raised:
        await _take(_feed(exchange, max_retries=2), 1)
    assert isinstance(raised.value.__cause__, ccxt_async.NetworkError)
    assert len(recorded.requests) == 3


async def test_unknown_venue_symbol_fails_at_once_without_retrying(venue: tuple[Any, RecordedBinance]) -> None:
    exchange, recorded = venue
    with pytest.raises(FeedError, match="refused: BadSymbol") as raised:
        await _take(_feed(exchange, {"DOGE-USD": "DOGE/USDT"}), 1)
    assert isinstance(raised.value.__cause__, ccxt_async.BadSymbol)
    assert recorded.requests == [("/api/v3/exchangeInfo", {})]


async def test_ticker_without_bid_and_ask_yields_only_the_book(venue: tuple[Any, RecordedBinance]) -> None:
    exchange, recorded = venue
    ticker = _fixture("ticker_24hr_BTCUSDT.json")
    ticker.update(bidPrice=None, bidQty=None, askPrice=None, askQty=None)
    recorded.overrides["ticker_24hr_BTCUSDT.json"] = ticker
    events = await _take(_feed(exchange, {"BTC-USD": "BTC/USDT"}), 2)
    assert [type(e) for e in events] == [OrderBook, OrderBook]


async def test_close_ends_the_stream_and_closes_the_exchange(venue: tuple[Any, RecordedBinance]) -> None:
    exchange, recorded = venue
    feed = _feed(exchange, {"BTC-USD": "BTC/USDT"})
    assert feed.name == "ccxt:binance"
    assert feed.symbols == ("BTC-USD",)
    stream = feed.events()
    assert isinstance(await anext(stream), Quote)
    await feed.close()
    assert recorded.close_calls == 1
    remaining = [event async for event in stream]
    assert [type(e) for e in remaining] == [OrderBook]  # the poll in flight finishes; no new requests
    assert len(recorded.requests) == 3


async def test_unrecorded_request_fails_loudly(venue: tuple[Any, RecordedBinance]) -> None:
    exchange, recorded = venue
    await exchange.load_markets()
    with pytest.raises(AssertionError, match=r"GET https://api.binance.com/api/v3/aggTrades\?symbol=BTCUSDT"):
        await exchange.fetch_trades("BTC/USDT")
    recorded.unrecorded.clear()  # expected here; any other test with an unrecorded request fails at teardown
