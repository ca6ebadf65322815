"""Runs feeds and publishes what they produce: cache (latest quote and book), bus (WebSocket fan-out), metrics.

In embedded mode the runner lives inside the API process, on a thread and event loop of its own
(`FeedThread`); in production `tradestack serve marketdata` runs it alone and API replicas read the
Redis cache and pub/sub.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby

import orjson

from tradestack.domain.feeds import Feed
from tradestack.domain.marketdata import Bar, OrderBook, Quote, Timeframe, Trade
from tradestack.kit.aio import cancel_and_wait, stop_loop_thread, stop_tasks
from tradestack.kit.logging import get_logger
from tradestack.kit.metrics import MARKET_DATA_EVENTS, MARKET_DATA_LAST_UPDATE, MARKET_DATA_LATENCY
from tradestack.kit.outages import count_failure, count_outage, unavailable_backend
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.repository import BarRepository
from tradestack.marketdata.schemas import book_json, candle_json, frame, quote_json
from tradestack.marketdata.service import BOOK_KEY, FANOUT_CHANNEL, HEARTBEAT_KEY, QUOTE_KEY, encode_message

log = get_logger(__name__)
HEARTBEAT_EVERY_SECONDS = 0.5
STORE_GRACE = timedelta(seconds=5)
"""How long after its minute ended a candle no trade closed is stored anyway (late prints have arrived by then)."""
MAX_UNSTORED_CANDLES = 100_000
STORE_WAIT_SECONDS = 5.0
RESTART_DELAY_SECONDS = 2.0
FEED_STOP_SECONDS = 2.0
"""How long a stopping feed's cancellation may take before it is cancelled again (a closed feed ends after its step)."""
CANCEL_ATTEMPTS = 3
MAX_PENDING = 10_000
THREAD_START_SECONDS = 10.0
THREAD_STOP_SECONDS = 10.0


class LiveCandles:
    """The candle being built for each (symbol, timeframe) from trades as they happen, and the one-minute
    candles that are complete (to be stored: coarser timeframes are rolled up from them when read).

    A minute is complete when a trade of a later minute arrives, or (`due`) once it ended `STORE_GRACE_SECONDS`
    ago. The first minute of a symbol after start is never stored: its trades before the start are unknown,
    so its open and volume would be wrong. A trade older than the current minute is shown but never changes
    a stored candle.
    """

    def __init__(self) -> None:
        self._current: dict[tuple[str, Timeframe], Bar] = {}
        self._first_minute: dict[str, datetime] = {}
        self._stored_until: dict[str, datetime] = {}
        """Per symbol: minutes starting before this are stored (or were never to be)."""

    def add(self, trade: Trade) -> tuple[list[tuple[Timeframe, Bar]], list[Bar]]:
        """Fold `trade` into every timeframe's current candle: the updated candles, and the minutes it completed."""
        updated = []
        complete: list[Bar] = []
        for tf in Timeframe:
            start = tf.floor(trade.ts)
            bar = self._current.get((trade.symbol, tf))
            print_ = Bar(trade.symbol, start, trade.price, trade.price, trade.price, trade.price, trade.size)
            if tf is Timeframe.M1:
                self._first_minute.setdefault(trade.symbol, start)
                if bar is not None and bar.ts < start:
                    complete.extend(self._complete(bar))
            bar = print_ if bar is None or bar.ts != start else bar.extended(print_)
            self._current[(trade.symbol, tf)] = bar
            updated.append((tf, bar))
        return updated, complete

    def due(self, now: datetime) -> list[Bar]:
        """The minutes that ended `STORE_GRACE_SECONDS` before `now` and are not stored yet (no trade closed them)."""
        complete: list[Bar] = []
        for (_, tf), bar in self._current.items():
            if tf is Timeframe.M1 and bar.ts + tf.delta + STORE_GRACE <= now:
                complete.extend(self._complete(bar))
        return complete

    def _complete(self, bar: Bar) -> list[Bar]:
        if bar.ts < self._stored_until.get(bar.symbol, bar.ts) or bar.ts == self._first_minute.get(bar.symbol):
            return []
        self._stored_until[bar.symbol] = bar.ts + Timeframe.M1.delta
        return [bar]


@dataclass(slots=True)
class Publication:
    """What one market event changes: cache entries to store and bus messages to publish, encoded."""

    stores: list[tuple[str, bytes]] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    at: datetime | None = None
    candles: list[tuple[str, Bar]] = field(default_factory=list)
    """Complete one-minute candles to store, with the feed that printed them."""


