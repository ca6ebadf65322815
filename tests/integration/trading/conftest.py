"""Trading tests run the paper engine in the API process on both stacks, and publish their own quotes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tradestack.domain.marketdata import Quote
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.runner import Publisher

PublishQuote = Callable[..., Awaitable[Quote]]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Every venue open around the clock (the demo setting), so tests of other behaviour do not depend on
    # the time of day they run at; test_market_hours turns it off.
    return settings.model_copy(
        update={"engine_in_process": True, "paper_slippage_bps": Decimal(0), "market_hours_always_open": True}
    )


@pytest.fixture
def publish_quote(runtime: Runtime) -> PublishQuote:
    """Publish a quote as the market-data runner would (cache and bus): the engine matches on it."""
    publisher = Publisher(runtime)

    async def publish(symbol: str, bid: str, ask: str, size: str = "1000", last: str | None = None) -> Quote:
        quote = Quote(
            symbol,
            Decimal(bid),
            Decimal(ask),
            Decimal(size),
            Decimal(size),
            Decimal(last if last is not None else bid),
            Decimal(1),
            datetime.now(UTC),
        )
        await publisher.publish("test", quote)
        return quote

    return publish


async def wait_for_order(
    client: httpx.AsyncClient, order_id: str, headers: dict[str, str], done: Callable[[dict[str, Any]], bool], seconds: float = 10
) -> dict[str, Any]:
    """Poll the order until `done(order)` holds; fail with its last state after `seconds`."""
    order: dict[str, Any] = {}
    for _ in range(int(seconds / 0.05)):
        order = (await client.get(f"/api/orders/{order_id}", headers=headers)).json()
        if done(order):
            return order
        await asyncio.sleep(0.05)
    raise AssertionError(f"order {order_id} did not get there: {order}")


@contextmanager
def engine_listeners(*listeners: tuple[str, Callable[..., Any]]) -> Iterator[None]:
    """SQLAlchemy `Engine` class events (name, listener) listened to inside the block only.

    A listener on the class marks every engine as observed for good (`Engine._has_events`, which `event.remove`
    leaves set): the mark is put back, or the order desk's statements of every later test in this process would run
    through SQLAlchemy's execution rather than kit.db's direct path (and kit's tests of that path fail)."""
    observed = Engine._has_events
    for name, listener in listeners:
        event.listen(Engine, name, listener)
    try:
        yield
    finally:
        for name, listener in listeners:
            event.remove(Engine, name, listener)
        Engine._has_events = observed
