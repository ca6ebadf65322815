"""Runs feeds and publishes what they produce: cache (latest quote and book), bus (WebSocket fan-out), metrics.

In embedded mode the runner lives inside the API process; in production `tradestack serve
marketdata` runs it alone and API replicas read the Redis cache and pub/sub.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

import orjson

from tradestack.domain.feeds import Feed
from tradestack.domain.marketdata import Bar, OrderBook, Quote, Timeframe, Trade
from tradestack.kit.logging import get_logger
from tradestack.kit.metrics import MARKET_DATA_EVENTS, MARKET_DATA_LAST_UPDATE, MARKET_DATA_LATENCY
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.schemas import book_json, candle_json, frame, quote_json
from tradestack.marketdata.service import BOOK_KEY, FANOUT_CHANNEL, HEARTBEAT_KEY, QUOTE_KEY, encode_message

log = get_logger(__name__)
HEARTBEAT_EVERY_SECONDS = 0.5
RESTART_DELAY_SECONDS = 2.0


class LiveCandles:
    """The candle being built for each (symbol, timeframe) from trades as they happen."""

    def __init__(self) -> None:
        self._current: dict[tuple[str, Timeframe], Bar] = {}

    def add(self, trade: Trade) -> list[tuple[Timeframe, Bar]]:
        """Fold `trade` into every timeframe's current candle; returns the updated candles."""
        updated = []
        for tf in Timeframe:
            start = tf.floor(trade.ts)
            bar = self._current.get((trade.symbol, tf))
            print_ = Bar(trade.symbol, start, trade.price, trade.price, trade.price, trade.price, trade.size)
            bar = print_ if bar is None or bar.ts != start else bar.extended(print_)
            self._current[(trade.symbol, tf)] = bar
            updated.append((tf, bar))
        return updated


class Publisher:
    """Publishes market events to the cache, the bus and the metrics."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.candles = LiveCandles()
        self._heartbeat_at = 0.0
        self._ttl = runtime.settings.quote_ttl_seconds

    async def publish(self, feed: str, event: Quote | Trade | OrderBook) -> None:
        """Make `event` visible to API readers and WebSocket subscribers."""
        cache, bus = self.runtime.cache, self.runtime.bus
        if isinstance(event, Quote):
            data = quote_json(event)
            await cache.set(QUOTE_KEY + event.symbol, orjson.dumps(data), self._ttl)
            channel = f"quotes:{event.symbol}"
            await bus.publish(FANOUT_CHANNEL, encode_message(channel, frame("quote", channel, data)))
            kind = "quote"
        elif isinstance(event, Trade):
            for tf, bar in self.candles.add(event):
                channel = f"candles:{event.symbol}:{tf.value}"
                await bus.publish(FANOUT_CHANNEL, encode_message(channel, frame("candle", channel, candle_json(bar, tf))))
            kind = "trade"
        else:
            data = book_json(event)
            await cache.set(BOOK_KEY + event.symbol, orjson.dumps(data), self._ttl)
            channel = f"orderbook:{event.symbol}"
            await bus.publish(FANOUT_CHANNEL, encode_message(channel, frame("orderbook", channel, data)))
            kind = "orderbook"
        now = self.runtime.clock.now()
        MARKET_DATA_LATENCY.labels(feed=feed).observe(max(0.0, (now - event.ts).total_seconds()))
        MARKET_DATA_EVENTS.labels(feed=feed, kind=kind).inc()
        if kind == "quote":
            MARKET_DATA_LAST_UPDATE.labels(symbol=event.symbol).set(now.timestamp())
        await self._heartbeat(now)

    async def _heartbeat(self, now: datetime) -> None:
        stamp = now.timestamp()
        if stamp - self._heartbeat_at >= HEARTBEAT_EVERY_SECONDS:
            self._heartbeat_at = stamp
            await self.runtime.cache.set(HEARTBEAT_KEY, repr(stamp).encode(), 3600)


class MarketDataRunner:
    """Runs each feed in its own task and publishes its events; a feed that fails is restarted."""

    def __init__(self, runtime: Runtime, feeds: Sequence[Feed]) -> None:
        self.runtime = runtime
        self.feeds = list(feeds)
        self.publisher = Publisher(runtime)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start every feed in the background."""
        for feed in self.feeds:
            self._tasks.append(asyncio.create_task(self._run(feed), name=f"feed:{feed.name}"))
        log.info("market data feeds started", feeds=[f.name for f in self.feeds])

    async def _run(self, feed: Feed) -> None:
        while True:
            try:
                async for event in feed.events():
                    await self.publisher.publish(feed.name, event)
                log.info("feed ended", feed=feed.name)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one failing feed must not stop the others
                log.warning("feed failed; restarting", feed=feed.name, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(RESTART_DELAY_SECONDS)

    async def run_forever(self) -> None:
        """Run until cancelled (``tradestack serve marketdata``)."""
        self.start()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop every feed."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # noqa: BLE001
                log.warning("feed task ended with an error", error=str(exc))
        self._tasks.clear()
        for feed in self.feeds:
            await feed.close()
