"""A stopping market-data runner ends its feeds even when a cancellation is swallowed on the way.

On Python 3.11 a cancellation can be lost inside a library's own waits (seen with redis-py: a SIGTERM
left `serve marketdata` publishing for good). The runner therefore closes each feed, so it ends after
its step, and cancels only as a bounded, repeated backstop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tradestack.domain.marketdata import Quote
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.marketdata import runner as runner_module
from tradestack.marketdata.runner import MarketDataRunner


class _TickingFeed:
    """Quotes for AAPL, paced by the sink (every wait is there); ends after its step once closed, unless told to ignore that."""

    def __init__(self, runtime: Runtime, *, honours_close: bool = True) -> None:
        self._runtime = runtime
        self._honours_close = honours_close
        self.closed = asyncio.Event()

    @property
    def name(self) -> str:
        return "ticking"

    @property
    def symbols(self) -> tuple[str, ...]:
        return ("AAPL",)

    async def events(self) -> AsyncIterator[Quote]:
        price = Decimal(100)
        while self._honours_close is False or not self.closed.is_set():
            yield Quote("AAPL", price - 1, price + 1, Decimal(1), Decimal(1), price, Decimal(1), self._runtime.clock.now())

    async def close(self) -> None:
        self.closed.set()


class _SwallowingSink:
    """Publishes slowly and, like the library seen doing it, swallows the first `swallow` cancellations."""

    def __init__(self, swallow: int) -> None:
        self.swallow = swallow
        self.swallowed = 0
        self.events = 0

    async def __call__(self, feed: str, event: object) -> None:
        self.events += 1
        try:
            await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            if self.swallowed >= self.swallow:
                raise
            self.swallowed += 1


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return Runtime.open(Settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))


@pytest.mark.parametrize("honours_close", [True, False], ids=["closed-feed-ends", "stubborn-feed-cancelled"])
async def test_stop_ends_a_feed_whose_cancellation_is_swallowed(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, honours_close: bool
) -> None:
    monkeypatch.setattr(runner_module, "FEED_STOP_SECONDS", 0.2)
    feed = _TickingFeed(runtime, honours_close=honours_close)
    sink = _SwallowingSink(swallow=1)
    runner = MarketDataRunner(runtime, [feed])
    try:
        runner.start(sink)
        await asyncio.sleep(0.2)
        assert sink.events > 0
        stopping = asyncio.create_task(runner.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)  # not wait_for: its cancellation would end the feed itself
        if not done:
            stopping.cancel()
            pytest.fail("stop() did not return: the feed outlived its swallowed cancellation")
        assert feed.closed.is_set()
        counted = sink.events
        await asyncio.sleep(0.1)
        assert sink.events == counted, "the feed went on publishing after stop"
        if not honours_close:  # the first cancellation met the sink and was swallowed; the next one ended the feed
            assert sink.swallowed == 1
    finally:
        await runtime.close()


async def test_run_forever_returns_when_told_to_stop(runtime: Runtime) -> None:
    feed = _TickingFeed(runtime)
    runner = MarketDataRunner(runtime, [feed])
    runner.start = lambda sink=None: MarketDataRunner.start(runner, _SwallowingSink(swallow=1))  # type: ignore[method-assign]
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(runner.run_forever(stop))
        await asyncio.sleep(0.2)
        assert not task.done()
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "run_forever did not return after stop was set"
        assert feed.closed.is_set()
    finally:
        await runtime.close()