class Publisher:
    """Publishes market events to the cache, the bus and the metrics.

    `prepare` does the work of an event (candles, JSON, metrics) and touches no backend, so it can
    run on the feeds' own thread; `emit` stores and publishes the result on the loop that owns the
    runtime's backends. `publish` is both, on the caller's loop.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.candles = LiveCandles()
        self._heartbeat_at = 0.0
        self._swept_at = 0.0
        self._ttl = runtime.settings.quote_ttl_seconds
        self._unstored: deque[tuple[str, Bar]] = deque(maxlen=MAX_UNSTORED_CANDLES)
        """Complete candles not stored yet (the database was away): retried with the next ones."""
        self._storing: asyncio.Task[None] | None = None

    async def publish(self, feed: str, event: Quote | Trade | OrderBook) -> None:
        """Make `event` visible to API readers and WebSocket subscribers."""
        await self.emit(self.prepare(feed, event))

    def prepare(self, feed: str, event: Quote | Trade | OrderBook) -> Publication:
        """Encode what `event` changes and count it in the metrics (no I/O)."""
        out = Publication()
        if isinstance(event, Quote):
            data = quote_json(event)
            out.stores.append((QUOTE_KEY + event.symbol, orjson.dumps(data)))
            channel = f"quotes:{event.symbol}"
            out.messages.append(encode_message(channel, frame("quote", channel, data)))
            kind = "quote"
        elif isinstance(event, Trade):
            updated, complete = self.candles.add(event)
            for tf, bar in updated:
                channel = f"candles:{event.symbol}:{tf.value}"
                out.messages.append(encode_message(channel, frame("candle", channel, candle_json(bar, tf))))
            out.candles.extend((feed, bar) for bar in complete)
            kind = "trade"
        else:
            data = book_json(event)
            out.stores.append((BOOK_KEY + event.symbol, orjson.dumps(data)))
            channel = f"orderbook:{event.symbol}"
            out.messages.append(encode_message(channel, frame("orderbook", channel, data)))
            kind = "orderbook"
        now = self.runtime.clock.now()
        MARKET_DATA_LATENCY.labels(feed=feed).observe(max(0.0, (now - event.ts).total_seconds()))
        MARKET_DATA_EVENTS.labels(feed=feed, kind=kind).inc()
        if kind == "quote":
            MARKET_DATA_LAST_UPDATE.labels(symbol=event.symbol).set(now.timestamp())
        if now.timestamp() - self._swept_at >= 1.0:
            self._swept_at = now.timestamp()
            out.candles.extend((feed, bar) for bar in self.candles.due(now))
        out.at = now
        return out

    async def emit(self, publication: Publication) -> None:
        """Store and publish a prepared event (on the loop that owns the runtime's backends)."""
        cache, bus = self.runtime.cache, self.runtime.bus
        for key, value in publication.stores:
            await cache.set(key, value, self._ttl)
        for message in publication.messages:
            await bus.publish(FANOUT_CHANNEL, message)
        if publication.at is not None:
            await self._heartbeat(publication.at)
        if publication.candles:
            self._unstored.extend(publication.candles)
            if self._storing is None or self._storing.done():  # off the publishing path: an outage never holds quotes
                self._storing = asyncio.create_task(self.store_candles(), name="marketdata:candles")

    async def candles_stored(self, seconds: float = STORE_WAIT_SECONDS) -> None:
        """Wait (at most `seconds`) until the candles being stored are (a stop, a test)."""
        if self._storing is not None and not self._storing.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._storing), seconds)

    async def store_candles(self) -> None:
        """Store the complete candles waiting, a transaction per batch; on an outage they are kept for the next try."""
        while self._unstored:
            batch = sorted(self._unstored, key=lambda item: (item[0], item[1].symbol, item[1].ts))
            self._unstored.clear()
            try:
                async with self.runtime.database.session() as session:
                    bars = BarRepository(session)
                    for (feed, symbol), group in groupby(batch, key=lambda item: (item[0], item[1].symbol)):
                        await bars.write(symbol, Timeframe.M1, [bar for _, bar in group], source=f"live:{feed}")
            except Exception as exc:  # noqa: BLE001 - an outage keeps them for the next try; a bug drops them (logged)
                if unavailable_backend(exc) is None:
                    # A bug, not an outage: retrying would fail again and hold back every later candle.
                    count_failure("live_candles", exc, "live candles not storable; dropped", candles=len(batch))
                    continue
                count_outage("database", "live_candles", exc)
                self._unstored.extendleft(reversed(batch))  # stored with the next complete candle
                return

    async def _heartbeat(self, now: datetime) -> None:
        stamp = now.timestamp()
        if stamp - self._heartbeat_at >= HEARTBEAT_EVERY_SECONDS:
            self._heartbeat_at = stamp
            await self.runtime.cache.set(HEARTBEAT_KEY, repr(stamp).encode(), 3600)


Sink = Callable[[str, Quote | Trade | OrderBook], Awaitable[None]]


