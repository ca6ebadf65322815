"""Runs the deployed strategies on paper: quotes in, bars built, the strategy's orders through order entry.

One `StrategyRunner` per installation: embedded in `tradestack up` (and a lone API process, like the
engine), or `tradestack serve strategies` in production. It follows the `strategy_deployments`
table: a running deployment gets a `PaperHost` and a task of its own. The table is read when a
deploy or a stop through the API announces a change on the bus (`DEPLOYMENTS_CHANNEL`, in process
or on Redis) and otherwise only every `FOLLOW_SECONDS` (a lost announcement is picked up then), so
an installation without deployments costs nothing but that. While deployments run, their bars are
closed by a tick every `POLL_SECONDS` (no database read).

Per deployment, in order, one event at a time:

* quotes of its symbols (from the market-data bus) are folded into bars of `bar_seconds`; a bar
  closes when a quote of a later interval arrives or when its interval has ended `CLOSE_GRACE_SECONDS`
  ago (a quote of a closed interval that arrives later is ignored, so a bar is handled once);
* before each event: the kill switch (the stricter of the global and the account's trading state)
  - while halted the strategy is not called (bars still go into its history) and submits nothing;
  then its orders and fills from the database (`PaperHost.sync`: new fills, order changes);
* the strategy's hook on a worker thread; its orders go through `TradingService.submit` as its
  owner, exactly as ``POST /api/orders`` (risk, desk or locked transaction, engine, audit) — the owner
  as they are at that moment: once an admin disables or demotes them, the next order is refused and
  the runner's next read of the table (at once on an announcement, else within `FOLLOW_SECONDS`)
  stops the deployment (state ``failed``, the reason as its stop reason).

An exception from the strategy or from order entry is an error: recorded as the deployment's last
error; after `max_errors` in a row the deployment stops itself (state ``failed``). Each bar is stored
(`strategy_bars`) before the strategy sees it; a restart rebuilds each host from its orders and fills
and gives it back its newest `HISTORY_BARS` stored bars, so its indicators and bar indexes (and so its
decisions) are those of a runner that never stopped. A bar that was still being built from quotes
when the runner stopped is lost (only the quotes after the restart build the next one).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

import orjson

from tradestack.books.service import BooksService
from tradestack.core.errors import AuthenticationError, ConflictError, PermissionDeniedError
from tradestack.domain.marketdata import Bar, Quote, Side
from tradestack.domain.orders import FillEvent, Order, OrderType, TimeInForce
from tradestack.domain.risk import TradingState
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Caller, IdentityService, Principal
from tradestack.kit.aio import stop_tasks, wait_event
from tradestack.kit.logging import get_logger
from tradestack.kit.outages import count_failure, forever
from tradestack.kit.runtime import Runtime, Slot
from tradestack.marketdata.service import FANOUT_CHANNEL, QUOTE_MESSAGES, decode_message
from tradestack.models.strategies import StrategyDeploymentRow
from tradestack.strategy.api import StrategyError
from tradestack.strategy.paper import PaperHost
from tradestack.strategy.service import DEPLOYMENTS_CHANNEL, FAILED, StrategyService, strategy_of
from tradestack.trading.engine import parse_quote
from tradestack.trading.schemas import OrderCreate
from tradestack.trading.service import OrderDeniedError, TradingService

log = get_logger(__name__)
POLL_SECONDS = 1.0
FOLLOW_SECONDS = 30.0
SYNC_OVERLAP_SECONDS = 60.0
CLOSE_GRACE_SECONDS = 1.0
PORT_TIMEOUT_SECONDS = 60.0
HISTORY_BARS = 5000
"""Stored bars a restarted host is given back per symbol (its indicators' windows must fit in them); the
runner keeps between this many and twice as many."""


class BarBuilder:
    """Bars of one symbol from its quotes (price: the last, else the mid), by fixed intervals of quote time."""

    def __init__(self, symbol: str, seconds: int) -> None:
        self.symbol = symbol
        self.seconds = seconds
        self.current: Bar | None = None
        self._bucket = -1
        self._closed_bucket = -1

    def add(self, quote: Quote) -> Bar | None:
        """Fold the quote in; the bar it closed, if any."""
        price = quote.last if quote.last > 0 else quote.mid
        bucket = math.floor(quote.ts.timestamp() / self.seconds)
        if bucket <= self._closed_bucket:
            return None  # late for a bar already handled
        size = quote.last_size
        closed = None
        if self.current is not None and bucket > self._bucket:
            closed = self._close()
        start = datetime.fromtimestamp(bucket * self.seconds, UTC)
        one = Bar(self.symbol, start, price, price, price, price, size)
        self.current = one if self.current is None else self.current.extended(one)
        self._bucket = bucket
        return closed

    def resume_after(self, bar: Bar) -> None:
        """A restarted runner: `bar` was already handled; quotes of its interval or earlier are late."""
        self._closed_bucket = max(self._closed_bucket, math.floor(bar.ts.timestamp() / self.seconds))

    def due(self, now: datetime) -> Bar | None:
        """The current bar, closed, when its interval ended `CLOSE_GRACE_SECONDS` before `now`."""
        if self.current is None:
            return None
        end = self.current.ts + timedelta(seconds=self.seconds + CLOSE_GRACE_SECONDS)
        return self._close() if now >= end else None

    def _close(self) -> Bar:
        assert self.current is not None  # noqa: S101 - callers check
        closed, self.current = self.current, None
        self._closed_bucket = self._bucket
        return closed


async def owner_principal(runtime: Runtime, owner_id: str) -> Principal:
    """The deployment's owner as they are now: `AuthenticationError` once disabled, `PermissionDeniedError` once
    they may no longer trade (demoted, or a password change is required)."""
    async with runtime.database.read_session() as session:
        principal = await IdentityService(session, runtime).acting_principal(owner_id)
    if not principal.can(Permission.TRADE_OWN):
        raise PermissionDeniedError(f"the owner {principal.email} may no longer trade (role {principal.role.value})")
    return principal


class _Port:
    """The host's orders through order entry, as the deployment's owner (called from the strategy's thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, trading: TradingService, row: StrategyDeploymentRow) -> None:
        self._loop = loop
        self._trading = trading
        self._account_id = row.account_id
        self._owner_id = row.owner_id
        self._caller = Caller(ip=None, user_agent=f"tradestack strategy {row.id}")

    def submit(
        self,
        client_order_id: str,
        symbol: str,
        side: Side,
        quantity: Decimal,
        type: OrderType,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        time_in_force: TimeInForce,
    ) -> Order:
        body = OrderCreate(
            account_id=self._account_id,
            client_order_id=client_order_id,
            symbol=symbol,
            side=side,
            type=type,
            quantity=quantity,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
        )
        return asyncio.run_coroutine_threadsafe(self._submit(body), self._loop).result(PORT_TIMEOUT_SECONDS)

    async def _submit(self, body: OrderCreate) -> Order:
        principal = await owner_principal(self._trading.runtime, self._owner_id)
        with contextlib.suppress(OrderDeniedError):  # stored as denied: the strategy gets the denied order
            await self._trading.submit(principal, body, self._caller)
        # Its own id as the prefix: this order (and any whose id extends it), not every order of the deployment.
        stored = await self._trading.orders_with_prefix(self._account_id, body.client_order_id)
        for order, _ in stored:
            if order.request.client_order_id == body.client_order_id:
                return order
        raise StrategyError(f"order {body.client_order_id} was not stored")  # pragma: no cover - submit stores or raises

    def cancel(self, order_id: str) -> bool:
        return asyncio.run_coroutine_threadsafe(self._cancel(order_id), self._loop).result(PORT_TIMEOUT_SECONDS)

    async def _cancel(self, order_id: str) -> bool:
        principal = await owner_principal(self._trading.runtime, self._owner_id)
        try:
            await self._trading.cancel(principal, order_id, self._caller)
        except ConflictError:
            return False
        return True


@dataclass
class Deployment:
    """One running deployment: its host, bar builders and pending events."""

    row: StrategyDeploymentRow
    host: PaperHost
    builders: dict[str, BarBuilder]
    bars: asyncio.Queue[Bar] = field(default_factory=asyncio.Queue)
    quote: dict[str, Quote] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    halted: bool = False
    failed: bool = False
    synced_from: datetime | None = None
    """Orders updated at or after this (runtime clock) are read before the next event; None: read them all."""
    full_read_at: float = 0.0
    """When (monotonic) the next read of all the deployment's orders is due."""

    def on_quote(self, quote: Quote) -> None:
        builder = self.builders.get(quote.symbol)
        if builder is None:
            return
        closed = builder.add(quote)
        if closed is not None:
            self.bars.put_nowait(closed)
        if self.host.wants_quotes:
            self.quote[quote.symbol] = quote
        self.wake.set()

    def on_tick(self, now: datetime) -> None:
        for builder in self.builders.values():
            closed = builder.due(now)
            if closed is not None:
                self.bars.put_nowait(closed)
        self.wake.set()


class StrategyRunner:
    """Every running deployment of the installation (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.service = StrategyService(runtime)
        self.trading = self.service.trading
        self.deployments: dict[str, Deployment] = {}
        self.reads = 0
        """Reads of the deployments table so far."""
        self._stopping = False
        self._changed = True  # read the table at once when starting
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Follow the deployments table until `stop`: on a change announced, else every `FOLLOW_SECONDS`."""
        read_at = 0.0
        while not self._stopping:
            if self._changed or time.monotonic() >= read_at:
                self._changed = False
                read_at = time.monotonic() + FOLLOW_SECONDS
                try:
                    await self.follow()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - an outage must not end the runner; it retries
                    count_failure("strategy_deployments", exc, "strategy runner could not read the deployments")
                    read_at = time.monotonic() + POLL_SECONDS
            now = self.runtime.clock.now()
            for deployment in self.deployments.values():
                deployment.on_tick(now)
            wait = POLL_SECONDS if self.deployments else max(0.0, read_at - time.monotonic())
            await wait_event(self._wake, wait)
            self._wake.clear()
        for deployment_id in list(self.deployments):
            await self._end(deployment_id, call_stop=False)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def changed(self) -> None:
        """The deployments table changed (a deploy or a stop was announced): read it now."""
        self._changed = True
        self._wake.set()

    async def listen_changes(self) -> None:
        """Announcements of deploys and stops, from this process or another (the bus)."""
        async with self.runtime.bus.subscribe(DEPLOYMENTS_CHANNEL) as subscription:
            async for _ in subscription:
                self.changed()

    async def follow(self) -> None:
        """Start the deployments that are running in the table and stop those that no longer are."""
        self.reads += 1
        rows = {row.id: row for row in await self.service.running()}
        for row in list(rows.values()):
            try:
                await owner_principal(self.runtime, row.owner_id)
            except (AuthenticationError, PermissionDeniedError) as exc:
                await self.service.record_error(row.id, f"stopped: {exc}", fatal=True)
                del rows[row.id]
        for deployment_id in [d for d in self.deployments if d not in rows]:
            await self._end(deployment_id, call_stop=True)
        for deployment_id, row in rows.items():
            if deployment_id not in self.deployments:
                await self.begin(row)

    async def listen_quotes(self) -> None:
        """Quotes from the market-data bus to the deployments trading their symbol."""
        async with self.runtime.bus.subscribe(FANOUT_CHANNEL, starting=QUOTE_MESSAGES) as subscription:
            async for message in subscription:
                channel, raw = decode_message(message.data)
                if not self.deployments:
                    continue
                try:
                    quote = parse_quote(orjson.loads(raw)["data"])
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("unreadable quote ignored", channel=channel, error=str(exc))
                    continue
                for deployment in self.deployments.values():
                    deployment.on_quote(quote)

    # -- one deployment ------------------------------------------------------------------------------

    async def begin(self, row: StrategyDeploymentRow, *, run: bool = True) -> Deployment | None:
        """Set up the deployment's host (None when it cannot start: recorded as its error).

        With `run` its events are handled by a task of its own; without, the caller drives it
        (`start_host`, then `handle_pending` after each quote or tick: the parity replay does).
        """
        try:
            strategy = strategy_of(row)
            async with self.runtime.database.read_session() as session:
                account = await BooksService(session, self.runtime.clock).account(row.account_id)
            if account is None:
                raise StrategyError(f"account {row.account_id} does not exist")
        except StrategyError as exc:
            await self.service.record_error(row.id, f"cannot start: {exc}", fatal=True)
            return None
        port = _Port(asyncio.get_running_loop(), self.trading, row)
        host = PaperHost(
            strategy,
            prefix=row.order_prefix,
            port=port,
            clock=self.runtime.clock,
            base_currency=account.base_currency,
            account_id=row.account_id,
        )
        builders = {symbol: BarBuilder(symbol, row.bar_seconds) for symbol in strategy.symbols}
        deployment = Deployment(row, host, builders)
        self.deployments[row.id] = deployment
        if run:
            deployment.task = asyncio.create_task(self._work(deployment), name=f"strategy:{row.id}")
        log.info("strategy started", strategy=row.strategy, deployment=row.id, account=row.account_id)
        return deployment

    async def _end(self, deployment_id: str, *, call_stop: bool) -> None:
        deployment = self.deployments.pop(deployment_id, None)
        if deployment is None:
            return
        await stop_tasks([deployment.task], f"strategy {deployment_id}")
        if call_stop and deployment.host.started:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(deployment.host.stop)
        log.info("strategy stopped", deployment=deployment_id)

    async def _work(self, deployment: Deployment) -> None:
        """Rebuild the host from its orders, `on_start`, then handle its events one by one."""
        host = deployment.host
        await self.start_host(deployment)
        while not deployment.failed:
            await deployment.wake.wait()
            deployment.wake.clear()
            await self.handle_pending(deployment)
        # Stopped itself: out of the running set (the table says failed), `on_stop` once.
        self.deployments.pop(deployment.row.id, None)
        if host.started:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(host.stop)

    async def start_host(self, deployment: Deployment) -> None:
        """Rebuild the host from its orders and fills, then `on_start` (retried until it succeeds or the deployment fails)."""
        while not deployment.host.started and not deployment.failed:
            if not await self._guarded(deployment, self._start):
                await asyncio.sleep(POLL_SECONDS)

    async def handle_pending(self, deployment: Deployment) -> None:
        """Handle the deployment's closed bars and newest quotes in order, then take in its orders' changes."""
        while not deployment.bars.empty() and not deployment.failed:
            await self._guarded(deployment, partial(self._bar, bar=deployment.bars.get_nowait()))
        quotes, deployment.quote = deployment.quote, {}
        for quote in quotes.values():
            if not deployment.failed:
                await self._guarded(deployment, partial(self._quote, quote=quote))
        if deployment.host.open_orders() and not deployment.failed:
            await self._guarded(deployment, self._refresh, count_ok=False)

    async def _guarded(
        self, deployment: Deployment, work: Callable[[Deployment], Awaitable[None]], *, count_ok: bool = True
    ) -> bool:
        """Run one step; an exception is the deployment's error (it may stop itself). Whether it succeeded."""
        try:
            await work(deployment)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a strategy's failure is recorded, not raised
            message = f"{type(exc).__name__}: {exc}"
            log.warning("strategy error", deployment=deployment.row.id, error=message)
            row = await self.service.record_error(deployment.row.id, message)
            if row is not None:
                deployment.row.consecutive_errors = row.consecutive_errors
                if row.state == FAILED:
                    log.error("strategy stopped itself after repeated errors", deployment=row.id, error=message)
                    deployment.failed = True
            return False
        if count_ok and deployment.row.consecutive_errors:
            deployment.row.consecutive_errors = 0
            await self.service.record_ok(deployment.row.id)
        return True

    async def _orders_and_cash(self, deployment: Deployment) -> tuple[list[tuple[Order, list[FillEvent]]], Decimal]:
        """The deployment's orders changed since the last read (all of them at first and every `FOLLOW_SECONDS`), and cash.

        Reading all of them before every event made each bar cost more than the last on a long run; the host
        keeps what it was given, so the orders updated since `SYNC_OVERLAP_SECONDS` before the previous read
        began are enough (overlap is harmless: fills are taken by id, changes by version), and the periodic
        full read bounds what a write stamped earlier than that but committed later could hide.
        """
        row = deployment.row
        started, now = time.monotonic(), self.runtime.clock.now()
        since = None if started >= deployment.full_read_at else deployment.synced_from
        orders = await self.trading.orders_with_prefix(row.account_id, row.order_prefix, changed_since=since)
        deployment.synced_from = now - timedelta(seconds=SYNC_OVERLAP_SECONDS)
        if since is None:
            deployment.full_read_at = started + FOLLOW_SECONDS
        async with self.runtime.database.read_session() as session:
            books = await BooksService(session, self.runtime.clock).snapshot(row.account_id)
        return orders, books.cash_in(books.base_currency)

    async def _start(self, deployment: Deployment) -> None:
        orders, cash = await self._orders_and_cash(deployment)
        host = deployment.host
        for symbol, builder in deployment.builders.items():
            bars, first = await self.service.kept_bars(deployment.row.id, symbol, HISTORY_BARS)
            host.market.restore(symbol, bars, first)
            if bars:
                builder.resume_after(bars[-1])
        host.sync(orders, cash, notify=False)
        await asyncio.to_thread(host.start)

    async def _halted(self, deployment: Deployment) -> bool:
        state, reason = await self.trading.effective_state(deployment.row.account_id)
        halted = state is TradingState.HALTED
        if halted != deployment.halted:
            deployment.halted = halted
            if halted:
                log.warning("strategy paused: trading is halted", deployment=deployment.row.id, reason=reason)
            else:
                log.info("strategy resumed: trading is active again", deployment=deployment.row.id)
        return halted

    async def _bar(self, deployment: Deployment, bar: Bar) -> None:
        host = deployment.host
        history = host.history(bar.symbol)
        await self.service.keep_bar(deployment.row.id, bar, history.offset + len(history.bars), keep=HISTORY_BARS)
        if await self._halted(deployment):
            host.add_bar(bar)
            return
        orders, cash = await self._orders_and_cash(deployment)

        def handle() -> None:
            host.sync(orders, cash)
            host.on_bar(bar)

        await asyncio.to_thread(handle)

    async def _quote(self, deployment: Deployment, quote: Quote) -> None:
        if await self._halted(deployment):
            return
        orders, cash = await self._orders_and_cash(deployment)
        host = deployment.host

        def handle() -> None:
            host.sync(orders, cash)
            host.on_quote(quote)

        await asyncio.to_thread(handle)

    async def _refresh(self, deployment: Deployment) -> None:
        if await self._halted(deployment):
            return
        orders, cash = await self._orders_and_cash(deployment)
        await asyncio.to_thread(deployment.host.sync, orders, cash)


# -- running -----------------------------------------------------------------------------------------


def _tasks(runner: StrategyRunner) -> list[asyncio.Task[None]]:
    return [
        asyncio.create_task(runner.run(), name="strategies"),
        asyncio.create_task(forever("strategy_quotes", runner.listen_quotes), name="strategies-quotes"),
        asyncio.create_task(forever("strategy_changes", runner.listen_changes), name="strategies-changes"),
    ]


RUNNER: Slot[StrategyRunner] = Slot("strategy.runner")


async def start_strategies(runtime: Runtime) -> None:
    """Run the strategy runner inside this process when it should (an API start hook, like the engine)."""
    if not runtime.settings.effective_strategies_in_process:
        return
    runner = StrategyRunner(runtime)
    runtime.components.put(RUNNER, runner)
    tasks = _tasks(runner)

    async def stop() -> None:
        runner.stop()
        await asyncio.wait({tasks[0]}, timeout=5)  # the runner's own stop first: it ends its strategies
        await stop_tasks(tasks, "strategy runner")

    runtime.closers.append(stop)
    log.info("strategy runner running in process")


async def run_strategies(runtime: Runtime) -> None:
    """``tradestack serve strategies``: run every deployed strategy until SIGTERM or SIGINT."""
    if runtime.settings.redis_url is None:
        raise RuntimeError("tradestack serve strategies needs Redis (TRADESTACK_REDIS_URL): quotes reach it on the Redis bus")
    runner = StrategyRunner(runtime)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop)
    tasks = _tasks(runner)
    log.info("strategy runner started")
    await tasks[0]
    await stop_tasks(tasks[1:], "strategy runner")
    log.info("strategy runner stopped")
