"""A live `Feed` polling a crypto venue's public REST market data through ccxt.

Each poll fetches, for every symbol, the ticker (published as a `Quote`) and the top `depth`
levels of the order book (an `OrderBook`), then waits `poll_seconds`. No API keys are used.

Numbers: ccxt parses the venue's JSON text into floats; they become Decimals through
``Decimal(str(value))``. `str` of a float is the shortest text that reads back as the same float,
so a venue value such as ``"97234.01000000"`` comes back as ``Decimal("97234.01")`` — equal in
value, trailing zeros dropped. Only values with more than 15 significant digits could differ.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]

from tradestack.core.clock import Clock
from tradestack.domain.feeds import FeedError
from tradestack.domain.marketdata import Bar, BookLevel, MarketEvent, OrderBook, Quote, Timeframe
from tradestack.kit.aio import wait_event
from tradestack.kit.logging import get_logger

log = get_logger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_RETRY_DELAY = 30.0

# Options that make `load_markets` read spot markets only. Binance otherwise also loads USDⓈ-M and
# COIN-M futures (fapi/dapi exchangeInfo) on every start; margin pairs and currencies need API keys.
_SPOT_ONLY_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {
        "defaultType": "spot",
        "fetchMarkets": {"types": ["spot"]},
        "fetchMargins": False,
        "fetchCurrencies": False,
    },
}

# Asking again will not help: a bad symbol or request, missing keys, an unsupported method.
_PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    ccxt_async.BadRequest,
    ccxt_async.AuthenticationError,
    ccxt_async.NotSupported,
    ccxt_async.ArgumentsRequired,
)
# Network trouble (timeouts, rate limits, maintenance, bad responses) and other venue errors.
_RETRYABLE_ERRORS: tuple[type[Exception], ...] = (ccxt_async.OperationFailed, ccxt_async.ExchangeError)


def make_exchange(exchange_id: str, config: Mapping[str, Any] | None = None) -> Any:
    """Build a ccxt async exchange for public market data.

    ccxt's rate limiter is on and, where the venue's ccxt class allows it, only spot markets are
    loaded. `config` is merged over these defaults (its ``options`` merged key by key).
    """
    if exchange_id not in ccxt_async.exchanges:
        raise ValueError(f"ccxt has no exchange {exchange_id!r}")
    extra = dict(config or {})
    options = {**_SPOT_ONLY_OPTIONS.get(exchange_id, {}), **extra.pop("options", {})}
    return getattr(ccxt_async, exchange_id)({"enableRateLimit": True, **extra, "options": options})


def _decimal(value: Any) -> Decimal | None:
    """Convert a venue number to a Decimal; None when absent or not finite."""
    if value is None:
        return None
    if isinstance(value, float):
        return Decimal(str(value)) if math.isfinite(value) else None
    result = Decimal(str(value))
    return result if result.is_finite() else None


def _from_ms(value: Any) -> datetime | None:
    """Convert Unix milliseconds to a UTC datetime."""
    if value is None:
        return None
    return _EPOCH + timedelta(milliseconds=int(value))


def _to_ms(ts: datetime) -> int:
    """Convert a UTC datetime to Unix milliseconds."""
    if ts.tzinfo is None or ts.utcoffset() != timedelta(0):
        raise ValueError(f"timestamps must be timezone-aware UTC, got {ts!r}")
    return (ts - _EPOCH) // timedelta(milliseconds=1)


class CcxtFeed:
    """Quotes and order books of a crypto venue, polled through ccxt's public REST API.

    `symbols` maps our symbols to the venue's ccxt symbols (``{"BTC-USD": "BTC/USDT"}``). Event
    timestamps are the venue's when it gives one, otherwise the injected clock's. A failed request
    is retried `max_retries` times with exponential backoff from `retry_delay` seconds; then, or at
    once for errors that cannot heal (unknown symbol, bad request), `FeedError` is raised.
    """

    def __init__(
        self,
        exchange_id: str,
        symbols: Mapping[str, str],
        *,
        poll_seconds: float = 1.0,
        depth: int = 10,
        exchange: Any | None = None,
        clock: Clock,
        max_retries: int = 3,
        retry_delay: float = 0.5,
    ) -> None:
        """Poll `symbols` on `exchange_id`; `exchange` replaces the ccxt instance `make_exchange` would build."""
        if not symbols:
            raise ValueError("a feed needs at least one symbol")
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        if poll_seconds < 0 or max_retries < 0 or retry_delay < 0:
            raise ValueError("poll_seconds, max_retries and retry_delay cannot be negative")
        self._exchange_id = exchange_id
        self._symbols = dict(symbols)
        self._poll_seconds = poll_seconds
        self._depth = depth
        self._exchange = exchange if exchange is not None else make_exchange(exchange_id)
        self._clock = clock
        self._max_retries = max_retries
        self._retry_delay = retry_delay
        self._closed = asyncio.Event()

    @property
    def name(self) -> str:
        """Feed name for logs and metrics, ``ccxt:<exchange id>``."""
        return f"ccxt:{self._exchange_id}"

    @property
    def symbols(self) -> tuple[str, ...]:
        """Our symbols this feed produces."""
        return tuple(self._symbols)

    async def events(self) -> AsyncGenerator[MarketEvent, None]:
        """Poll every symbol's quote and book until closed; raise `FeedError` when the venue stays unreachable."""
        try:
            await self._call("load_markets")
            while True:
                for symbol, venue_symbol in self._symbols.items():
                    for event in await self._poll(symbol, venue_symbol):
                        yield event
                if await self._closed_within(self._poll_seconds):
                    return
        except FeedError:
            if self._closed.is_set():
                return
            raise

    async def fetch_bars(self, symbol: str, timeframe: Timeframe, since: datetime | None, limit: int) -> list[Bar]:
        """Fetch up to `limit` closed bars of `symbol` from `since` (the venue's most recent when None), oldest first.

        A bar still forming by the injected clock (the venue's newest) is left out, so a result
        can hold fewer than `limit` bars.
        """
        venue_symbol = self._venue_symbol(symbol)
        since_ms = None if since is None else _to_ms(since)
        rows: Sequence[Sequence[Any]] = await self._call("fetch_ohlcv", venue_symbol, timeframe.value, since_ms, limit)
        now = self._clock.now()
        bars = []
        for row in rows:
            ts = _from_ms(row[0])
            ohlcv = [d for d in (_decimal(v) for v in row[1:6]) if d is not None]
            if ts is None or len(ohlcv) != 5:
                raise FeedError(f"{self.name}: incomplete {timeframe.value} bar for {venue_symbol}: {row!r}")
            if ts + timeframe.delta > now:
                continue
            open_, high, low, close, volume = ohlcv
            bars.append(Bar(symbol, ts, open_, high, low, close, volume))
        return bars

    async def close(self) -> None:
        """Stop polling and close the ccxt exchange's HTTP session."""
        self._closed.set()
        await self._exchange.close()

    async def _closed_within(self, seconds: float) -> bool:
        """Wait up to `seconds`, returning early (True) when the feed is closed."""
        return await wait_event(self._closed, seconds)

    def _venue_symbol(self, symbol: str) -> str:
        try:
            return self._symbols[symbol]
        except KeyError:
            raise ValueError(f"{self.name} does not carry {symbol!r}; it has {', '.join(self._symbols)}") from None

    async def _poll(self, symbol: str, venue_symbol: str) -> list[MarketEvent]:
        events: list[MarketEvent] = []
        ticker = await self._call("fetch_ticker", venue_symbol)
        quote = self._quote(symbol, ticker)
        if quote is not None:
            events.append(quote)
        book = await self._call("fetch_order_book", venue_symbol, self._depth)
        order_book = self._order_book(symbol, book)
        if order_book is not None:
            events.append(order_book)
        return events

    async def _call(self, method: str, *args: Any) -> Any:
        """Call an exchange method, retrying transient failures with exponential backoff."""
        for attempt in range(self._max_retries + 1):
            if self._closed.is_set():
                raise FeedError(f"{self.name} is closed")
            try:
                return await getattr(self._exchange, method)(*args)
            except _PERMANENT_ERRORS as exc:
                raise FeedError(f"{self.name}: {method}{args!r} was refused: {type(exc).__name__}: {exc}") from exc
            except _RETRYABLE_ERRORS as exc:
                if attempt == self._max_retries:
                    raise FeedError(
                        f"{self.name}: {method}{args!r} failed {attempt + 1} times; last error {type(exc).__name__}: {exc}"
                    ) from exc
                delay = min(_MAX_RETRY_DELAY, self._retry_delay * 2**attempt)
                log.warning(
                    "ccxt request failed; retrying",
                    feed=self.name,
                    method=method,
                    attempt=attempt + 1,
                    retry_in=delay,
                    error=f"{type(exc).__name__}: {exc}",
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _quote(self, symbol: str, ticker: Mapping[str, Any]) -> Quote | None:
        bid, ask, last = (_decimal(ticker.get(key)) for key in ("bid", "ask", "last"))
        if bid is None or ask is None or last is None:
            log.warning("ticker without bid, ask or last; quote skipped", feed=self.name, symbol=symbol)
            return None
        # ccxt's unified ticker has no last-trade size; Binance-style venues send it raw as lastQty.
        info = ticker.get("info")
        last_size = _decimal(info.get("lastQty")) if isinstance(info, Mapping) else None
        try:
            return Quote(
                symbol=symbol,
                bid=bid,
                ask=ask,
                bid_size=_decimal(ticker.get("bidVolume")) or Decimal(0),
                ask_size=_decimal(ticker.get("askVolume")) or Decimal(0),
                last=last,
                last_size=last_size or Decimal(0),
                ts=_from_ms(ticker.get("timestamp")) or self._clock.now(),
            )
        except ValueError as exc:  # crossed top of book
            log.warning("invalid ticker; quote skipped", feed=self.name, symbol=symbol, error=str(exc))
            return None

    def _order_book(self, symbol: str, book: Mapping[str, Any]) -> OrderBook | None:
        try:
            return OrderBook(
                symbol=symbol,
                bids=self._levels(book.get("bids")),
                asks=self._levels(book.get("asks")),
                ts=_from_ms(book.get("timestamp")) or self._clock.now(),
            )
        except ValueError as exc:  # crossed or unordered levels
            log.warning("invalid order book; skipped", feed=self.name, symbol=symbol, error=str(exc))
            return None

    def _levels(self, raw: Any) -> tuple[BookLevel, ...]:
        """Convert ccxt levels (``[price, amount, ...]``, best first) to at most `depth` BookLevels."""
        levels = []
        for entry in (raw or [])[: self._depth]:
            price, size = _decimal(entry[0]), _decimal(entry[1])
            if price is not None and size is not None:
                levels.append(BookLevel(price, size))
        return tuple(levels)
