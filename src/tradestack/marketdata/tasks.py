"""Background work of market data: choosing and running the feeds."""

from __future__ import annotations

import asyncio
import signal

from tradestack.domain.feeds import Feed
from tradestack.domain.replay import SpreadModel
from tradestack.kit.logging import get_logger
from tradestack.kit.runtime import Runtime
from tradestack.marketdata import calendars
from tradestack.marketdata.feeds import ReplayFeed, SyntheticFeed
from tradestack.marketdata.repository import BarRepository
from tradestack.marketdata.runner import FeedThread, MarketDataRunner
from tradestack.marketdata.service import MarketDataService, venue_of

log = get_logger(__name__)


async def build_feeds(runtime: Runtime) -> list[Feed]:
    """The feeds the settings ask for.

    Instruments with stored history are replayed at their finest stored resolution; the others
    get the synthetic feed; symbols given to the live ccxt feed are left out of both.
    """
    settings = runtime.settings
    service = MarketDataService(runtime)
    instruments = await service.instruments()
    wanted = [s.upper() for s in settings.marketdata_symbols] or list(instruments)
    unknown = [s for s in wanted if s not in instruments]
    if unknown:
        log.warning("TRADESTACK_MARKETDATA_SYMBOLS names unknown symbols; ignored", symbols=unknown)
    live = set(settings.ccxt_symbols) if "ccxt" in settings.marketdata_feeds else set()
    chosen = [instruments[s] for s in wanted if s in instruments and s not in live]
    feeds: list[Feed] = []
    stored = {s.symbol: s for s in sorted(await service.series(), key=lambda s: -s.resolution.seconds)}
    # `stored` keeps, per symbol, the finest resolution (sorted coarsest first, finest wins).
    replayed = [i for i in chosen if i.symbol in stored]
    if "replay" in settings.marketdata_feeds and replayed:
        series = {}
        async with runtime.database.read_session() as session:
            bars = BarRepository(session)
            for instrument in replayed:
                summary = stored[instrument.symbol]
                series[instrument.symbol] = (
                    instrument,
                    summary.resolution,
                    # Kept as stored text, each bar made when the replay reaches it: no Decimal per stored number at start-up.
                    await bars.stored_series(instrument.symbol, summary.resolution),
                )
        feeds.append(
            ReplayFeed(
                series,
                clock=runtime.clock,
                speed=settings.replay_speed,
                tick_seconds=settings.replay_tick_seconds,
                spread=SpreadModel(bps=settings.replay_spread_bps, min_ticks=1),
                seed=settings.synthetic_seed,
                hours={i.symbol: venue_of(i, always_open=settings.market_hours_always_open) for i in replayed},
            )
        )
    synthetic = [i for i in chosen if i.symbol not in stored]
    if "synthetic" in settings.marketdata_feeds and synthetic:
        feeds.append(
            SyntheticFeed(
                synthetic,
                clock=runtime.clock,
                tick_seconds=settings.replay_tick_seconds,
                seed=settings.synthetic_seed,
                hours={i.symbol: venue_of(i, always_open=settings.market_hours_always_open) for i in synthetic},
            )
        )
    if live:
        from tradestack.adapters.ccxt.feed import CcxtFeed

        feeds.append(
            CcxtFeed(
                settings.ccxt_exchange,
                settings.ccxt_symbols,
                poll_seconds=settings.ccxt_poll_seconds,
                clock=runtime.clock,
            )
        )
    return feeds


async def start_market_data(runtime: Runtime) -> None:
    """Make the catalogue's instruments exist; start the feeds inside this process, on a thread of
    their own, when configured to (embedded mode). The feeds stop with `Runtime.close`."""
    await MarketDataService(runtime).seed_instruments()
    settings = runtime.settings
    await asyncio.to_thread(calendars.load, settings.data_dir / "cache")
    if not settings.marketdata_in_process or not settings.marketdata_feeds:
        return
    # On a thread and loop of their own: the feeds' work never holds up requests on this loop.
    feeds = FeedThread(MarketDataRunner(runtime, await build_feeds(runtime)))
    await feeds.start()
    runtime.closers.append(feeds.stop)


async def run_market_data(runtime: Runtime) -> None:
    """Run the feeds until SIGTERM or SIGINT, then stop them cleanly (``tradestack serve marketdata``)."""
    await MarketDataService(runtime).seed_instruments()
    await asyncio.to_thread(calendars.load, runtime.settings.data_dir / "cache")
    runner = MarketDataRunner(runtime, await build_feeds(runtime))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)  # not a cancellation: the feeds end their step (see `MarketDataRunner.stop`)
    await runner.run_forever(stop)
    log.info("market data feeds stopped")
