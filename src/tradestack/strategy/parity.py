"""The paper side of parity: a strategy's run through an embedded paper stack on replayed bars.

`replay_on_paper` opens an embedded runtime (SQLite in a directory of its own, a `SimClock`: no
real-time waiting), deploys the strategy with `StrategyService.deploy` (as ``POST /api/strategy``)
and drives the real pieces one quote at a time: each bar becomes quotes by the replay's intrabar
path, spread and touch sizing (`domain.replay.bar_ticks`, `marketdata.feeds.touch_lot`), published to
the cache (`Publisher`), matched by an `EngineShard` (executions recorded in the database books),
then handed to the `StrategyRunner`'s deployment (bars built from the quotes, the strategy's orders
through `TradingService.submit`: order entry, risk, the engine). On each quote the engine matches
first, then the runner closes bars; an order sent then matches against that quote at once, as the
in-process engine does. `backtest.parity.parity_report` then runs the backtest and compares.
"""

from __future__ import annotations

import random
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tradestack.backtest.engine import BacktestConfig
from tradestack.backtest.parity import PaperReplay, ParityReport, paper_orders, parity_report
from tradestack.books.service import BooksService
from tradestack.core.clock import SimClock
from tradestack.domain.instruments import Instrument
from tradestack.domain.marketdata import Bar, Quote
from tradestack.domain.matching import FeeModel, LatencyModel, SlippageModel
from tradestack.domain.replay import SpreadModel, bar_ticks
from tradestack.domain.risk import RiskLimits
from tradestack.identity.permissions import Role, permissions_of
from tradestack.identity.service import Caller, Principal, identity_session
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.feeds import touch_lot
from tradestack.marketdata.runner import Publisher
from tradestack.marketdata.service import MarketDataService
from tradestack.strategy.api import StrategyError
from tradestack.strategy.examples import build
from tradestack.strategy.runner import CLOSE_GRACE_SECONDS, Deployment, StrategyRunner
from tradestack.strategy.schemas import StrategyDeploy
from tradestack.trading.commands import COMMANDS, Change, LocalCommands
from tradestack.trading.engine import EngineShard
from tradestack.trading.service import default_limits, fee_model_for

DEFAULT_STEPS = 4
"""Quotes per bar: what the replay feed produces for 1-minute bars at its default speed (720) and tick (0.25 s)."""


def backtest_config_of(
    settings: Settings, instrument: Instrument, capital: Decimal, fee: FeeModel, limits: RiskLimits
) -> BacktestConfig:
    """The backtest's models: the paper stack's (`fee` and `limits` as order entry computes them)."""
    return BacktestConfig(
        capital=capital,
        currency=instrument.quote_currency,
        fee=fee,
        slippage=SlippageModel(settings.paper_slippage_bps),
        latency=LatencyModel(settings.paper_latency_ms / 1000),
        participation_rate=settings.paper_participation_rate,
        limits=limits,
        seed=settings.synthetic_seed,
    )


def replayed_quotes(
    bars: Sequence[Bar], instrument: Instrument, spread: SpreadModel, *, steps: int, seed: int, bar_seconds: int
) -> list[Quote]:
    """Each bar as `steps` quotes stamped within it (the replay's intrabar path, spread and touch sizing)."""
    rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
    lot = touch_lot(instrument, bars[0].close) if bars else instrument.lot_size
    quotes: list[Quote] = []
    for bar in bars:
        ticks = bar_ticks(bar, steps, rng, instrument.tick_size, spread, bar.ts, bar_seconds / steps, lot=lot)
        quotes.extend(quote for quote, _ in ticks)
    return quotes


async def replay_on_paper(
    strategy: str,
    symbol: str,
    bars: Sequence[Bar],
    settings: Settings,
    *,
    params: Mapping[str, str] | None = None,
    capital: Decimal = Decimal(100_000),
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    data_dir: Path | None = None,
    restart_at: datetime | None = None,
) -> PaperReplay:
    """Run `strategy` on `bars` of `symbol` through an embedded paper stack (SQLite in `data_dir`, a temporary
    directory when None) with the paper models of `settings` (fees, slippage, latency, participation, limits,
    the replay's spread).

    `restart_at`: before the first quote at or after it, the stack is dropped as by kill -9 (no stop hook,
    no `on_stop`) and a new one starts on the same database: a new engine shard and strategy runner that
    rebuild what they hold from it.
    """

    if not bars:
        raise StrategyError(f"no bars of {symbol} to compare")
    chosen = dict(params or {})
    build(strategy, [symbol], chosen)  # refuse bad parameters before anything runs
    bar_seconds = round((bars[1].ts - bars[0].ts).total_seconds()) if len(bars) > 1 else 60
    with tempfile.TemporaryDirectory(prefix="tradestack-parity-") as scratch:
        where = data_dir or Path(scratch)
        local = settings.model_copy(
            update={
                "database_url": f"sqlite+aiosqlite:///{(where / 'parity.db').as_posix()}",
                "redis_url": None,
                "data_dir": where,
                "engine_in_process": False,
                "strategies_in_process": False,
                "marketdata_feeds": [],
                "market_hours_always_open": True,
                "argon2_time_cost": 1,
                "argon2_memory_kib": 8192,
            }
        )
        started = time.perf_counter()
        return await _paper_run(
            strategy, symbol, tuple(bars), local, chosen, capital, steps, seed, bar_seconds, started, restart_at
        )


