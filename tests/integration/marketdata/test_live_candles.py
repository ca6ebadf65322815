"""Live candles stored by the publisher, on both stacks: a bug drops its batch only (counted as one), an outage keeps
it for the next complete candle (counted as an outage)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tradestack.domain.marketdata import Bar, Side, Timeframe, Trade
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.repository import BarRepository, WriteCounts
from tradestack.marketdata.runner import Publisher
from tradestack.marketdata.service import MarketDataService

from ...conftest import metric_sample  # type: ignore[import-not-found]


async def test_candles_not_storable_on_a_bug_are_counted_and_the_next_candles_are_stored(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug storing a complete minute is counted in background_task_failures_total{task="live_candles"} and drops
    that minute; a database outage is counted as an outage and keeps its minute; the next minute stores both."""
    await MarketDataService(runtime).seed_instruments()
    publisher = Publisher(runtime)
    at = datetime(2031, 1, 6, 15, 0, tzinfo=UTC)
    write = BarRepository.write
    outcomes: list[Exception] = [KeyError("a bug in the candle"), ConnectionRefusedError("database away")]

    async def failing_twice(
        self: BarRepository, symbol: str, resolution: Timeframe, bars: Sequence[Bar], *, source: str, replace: bool = False
    ) -> WriteCounts:
        if outcomes:
            raise outcomes.pop(0)
        return await write(self, symbol, resolution, bars, source=source, replace=replace)

    monkeypatch.setattr(BarRepository, "write", failing_twice)
    failures = metric_sample("background_task_failures_total", task="live_candles")
    outages = metric_sample("backend_unavailable_total", backend="database", operation="live_candles")
    # 15:01 is the partial first minute (never stored); the trades at 15:03, 15:04 and 15:05 complete 15:02 (the bug:
    # dropped), 15:03 (the outage: kept) and 15:04 (stored with 15:03).
    for minute in range(1, 6):
        trade = Trade("MSFT", Decimal(100 + minute), Decimal(1), Side.BUY, at + timedelta(minutes=minute, seconds=5))
        await publisher.publish("live-test", trade)
        await publisher.candles_stored()
    async with runtime.database.read_session() as session:
        stored = await BarRepository(session).last("MSFT", Timeframe.M1, 10)
    assert [(bar.ts, bar.close) for bar in stored] == [
        (at + timedelta(minutes=3), Decimal(103)),
        (at + timedelta(minutes=4), Decimal(104)),
    ]
    assert outcomes == []
    assert metric_sample("background_task_failures_total", task="live_candles") == failures + 1
    assert metric_sample("backend_unavailable_total", backend="database", operation="live_candles") == outages + 1
