"""Embedded feeds run on a thread and loop of their own; the owner loop only stores and publishes, in order."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import redis.exceptions

from tradestack.domain.marketdata import Quote
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.runner import FeedThread, MarketDataRunner, Publication
from tradestack.marketdata.service import FANOUT_CHANNEL, QUOTE_KEY, decode_message

from ...conftest import metric_sample  # type: ignore[import-not-found]


class _CountingFeed:
    """Quotes 1..`count` for AAPL as fast as it can, noting the threads it ran on."""

    def __init__(self, runtime: Runtime, count: int) -> None:
        self._runtime = runtime
        self._count = count
        self.threads: set[int] = set()
        self.closed = threading.Event()

    @property
    def name(self) -> str:
        return "counting"

    @property
    def symbols(self) -> tuple[str, ...]:
        return ("AAPL",)

    async def events(self) -> AsyncIterator[Quote]:
        for i in range(1, self._count + 1):
            self.threads.add(threading.get_ident())
            price = Decimal(100 + i)
            yield Quote("AAPL", price - 1, price + 1, Decimal(1), Decimal(1), price, Decimal(1), self._runtime.clock.now())
            if i % 50 == 0:
                await asyncio.sleep(0)
        await asyncio.Event().wait()  # a live feed does not end by itself

    async def close(self) -> None:
        self.closed.set()


async def test_feeds_run_off_the_owner_loop_and_their_events_arrive_in_order(tmp_path: Path) -> None:
    runtime = Runtime.open(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", data_dir=tmp_path))
    feed = _CountingFeed(runtime, 500)
    feeds = FeedThread(MarketDataRunner(runtime, [feed]))
    received: list[str] = []
    async with runtime.bus.subscribe(FANOUT_CHANNEL) as subscription:
        await feeds.start()
        async for message in subscription:
            channel, frame = decode_message(message.data)
            assert channel == "quotes:AAPL"
            received.append(frame.decode())
            if len(received) == 500 or feeds.dropped:
                break
    assert feeds.dropped == 0
    lasts = [int(frame.split('"last":"')[1].split('"')[0]) for frame in received]
    assert lasts == list(range(101, 601))  # every event, in the order the feed produced them
    assert feed.threads
    assert threading.get_ident() not in feed.threads
    cached = await runtime.cache.get(QUOTE_KEY + "AAPL")
    assert cached is not None
    assert b'"last":"600"' in cached
    await asyncio.wait_for(feeds.stop(), timeout=15)
    assert feed.closed.is_set()  # closed on its own loop when the thread stopped
    await runtime.close()


async def test_an_event_not_published_on_a_bug_is_counted_and_the_next_events_are_published(tmp_path: Path) -> None:
    """A bug in publishing one event is counted in background_task_failures_total{task="market_events"}, a cache
    outage as an outage (not a bug); each loses its own event only: the feed's next events are published."""
    runtime = Runtime.open(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", data_dir=tmp_path))
    feeds = FeedThread(MarketDataRunner(runtime, [_CountingFeed(runtime, 5)]))
    emit = feeds.runner.publisher.emit
    outcomes: list[Exception] = [KeyError("a bug in the publication"), redis.exceptions.ConnectionError("cache away")]

    async def failing_twice(publication: Publication) -> None:
        if outcomes:
            raise outcomes.pop(0)
        await emit(publication)

    feeds.runner.publisher.emit = failing_twice  # type: ignore[method-assign]
    failures = metric_sample("background_task_failures_total", task="market_events")
    outages = metric_sample("backend_unavailable_total", backend="cache", operation="market_events")
    lasts: list[str] = []
    try:
        async with runtime.bus.subscribe(FANOUT_CHANNEL) as subscription:
            await feeds.start()
            async with asyncio.timeout(30):
                async for message in subscription:
                    _, frame = decode_message(message.data)
                    lasts.append(frame.decode().split('"last":"')[1].split('"')[0])
                    if lasts[-1] == "105":
                        break
    finally:
        await asyncio.wait_for(feeds.stop(), timeout=15)
        await runtime.close()
    assert lasts == ["103", "104", "105"]  # the first two were lost, each on its own
    assert metric_sample("background_task_failures_total", task="market_events") == failures + 1
    assert metric_sample("backend_unavailable_total", backend="cache", operation="market_events") == outages + 1