async def run_parity(
    strategy: str,
    symbol: str,
    bars: Sequence[Bar],
    settings: Settings,
    *,
    params: Mapping[str, str] | None = None,
    capital: Decimal = Decimal(100_000),
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
) -> ParityReport:
    """`replay_on_paper`, then `parity_report`: the command's work."""
    paper = await replay_on_paper(strategy, symbol, bars, settings, params=params, capital=capital, steps=steps, seed=seed)
    return parity_report(paper)


class _Stack:
    """One "process" of the embedded paper stack: a runtime on the database, its engine shard and strategy runner."""

    def __init__(self, runtime: Runtime, shard: EngineShard, runner: StrategyRunner) -> None:
        self.runtime, self.shard, self.runner = runtime, shard, runner

    @classmethod
    async def open(cls, settings: Settings, clock: SimClock) -> _Stack:
        runtime = Runtime.open(settings, clock=clock)
        try:
            await migrations.upgrade(runtime.database.engine)
            market = MarketDataService(runtime)
            await market.seed_instruments()
            # the engine, stepped in line: an order announced "settled" is matched before order entry answers
            shard = EngineShard(runtime)
            shard.instruments = await market.instruments()
            await shard.rebuild()  # after a restart: the open orders from the database

            async def settled(change: Change) -> None:
                await shard.order_changed(change)
                await shard.step()

            runtime.components.put(COMMANDS, LocalCommands(shard.order_changed, settled))
            return cls(runtime, shard, StrategyRunner(runtime))
        except BaseException:
            await runtime.close()
            raise

    async def start(self, deployment_id: str) -> Deployment:
        """The runner's deployment, driven here (no task of its own), started (history and orders rebuilt)."""
        row = next((r for r in await self.runner.service.running() if r.id == deployment_id), None)
        deployment = None if row is None else await self.runner.begin(row, run=False)
        if deployment is None:
            raise StrategyError(f"the paper host could not start: {await self.runner.service.state_of(deployment_id)}")
        await self.runner.start_host(deployment)
        return deployment

    async def quote(self, deployment: Deployment, publisher: Publisher, quote: Quote) -> None:
        """One replayed quote: to the cache, the engine (matches first), then the runner (bars, the strategy)."""
        await publisher.publish("replay", quote)
        self.shard.on_quote(quote)
        await self.shard.step()
        deployment.on_quote(quote)
        await self.runner.handle_pending(deployment)


async def _paper_run(
    strategy: str,
    symbol: str,
    bars: tuple[Bar, ...],
    settings: Settings,
    params: dict[str, str],
    capital: Decimal,
    steps: int,
    seed: int,
    bar_seconds: int,
    started: float,
    restart_at: datetime | None = None,
) -> PaperReplay:
    clock = SimClock(bars[0].ts - timedelta(seconds=1))
    stack = await _Stack.open(settings, clock)
    try:
        runtime = stack.runtime
        instrument = stack.shard.instruments.get(symbol)
        if instrument is None:
            raise StrategyError(f"unknown instrument {symbol}")
        config = backtest_config_of(
            settings, instrument, capital, fee_model_for(runtime, instrument), default_limits(runtime, instrument.quote_currency)
        )
        email = f"parity-{uuid.uuid4().hex[:10]}@example.invalid"
        async with identity_session(runtime, Caller()) as identity:
            user = await identity.create_user(email, uuid.uuid4().hex + "Aa1!", Role.TRADER)
            books = BooksService(identity.session, clock)
            account = await books.open_account(user.id, "parity", instrument.quote_currency)
            await books.deposit(account.id, instrument.quote_currency, capital)
        principal = Principal(user.id, email, Role.TRADER, permissions_of(Role.TRADER))
        body = StrategyDeploy(
            strategy=strategy, account_id=account.id, symbols=[symbol], params=dict(params), bar_seconds=bar_seconds, max_errors=1
        )
        deployed = await stack.runner.service.deploy(principal, body, Caller())
        deployment = await stack.start(deployed.id)
        publisher = Publisher(runtime)
        spread = SpreadModel(bps=settings.replay_spread_bps, min_ticks=1)
        quotes = tuple(replayed_quotes(bars, instrument, spread, steps=steps, seed=seed, bar_seconds=bar_seconds))
        for quote in quotes:
            if restart_at is not None and quote.ts >= restart_at:
                # as kill -9: nothing is stopped or told; a new "process" starts on the same database
                restart_at = None
                await stack.runtime.close()
                stack = await _Stack.open(settings, clock)
                deployment = await stack.start(deployed.id)
                publisher = Publisher(stack.runtime)
            clock.advance((quote.ts - clock.now()).total_seconds())
            await stack.quote(deployment, publisher, quote)
        # the last bar closes when its interval has ended (the runner's tick)
        clock.advance(bar_seconds + CLOSE_GRACE_SECONDS)
        deployment.on_tick(clock.now())
        await stack.runner.handle_pending(deployment)
        if deployment.failed:
            status = await stack.runner.service.get(principal, deployed.id)
            raise StrategyError(f"the paper host stopped itself: {status.last_error}")
        stored = await stack.runner.trading.orders_with_prefix(account.id, deployment.row.order_prefix)
        async with stack.runtime.database.read_session() as session:
            snapshot = await BooksService(session, clock).snapshot(account.id)
        return PaperReplay(
            strategy,
            symbol,
            params,
            bars,
            bar_seconds,
            quotes,
            instrument,
            config,
            tuple(paper_orders(stored, deployment.row.order_prefix)),
            snapshot.cash_in(snapshot.base_currency),
            time.perf_counter() - started,
        )
    finally:
        await stack.runtime.close()
