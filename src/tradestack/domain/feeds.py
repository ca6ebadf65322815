"""The one interface every market-data feed implements (replay, synthetic, live venues)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from tradestack.domain.marketdata import MarketEvent


class Feed(Protocol):
    """A source of market events for a fixed set of symbols.

    `events()` yields quotes, trades and books as they happen (paced in real time by the feed)
    until `close()` is called or the feed ends. A feed that loses its source raises
    `FeedError`; the runner decides whether to restart it.
    """

    @property
    def name(self) -> str:
        """Short name for logs and metrics, e.g. ``replay`` or ``ccxt:binance``."""
        ...

    @property
    def symbols(self) -> tuple[str, ...]:
        """Instrument symbols this feed produces."""
        ...

    def events(self) -> AsyncIterator[MarketEvent]:
        """Stream events until closed."""
        ...

    async def close(self) -> None:
        """Stop producing events and release connections."""
        ...


class FeedError(Exception):
    """A feed lost its source (network, venue error, bad data)."""
