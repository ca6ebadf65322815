"""Replay and synthetic feeds: what they emit is consistent with the bars and the instruments."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tradestack.core.clock import LiveClock
from tradestack.domain.instruments import instrument
from tradestack.domain.marketdata import Bar, OrderBook, Quote, Timeframe, Trade
from tradestack.domain.replay import SpreadModel
from tradestack.marketdata.feeds import ReplayFeed, SyntheticFeed, touch_lot


def _bars() -> list[Bar]:
    start = datetime(2005, 1, 3, tzinfo=UTC)
    rows = [("64.78", "65.11", "62.6", "63.29"), ("63.8", "65.47", "62.97", "63.94"), ("64.47", "65.25", "64.05", "64.5")]
    return [
        Bar("AAPL", start + timedelta(days=i), *(Decimal(v) for v in row), Decimal(1_000_000))  # type: ignore[arg-type]
        for i, row in enumerate(rows)
    ]


async def test_replay_walks_every_bar_within_its_range_and_loops() -> None:
    bars = _bars()
    aapl = instrument("AAPL")
    # A daily bar lasts 8 steps of 1 ms.
    feed = ReplayFeed(
        {"AAPL": (aapl, Timeframe.D1, bars)},
        clock=LiveClock(),
        speed=86_400 / 0.008,
        tick_seconds=0.001,
        spread=SpreadModel(bps=Decimal(2)),
        seed=1,
    )
    quotes: list[Quote] = []
    trades: list[Trade] = []
    async for event in feed.events():
        if isinstance(event, Quote):
            quotes.append(event)
        elif isinstance(event, Trade):
            trades.append(event)
        else:
            assert isinstance(event, OrderBook)
            assert (event.bids[0].price, event.asks[0].price) == (quotes[-1].bid, quotes[-1].ask)
        if len(quotes) >= 60:
            break
    await feed.close()
    by_bar = {bar.ts: bar for bar in bars}
    assert {q.source_ts for q in quotes} == set(by_bar)  # every bar replayed, and then again
    for quote in quotes:
        bar = by_bar[quote.source_ts]  # type: ignore[index]
        assert quote.bid < quote.ask
        assert aapl.is_price_on_tick(quote.bid)
        assert aapl.is_price_on_tick(quote.ask)
        assert aapl.is_price_on_tick(quote.last)
        assert quote.bid <= quote.last <= quote.ask
        assert aapl.round_price(bar.low) <= quote.last <= aapl.round_price(bar.high)
        assert quote.ts.tzinfo is UTC
    assert all(t.size >= 0 and aapl.is_price_on_tick(t.price) for t in trades)
    assert [q.ts for q in quotes] == sorted(q.ts for q in quotes)
    # Touches are sized by value: whole multiples of 63 shares (about 4,000 USD at the first close).
    assert {q.ask_size % 63 for q in quotes} == {0}
    assert max(q.ask_size for q in quotes) > 63


def test_touch_lots_are_whole_lots_worth_about_four_thousand() -> None:
    assert touch_lot(instrument("AAPL"), Decimal("63.29")) == 63
    assert touch_lot(instrument("BTC-USD"), Decimal("43000")) == Decimal("0.09302")
    assert touch_lot(instrument("AUDUSD"), Decimal("0.65")) == 6000
    assert touch_lot(instrument("AAPL"), Decimal("9000")) == 1  # never below one lot


async def test_synthetic_feed_publishes_consistent_books_and_quotes() -> None:
    symbols = [instrument("BHP"), instrument("ETH-USD")]
    feed = SyntheticFeed(symbols, clock=LiveClock(), tick_seconds=0.001, seed=3)
    books: dict[str, list[OrderBook]] = {"BHP": [], "ETH-USD": []}
    last_quote: dict[str, Quote] = {}
    async for event in feed.events():
        if isinstance(event, Quote):
            assert event.bid < event.ask
            last_quote[event.symbol] = event
        elif isinstance(event, OrderBook):
            quote = last_quote[event.symbol]
            assert (event.bids[0].price, event.asks[0].price) == (quote.bid, quote.ask)
            books[event.symbol].append(event)
        if min(len(b) for b in books.values()) >= 50:
            break
    await feed.close()
    mids = {b.bids[0].price + b.asks[0].price for b in books["BHP"]}
    assert len(mids) > 1  # the market moves
    assert Decimal(40) < min(mids) / 2 < Decimal(50)  # around BHP's start price


class _SaturdayClock(LiveClock):
    """Real time passing, from a Saturday (NASDAQ closed)."""

    def __init__(self) -> None:
        self._real_start = datetime.now(UTC)

    def now(self) -> datetime:
        return datetime(2026, 12, 5, 15, 0, tzinfo=UTC) + (datetime.now(UTC) - self._real_start)


async def test_replay_holds_the_last_quote_of_a_closed_venue_without_trading() -> None:
    import asyncio

    from tradestack.domain.instruments import NASDAQ

    feed = ReplayFeed(
        {"AAPL": (instrument("AAPL"), Timeframe.D1, _bars())},
        clock=_SaturdayClock(),
        speed=86_400 / 0.008,
        tick_seconds=0.01,
        spread=SpreadModel(bps=Decimal(2)),
        seed=1,
        hours={"AAPL": NASDAQ},
    )
    events: list[object] = []

    async def collect() -> None:
        async for event in feed.events():
            events.append(event)
            if sum(isinstance(e, Quote) for e in events) >= 3:
                break

    await asyncio.wait_for(collect(), timeout=30)
    await feed.close()
    assert all(isinstance(e, Quote) for e in events)  # no trades, no books while closed
    quotes = [e for e in events if isinstance(e, Quote)]
    assert len({(q.bid, q.ask, q.last, q.source_ts) for q in quotes}) == 1  # the same price, held
    assert all((b.ts - a.ts).total_seconds() >= 1 for a, b in itertools.pairwise(quotes))


async def test_synthetic_feed_holds_a_closed_venue_and_keeps_crypto_moving() -> None:
    import asyncio

    from tradestack.domain.instruments import ASX, CRYPTO

    feed = SyntheticFeed(
        [instrument("BHP"), instrument("BTC-USD")],
        clock=_SaturdayClock(),
        tick_seconds=0.01,
        seed=3,
        hours={"BHP": ASX, "BTC-USD": CRYPTO},
    )
    events: list[object] = []

    async def collect() -> None:
        async for event in feed.events():
            events.append(event)
            if sum(isinstance(e, Quote) and e.symbol == "BHP" for e in events) >= 3:
                break

    await asyncio.wait_for(collect(), timeout=30)
    await feed.close()
    bhp = [e for e in events if getattr(e, "symbol", None) == "BHP"]
    assert all(isinstance(e, Quote) for e in bhp)  # no trades or books while the ASX is closed
    assert len({(q.bid, q.ask, q.last) for q in bhp if isinstance(q, Quote)}) == 1
    assert any(isinstance(e, OrderBook) and e.symbol == "BTC-USD" for e in events)  # crypto trades 24/7