class MarketDataRunner:
    """Runs each feed in its own task and publishes its events; a feed that fails is restarted."""

    def __init__(self, runtime: Runtime, feeds: Sequence[Feed]) -> None:
        self.runtime = runtime
        self.feeds = list(feeds)
        self.publisher = Publisher(runtime)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, sink: Sink | None = None) -> None:
        """Start every feed in the background on the running loop; events go to `sink` (default: publish them)."""
        for feed in self.feeds:
            self._tasks.append(asyncio.create_task(self._run(feed, sink or self.publisher.publish), name=f"feed:{feed.name}"))
        log.info("market data feeds started", feeds=[f.name for f in self.feeds])

    async def _run(self, feed: Feed, sink: Sink) -> None:
        while True:
            try:
                async for event in feed.events():
                    await sink(feed.name, event)
                log.info("feed ended", feed=feed.name)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one failing feed must not stop the others
                log.warning("feed failed; restarting", feed=feed.name, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(RESTART_DELAY_SECONDS)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Run until every feed ends or `stop` is set, then stop cleanly (``tradestack serve marketdata``)."""
        self.start()
        feeds_ended = asyncio.gather(*self._tasks, return_exceptions=True)  # `stop` reports their errors
        stopping = asyncio.create_task(stop.wait(), name="marketdata:stop")
        try:
            await asyncio.wait((feeds_ended, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            await self.stop()
            await self.publisher.candles_stored()

    async def stop(self) -> None:
        """Stop every feed: each is closed and its task cancelled; one still running `FEED_STOP_SECONDS`
        later is cancelled again, a bounded number of times.

        Not cancellation alone: on Python 3.11 a cancellation that meets a library's own timeout or
        wait in the same loop iteration can be swallowed (the feed then ran on, and a SIGTERM was seen
        to leave `serve marketdata` publishing for good). A closed feed ends after its current step
        even then.
        """
        for feed in self.feeds:
            await feed.close()
        running = await cancel_and_wait(self._tasks, seconds=FEED_STOP_SECONDS, attempts=CANCEL_ATTEMPTS)
        if running:
            log.error("feed tasks did not stop; left behind", feeds=sorted(task.get_name() for task in running))
        for task in self._tasks:
            if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
                log.warning("feed task ended with an error", error=f"{type(exc).__name__}: {exc}")
        self._tasks.clear()


class FeedThread:
    """The feeds of an embedded process on an event loop of their own, in a thread of their own.

    Replaying, building candles and encoding JSON happen there, so the feeds never hold the request
    loop for a step of their work; the request loop only stores and publishes what they prepared
    (`Publisher.emit`, memory or Redis backends alike), in order, from one task woken once per batch.
    A request loop that falls behind keeps at most `MAX_PENDING` prepared events (the oldest are
    dropped and counted), so the feeds never build an unbounded backlog.
    """

    def __init__(self, runner: MarketDataRunner) -> None:
        self.runner = runner
        self.dropped = 0
        self._pending: deque[Publication] = deque()
        self._owner: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._emitter: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    async def start(self) -> None:
        """Start the thread (on the owner loop); returns once the feeds run."""
        self._owner = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._emitter = asyncio.create_task(self._emit_forever(self._wake), name="feeds:emit")
        self._thread = threading.Thread(target=self._main, name="marketdata-feeds", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._started.wait, THREAD_START_SECONDS)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self.runner.start(self._hand_over)
        self._started.set()
        try:
            await self._stopping.wait()
        finally:
            await self.runner.stop()

    async def _hand_over(self, feed: str, event: Quote | Trade | OrderBook) -> None:
        """On the feeds' thread: prepare the event and queue it for the owner loop."""
        publication = self.runner.publisher.prepare(feed, event)
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.dropped += 1
            if self.dropped % MAX_PENDING == 1:
                log.warning("request loop behind the feeds; oldest market events dropped", dropped=self.dropped)
        self._pending.append(publication)
        if len(self._pending) == 1 and self._owner is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the owner loop closed while stopping
                self._owner.call_soon_threadsafe(self._wake.set)

    async def _emit_forever(self, wake: asyncio.Event) -> None:
        emit = self.runner.publisher.emit
        while True:
            await wake.wait()
            wake.clear()
            while self._pending:
                try:
                    await emit(self._pending.popleft())
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - an outage of the cache or bus loses these events, not the feeds
                    count_failure("market_events", exc, "market event not published")

    async def stop(self) -> None:
        """Stop the feeds and their thread, then the emitter (called on the owner loop)."""
        if not await stop_loop_thread(self._thread, self._loop, self._stopping, THREAD_STOP_SECONDS):
            log.warning("market data thread did not stop in time", seconds=THREAD_STOP_SECONDS)
        await stop_tasks([self._emitter], "market data emitter")
        await self.runner.publisher.candles_stored()  # its task runs on this (the owner) loop, as `emit` does
