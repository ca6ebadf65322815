"""The paper matching engine in a process: one loop per shard, the single writer of executions.

An `EngineShard` keeps one `MatchingEngine` per instrument for the open orders of the accounts it
owns (`commands.shard_of`). One task does everything, in order: match on the newest quote of each
symbol, apply order changes it was told about, expire day orders when their venue closes, and
every `engine_reconcile_seconds` compare its book with the open orders in the database. It records
the engine events of a step together (`executions.record_many`, one transaction for up to
`GROUP_MOST` of them; on SQLite, whose one writer order entry shares, `SQLITE_GROUP_MOST`, fewer), each on its own
(`executions.record`) when that fails. Quotes go first so an order is never matched on a
quote older than one the shard already holds (a marketable buy taken in the same step as a new quote
filled at the ask before it); a cancel taken in that step may then find its order filled in the
book, which `record` settles by the database (the canceled order is gone, no fill is booked).

A change handed over with the order's committed state (`commands.Change.state`, in process) is
taken as it is only when the shard can tell that state is at least as new as what its book holds:
it knows the version (event count) of each order in its book, including the executions it wrote
itself, and of the orders it last saw end (`ENDED_KEPT` of them). A state one event past the
known version is taken; one at or below it is stale (a cancel or replace handed over before the
new order it changes, say) and skipped; a gap, or an order whose version it does not know, is
read from the database -- except an order it never knew of, whose state was committed by a
transaction begun after everything the shard has forgotten (`commands.tick`): nothing newer of it
can have been seen. From the Redis stream a state is what the engine needs of the order
(`commands.Handed`), and its tick is comparable only from a process on the shard's `commands.CLOCK`
(an order the shard never knew of, handed from another host, is read); changes without a state are
always read.

State lives in the database, not here. On start (and whenever a write fails) the book is rebuilt
from the open orders, each carrying what it already did (its fills, their notional and fees), so
fill ids continue where they stopped and a fill is never applied twice.

Embedded (`tradestack up`, or one API worker without Redis) one shard owning every account runs
in the API process, on a thread and event loop of its own (`EngineThread`), and hears of order
changes directly. In production `tradestack serve engine
--shard N` reads them from the shard's Redis stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson
import redis.asyncio
from sqlalchemy import select

from tradestack.core.money import D
from tradestack.domain.instruments import Instrument
from tradestack.domain.marketdata import Quote
from tradestack.domain.matching import Expired, Fill, LatencyModel, MatchingEngine, SlippageModel, Triggered, WorkingOrder
from tradestack.domain.order_kinds import WORKING_STATUSES
from tradestack.domain.orders import Order, OrderStatus, TimeInForce
from tradestack.domain.portfolio import FxRates
from tradestack.domain.snapshot import FX_PIVOT, fx_rates_of, view_of
from tradestack.kit.aio import new_event_loop, stop_loop_thread, stop_tasks, wait_event
from tradestack.kit.db import plain_rows
from tradestack.kit.logging import get_logger
from tradestack.kit.metrics import ENGINE_ORDERS_WORKING
from tradestack.kit.outages import count_failure, count_outage, forever, unavailable_backend
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import (
    FANOUT_CHANNEL,
    QUOTE_MESSAGES,
    MarketDataService,
    decode_message,
    trading_hours,
)
from tradestack.models.trading import WORKING_STATUS_VALUES, OrderRow
from tradestack.trading.commands import (
    CLOCK,
    COMMANDS,
    Change,
    Handed,
    LocalCommands,
    decode_state,
    shard_of,
    stream_key,
    tick,
    working_order_of,
)
from tradestack.trading.events import publish_updates
from tradestack.trading.executions import GROUP_MOST, SQLITE_GROUP_MOST, Recorded, Result, record, record_many
from tradestack.trading.metrics import update_trading_gauges
from tradestack.trading.repository import TradingRepository
from tradestack.trading.service import fee_model_for

log = get_logger(__name__)
SESSION_CHECK_SECONDS = 1.0
SETTLE_SECONDS = 10.0
ENGINE_START_SECONDS = 10.0
ENGINE_FINISH_SECONDS = 5.0
"""At stop, how long the engine's step in progress may take to finish before it is cancelled."""
ENGINE_STOP_SECONDS = 12.0
"""At stop, how long to wait for the engine's thread (its step, then closing its connections): under `CLOSE_STEP_SECONDS`."""
READ_BATCH = 500
"""At most how many messages of its stream the shard reads at once."""
ENDED_KEPT = 10_000
"""How many ended orders' versions a shard remembers, to know a late hand-over of one as stale (older: read)."""
# What reconciliation reads every `engine_reconcile_seconds`: each working order's id and account, every resting order
# of every account, as the driver returns them (`plain_rows`: no SQLAlchemy row or result processing per row).
_WORKING_ORDERS = str(
    select(OrderRow.id, OrderRow.account_id)
    .where(OrderRow.status.in_(WORKING_STATUS_VALUES))  # as `ix_orders_working` names them: read through it
    .compile(compile_kwargs={"literal_binds": True})
)


def parse_quote(data: dict[str, object]) -> Quote:
    """A quote from its published JSON."""
    return Quote(
        str(data["symbol"]),
        D(str(data["bid"])),
        D(str(data["ask"])),
        D(str(data["bid_size"])),
        D(str(data["ask_size"])),
        D(str(data["last"])),
        D(str(data["last_size"])),
        datetime.fromisoformat(str(data["ts"])),
    )


class EngineShard:
    """Matching for the accounts of one shard (`shard` None: every account)."""

    def __init__(self, runtime: Runtime, shard: int | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.shard = shard
        self.shards = runtime.settings.engine_shards
        self.engines: dict[str, MatchingEngine] = {}
        self.owners: dict[str, str] = {}  # order id -> account id
        self.instruments: Mapping[str, Instrument] = {}
        self.rates = FxRates({}, pivot=FX_PIVOT)
        self._changed: dict[str, Change] = {}  # order id -> its change waiting to be applied
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}  # order id -> callers awaiting its pass
        self._quotes: dict[str, Quote] = {}  # newest unprocessed quote per symbol
        self._versions: dict[str, int] = {}  # order id -> the version the book holds, for every order in it
        # order id -> (its version, None when unsure; the `tick` it was learned at), for orders that left the book,
        # oldest first; trimmed to `ENDED_KEPT`, `_forgotten` then being the newest tick dropped
        self._ended: dict[str, tuple[int | None, int]] = {}
        self._forgotten = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._reconcile_at = 0.0
        self._session_at = 0.0
        self._label = "all" if shard is None else str(shard)

    def owns(self, account_id: str) -> bool:
        return self.shard is None or self.shards == 1 or shard_of(account_id, self.shards) == self.shard

    # -- inputs ----------------------------------------------------------------------------------

    async def order_changed(self, change: Change) -> None:
        """Look at this order again (it was accepted, replaced or canceled)."""
        self.note_changed(change)

    def note_changed(self, change: Change, waiter: asyncio.Future[None] | None = None) -> None:
        """`order_changed`, on the shard's loop; `waiter` (of any loop) is done once the book has taken the order in.

        Of two changes of one order waiting together the newer state is kept; a change to read wins over both."""
        if not self.owns(change.account_id):
            if waiter is not None:
                _resolve(waiter)
            return
        order_id = change.order_id
        if waiter is not None:
            self._waiting.setdefault(order_id, []).append(waiter)
        waiting = self._changed.get(order_id)
        self._changed[order_id] = change if waiting is None else _newer(waiting, change)
        self._wake.set()

    async def order_changed_settled(self, change: Change) -> None:
        """`order_changed`, then wait (at most `SETTLE_SECONDS`) until the book has taken it in and matched it.

        In process only: the caller (order entry, after its commit) answers its client once an
        accepted marketable order has filled, so the client's next
        order is decided against the books it would see had it waited, never denied for the lag.
        A slow engine only delays the answer; the order is durable either way.
        """
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.note_changed(change, waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout=SETTLE_SECONDS)

    def _settle(self, order_ids: Iterable[str]) -> None:
        for order_id in order_ids:
            for waiter in self._waiting.pop(order_id, []):
                _resolve(waiter)

    def settle_all(self) -> None:
        """End every wait for this shard (it stops): the orders are durable, the book will take them in on start."""
        self._settle(list(self._waiting))

    def on_quote(self, quote: Quote) -> None:
        self._quotes[quote.symbol] = quote
        self._wake.set()

    async def listen_quotes(self) -> None:
        """Feed quotes from the market-data bus (conflated: only the newest per symbol waits)."""
        async with self.runtime.bus.subscribe(FANOUT_CHANNEL, starting=QUOTE_MESSAGES) as subscription:
            async for message in subscription:
                channel, raw = decode_message(message.data)
                try:
                    self.on_quote(parse_quote(orjson.loads(raw)["data"]))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("unreadable quote ignored", channel=channel, error=str(exc))

    # -- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Rebuild from the database, then work until `stop`."""
        market = MarketDataService(self.runtime)
        while not self._stopping:
            try:
                await market.seed_instruments()  # an engine may start before any API process has seeded them
                self.instruments = await market.instruments()
                break
            except Exception as exc:
                backend = unavailable_backend(exc)
                if backend is None:
                    raise
                count_outage(backend, "engine_start", exc)
                await asyncio.sleep(1.0)
        try:
            await self.rebuild()
        except Exception as exc:  # noqa: BLE001 - reconciliation retries what the first rebuild could not place
            count_failure("engine_rebuild", exc, "engine rebuild failed; reconciliation will retry")
        while not self._stopping:
            await wait_event(self._wake, SESSION_CHECK_SECONDS)
            self._wake.clear()
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed write must not stop matching for everyone
                count_failure("engine_step", exc, "engine step failed; rebuilding from the database")
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    await self.rebuild()

    @property
    def keeps_gauges(self) -> bool:
        """The platform-wide gauges are kept by one engine: the embedded one, or shard 0."""
        return self.shard in (None, 0)

    async def keep_gauges(self) -> None:
        """Refresh the platform-wide gauges every `engine_gauges_seconds`, beside the loop: their reads (every account's
        books, the day's ended orders) never hold up a step. A failure skips one refresh (an outage is counted)."""
        while not self._stopping:
            try:
                # before `run` has read the instruments, the snapshot reads them (the FX pairs value foreign cash)
                await update_trading_gauges(self.runtime, self.instruments or None)
            except Exception as exc:  # noqa: BLE001 - the gauges wait for the next pass; matching goes on
                backend = unavailable_backend(exc)
                if backend is not None:
                    count_outage(backend, "engine_gauges", exc)
                else:
                    log.warning("engine gauges not refreshed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.settings.engine_gauges_seconds)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def step(self) -> None:
        """One pass: quotes, order changes, session closes, reconciliation (see the module docstring for the order)."""
        quotes, self._quotes = self._quotes, {}
        self._update_rates(quotes.values())
        for symbol, quote in quotes.items():
            engine = self.engines.get(symbol)
            if engine is not None:
                await self._apply(engine, engine.on_quote(quote))
        changed, self._changed = self._changed, {}  # with those that came meanwhile, matched on the quotes just applied
        try:
            await self._take(changed)
        finally:
            self._settle(changed)  # failed or not: the caller's order is durable, its wait is over
        now = time.monotonic()
        if now >= self._session_at:
            self._session_at = now + SESSION_CHECK_SECONDS
            await self._close_sessions()
        if now >= self._reconcile_at:
            self._reconcile_at = now + self.settings.engine_reconcile_seconds
            await self.reconcile()
        ENGINE_ORDERS_WORKING.labels(shard=self._label).set(len(self.owners))

    async def refresh_rates(self) -> None:
        """Take the FX rates of the cached quotes (the newest published), before booking fills.

        The bus drops the oldest quotes for a subscriber that falls behind, so the rates seen on it may
        lack a pair: an auto-convert account's purchase in that currency would then be left as a negative
        balance instead of being converted. When the cache is away the rates seen on the bus stand.
        """
        try:
            cached = await MarketDataService(self.runtime).snapshot(instruments=self.instruments)
        except Exception as exc:
            backend = unavailable_backend(exc)
            if backend is None:
                raise
            count_outage(backend, "engine_rates", exc)
            return
        if cached.rates.quotes:
            self.rates = FxRates({**self.rates.quotes, **cached.rates.quotes}, pivot=cached.rates.pivot)

    def _update_rates(self, quotes: Iterable[Quote]) -> None:
        fresh = fx_rates_of(self.instruments, {quote.symbol: view_of(quote) for quote in quotes})
        if fresh.quotes:
            self.rates = FxRates({**self.rates.quotes, **fresh.quotes}, pivot=fresh.pivot)

    # -- the book ----------------------------------------------------------------------------------

    def _engine(self, instrument: Instrument) -> MatchingEngine:
        engine = self.engines.get(instrument.symbol)
        if engine is None:
            s = self.settings
            engine = MatchingEngine(
                instrument,
                fee_model_for(self.runtime, instrument),
                SlippageModel(s.paper_slippage_bps),
                LatencyModel(s.paper_latency_ms / 1000),
                s.paper_participation_rate,
                seed=s.synthetic_seed,
                hours=trading_hours(instrument.venue, always_open=s.market_hours_always_open),
            )
            self.engines[instrument.symbol] = engine
        return engine

    async def _seed_quote(self, engine: MatchingEngine) -> None:
        """Give a new symbol engine the cached quote, when it is fresh, so a marketable order fills at once."""
        data = await MarketDataService(self.runtime).quote_data(engine.instrument.symbol)
        if data is None:
            return
        quote = parse_quote(data)
        age = (self.runtime.clock.now() - quote.ts).total_seconds()
        if age <= self.settings.marketdata_stale_seconds:
            await self._apply(engine, engine.on_quote(quote))

    async def sync(self, order_id: str, account_id: str) -> None:
        """Make the book agree with the database about one order."""
        async with self.runtime.database.loop_read_session() as session:
            order = await TradingRepository(session).load(order_id)
        await self._place(order, account_id, order_id)

    def _known_version(self, order_id: str) -> int | None:
        """The order's version the book holds, or it last saw the order end at; None when it does not know it."""
        version = self._versions.get(order_id)
        if version is None:
            version, _ = self._ended.get(order_id, (None, 0))
        return version

    def _takes(self, change: Change) -> bool | None:
        """Whether the book takes the change's state as it is (True), has it or a newer one (False), or must read (None).

        See the module docstring: one event past what the book holds is taken, at or below it skipped;
        a gap, or an order whose version is not known, read -- unless the shard never knew of the order and
        forgot nothing since the state's transaction began."""
        state = change.state
        if state is None:
            return None
        order_id = change.order_id
        if order_id not in self._versions and order_id not in self._ended:
            return True if change.begun_at > self._forgotten else None
        known = self._known_version(order_id)
        if known is None:
            return None
        if state.version <= known:
            return False
        return True if state.version == known + 1 else None

    async def _take(self, changed: dict[str, Change]) -> None:
        """Apply changes (order id -> change): take each state the book can trust, read the others together (one query,
        not a session each).

        Placing one can fill another that is already in the book; its state or read may then be stale
        (its fill was written after it): versions tell, and such an order is judged, or read, again."""
        if not changed:
            return
        reads = [order_id for order_id, change in changed.items() if self._takes(change) is None]
        loaded: dict[str, Order] = {}
        if reads:
            async with self.runtime.database.loop_read_session() as session:
                loaded = await TradingRepository(session).load_many(reads)
        read = set(reads)
        for order_id, change in changed.items():
            if order_id in read:
                order = loaded.get(order_id)
                known = self._known_version(order_id)
                if order is not None and known is not None and order.version < known:
                    await self.sync(order_id, change.account_id)
                else:
                    await self._place(order, change.account_id, order_id)
                continue
            takes = self._takes(change)
            if takes is None:
                await self.sync(order_id, change.account_id)
            elif takes:
                await self._place(change.state, change.account_id, order_id)

    def _left_book(self, order_id: str, version: int | None) -> None:
        """Drop the order from the book (if there), remembering the version it ended at (None: not sure it did)."""
        for engine in self.engines.values():
            engine.cancel(order_id)
        self.owners.pop(order_id, None)
        self._versions.pop(order_id, None)
        self._ended.pop(order_id, None)
        self._ended[order_id] = (version, tick())
        while len(self._ended) > ENDED_KEPT:
            oldest = next(iter(self._ended))
            _, self._forgotten = self._ended.pop(oldest)

    async def _place(self, order: Order | Handed | None, account_id: str, order_id: str) -> None:
        working = _working(order)
        if order is None or working is None:
            self._left_book(order_id, None if order is None else order.version)
            return
        for engine in self.engines.values():
            engine.cancel(order_id)
        symbol = working.symbol
        instrument = self.instruments.get(symbol)
        if instrument is None:
            self.instruments = await MarketDataService(self.runtime).instruments()
            instrument = self.instruments.get(symbol)
            if instrument is None:
                log.error("order for an unknown instrument left unmatched", order_id=order_id, symbol=symbol)
                self._left_book(order_id, None)
                return
        fresh = instrument.symbol not in self.engines
        engine = self._engine(instrument)
        if fresh:
            await self._seed_quote(engine)
        self.owners[order_id] = account_id
        self._versions[order_id] = order.version
        self._ended.pop(order_id, None)
        events = engine.submit(working, self.runtime.clock.now())
        await self._apply(engine, events)

    async def rebuild(self) -> None:
        """Drop the book and load every open order of this shard from the database."""
        self.engines.clear()
        self.owners.clear()
        self._versions.clear()
        self._ended.clear()
        self._forgotten = tick()  # so far, should the read fail
        async with self.runtime.database.read_session() as session:
            repo = TradingRepository(session)
            rows = [r for r in await repo.open_orders() if self.owns(r.account_id)]
            orders = [(r.account_id, await repo.load(r.id)) for r in rows]
        self._forgotten = tick()  # what the book knew is gone: a state committed before the read is read again
        for account_id, order in orders:
            if order is not None:
                await self._place(order, account_id, order.id)
        log.info("engine book rebuilt", shard=self._label, orders=len(self.owners))

    async def reconcile(self) -> None:
        """Pick up open orders nobody told us about, and drop orders that ended without us hearing: read together (one
        query, as `_take` reads). An order whose change waits for the next step is left to it: we were told."""
        async with self.runtime.database.loop_read_session() as session:
            rows = await plain_rows(session, _WORKING_ORDERS)
        owns, owners, waiting = self.owns, self.owners, self._changed
        open_ids = {order_id: account_id for order_id, account_id in rows if owns(account_id)}
        reads = {
            order_id: Change(account_id, order_id)
            for order_id, account_id in open_ids.items()
            if order_id not in owners and order_id not in waiting
        }
        reads.update((order_id, Change(owners[order_id], order_id)) for order_id in owners if order_id not in open_ids)
        await self._take(reads)

    async def _close_sessions(self) -> None:
        """Expire the day orders whose session has ended: the one they were taken in, or (taken while
        the venue was closed) the next one."""
        now = self.runtime.clock.now()
        for engine in list(self.engines.values()):
            hours = engine.hours
            if hours is None or hours.always_open:
                continue
            ended = [
                o.order_id
                for o in engine.working_orders()
                if o.time_in_force is TimeInForce.DAY and hours.next_close(o.submitted_at) <= now
            ]
            if ended:
                await self._apply(engine, engine.on_session_close(now, ended))

    def _wrote(self, account_id: str, order_id: str, version: int, status: OrderStatus) -> None:
        """The shard wrote an execution of the order, making it `version`: the book holds that version when it held the
        one before; otherwise someone else wrote the order too (a replace, say) and it is read again."""
        if status not in WORKING_STATUSES:
            self._left_book(order_id, version)
            return
        known = self._versions.get(order_id)
        self._versions[order_id] = version
        if known is None or version != known + 1:
            self.note_changed(Change(account_id, order_id))

    async def _apply(self, engine: MatchingEngine, events: list[Fill | Triggered | Expired]) -> None:
        if any(isinstance(event, Fill) for event in events):
            await self.refresh_rates()
        owned = [(account_id, event) for event in events if (account_id := self.owners.get(event.order_id)) is not None]
        updates: list[tuple[str, str, dict[str, Any]]] = []  # what the events' records publish, together at the end
        most = SQLITE_GROUP_MOST if self.runtime.database.dialect == "sqlite" else GROUP_MOST
        for start in range(0, len(owned), most):
            group = owned[start : start + most]
            results = await self._record_group(engine, group) if len(group) > 1 else None
            for n, (account_id, event) in enumerate(group):
                result = results[n] if results is not None else await self._record_one(engine, account_id, event)
                if result is not None:
                    updates += self._recorded(engine, account_id, event, result)
        if updates:
            await publish_updates(self.runtime, updates)

    async def _record_group(
        self, engine: MatchingEngine, group: list[tuple[str, Fill | Triggered | Expired]]
    ) -> list[Result] | None:
        """The events written in one transaction (`record_many`); None when it failed (nothing of it written)."""
        try:
            return await record_many(self.runtime, engine.instrument, group, self.rates)
        except Exception as exc:  # noqa: BLE001 - each event is then recorded on its own
            log.warning(
                "could not record executions together; recording them one by one",
                events=len(group),
                error=f"{type(exc).__name__}: {exc}",
            )
            return None

    async def _record_one(self, engine: MatchingEngine, account_id: str, event: Fill | Triggered | Expired) -> Result | None:
        """The event written in a transaction of its own; None when that failed."""
        try:
            return await record(self.runtime, account_id, engine.instrument, event, self.rates)
        except Exception as exc:  # noqa: BLE001 - one order's failure must not stop the others
            # The book is ahead of the database for this order: forget it; reconciliation reloads it
            # from what the database holds, so nothing is booked twice and nothing is skipped.
            count_failure(
                "engine_record", exc, "could not record an execution; the order is reloaded at the next reconciliation",
                order_id=event.order_id,
            )  # fmt: skip
            self._left_book(event.order_id, None)
            return None

    def _recorded(
        self, engine: MatchingEngine, account_id: str, event: Fill | Triggered | Expired, result: Result
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """Note what a recorded event did to the order; what it publishes."""
        updates: list[tuple[str, str, dict[str, Any]]] = []
        if result.outcome is Recorded.GONE:
            self._left_book(event.order_id, None)
        elif result.outcome is Recorded.STALE:  # a replace changed its terms since it reached the book: read it again
            log.warning(  # an expected race, and rare: seen often, the book is not taking replaces (or `admits` is wrong)
                "a fill matched on terms a replace has changed was not booked; the order is read again",
                order_id=event.order_id,
                fill_id=event.fill_id if isinstance(event, Fill) else None,
            )
            self._left_book(event.order_id, None)  # version unknown: the next step reads it and places what is stored
            self.note_changed(Change(account_id, event.order_id))
        if result.order is not None:
            self._wrote(account_id, event.order_id, result.order.version, OrderStatus(result.order.status))
            updates.append(("orders", account_id, result.order.model_dump(mode="json")))
        if result.fill is not None:
            fill = {"account_id": account_id, "symbol": engine.instrument.symbol, **result.fill.to_dict()}
            updates.append(("fills", account_id, fill))
        if result.books is not None:
            updates.append(("portfolio", account_id, {"account_id": account_id, "balances": result.books}))
        return updates


def _working(order: Order | Handed | None) -> WorkingOrder | None:
    """The engine's view of the order when it works (a `Handed` state of a working order has its terms), else None."""
    if order is None or order.status not in WORKING_STATUSES:
        return None
    return order.working if isinstance(order, Handed) else working_order_of(order)


def _newer(waiting: Change, change: Change) -> Change:
    """Of two changes of one order waiting together, the one to apply: one to read over any state, else the newer state."""
    if waiting.state is None or change.state is None:
        return change if change.state is None else waiting
    return waiting if waiting.state.version > change.state.version else change


def _resolve(waiter: asyncio.Future[None]) -> None:
    """Finish a settle wait, on the loop it belongs to (the shard's own, or the request loop's)."""
    loop = waiter.get_loop()
    if loop is asyncio.get_running_loop():
        if not waiter.done():
            waiter.set_result(None)
        return
    with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits any more
        loop.call_soon_threadsafe(_finish, waiter)


def _finish(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # a wait that timed out is cancelled
        waiter.set_result(None)


# -- running -------------------------------------------------------------------------------------


class EngineThread:
    """The embedded engine shard on an event loop of its own, in a thread of its own.

    Matching on each quote, expiries, reconciliation, gauges and recording executions happen there,
    so the engine never holds the request loop for a step of its work. It works on a `Runtime.twin`
    (database engines of its own; on SQLite it shares the process's writer lock, so the order desk's
    and the engine's write transactions queue for each other). Order changes reach it through
    `order_changed` (thread-safe hand-over to its loop); quotes through the bus (the in-process bus
    hands messages between loops); its order, fill and portfolio updates go out on the same bus.

    `stop` lets the step in progress finish (each execution is one transaction, so one cut short is
    rolled back whole and matched again from the database on the next start), bounded by
    `ENGINE_FINISH_SECONDS`, then closes the twin's connections and joins the thread.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.shard: EngineShard | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._inbox: deque[tuple[Change, asyncio.Future[None] | None]] = deque()

    async def start(self) -> None:
        """Start the thread (on the request loop); returns once the engine's loop runs."""
        self._thread = threading.Thread(target=self._main, name="trading-engine", daemon=True)
        self._thread.start()
        if not await asyncio.to_thread(self._started.wait, ENGINE_START_SECONDS) or self.shard is None:
            raise RuntimeError("the paper matching engine's thread did not start")

    def _main(self) -> None:
        try:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                runner.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - the thread's end is logged, never silent
            log.error("paper matching engine thread failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._started.set()  # a start still waiting learns it failed (`shard` is None)

    async def _serve(self) -> None:
        runtime = self.runtime.twin()
        shard = EngineShard(runtime)
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        run = asyncio.create_task(shard.run(), name="engine")
        quotes = asyncio.create_task(forever("engine_quotes", shard.listen_quotes), name="engine-quotes")
        gauges = asyncio.create_task(shard.keep_gauges(), name="engine-gauges")
        self.shard = shard
        self._started.set()
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait([stopping, run], return_when=asyncio.FIRST_COMPLETED)
            if run.done() and not run.cancelled() and run.exception() is not None:
                log.error("paper matching engine stopped", error=f"{type(run.exception()).__name__}: {run.exception()}")
                await self._stopping.wait()
        finally:
            shard.stop()
            quotes.cancel()
            gauges.cancel()
            stopping.cancel()
            _, unfinished = await asyncio.wait([run], timeout=ENGINE_FINISH_SECONDS)
            if unfinished:
                log.warning("paper matching engine step cut short at stop", seconds=ENGINE_FINISH_SECONDS)
            await stop_tasks([run, quotes, gauges], "paper matching engine")
            self._take_inbox()  # changes handed over too late: their orders wait in the database for the next start
            shard.settle_all()
            await runtime.close()

    async def order_changed(self, change: Change) -> None:
        """`EngineShard.order_changed`, from the request loop."""
        self._hand_over(change, None)

    async def order_changed_settled(self, change: Change) -> None:
        """`EngineShard.order_changed_settled`, from the request loop (waits there, never blocks it)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._hand_over(change, waiter):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout=SETTLE_SECONDS)

    def _hand_over(self, change: Change, waiter: asyncio.Future[None] | None) -> bool:
        """Queue the change for the engine's loop (first in, first out), waking it once per batch (a wake-up is a write
        to its self-pipe)."""
        loop = self._loop
        if self.shard is None or loop is None or loop.is_closed():
            return False
        self._inbox.append((change, waiter))
        if len(self._inbox) == 1:
            try:
                loop.call_soon_threadsafe(self._take_inbox)
            except RuntimeError:  # the engine's loop has just ended (stopping): the order waits in the database
                self._inbox.clear()
                return False
        return True

    def _take_inbox(self) -> None:
        """On the engine's loop: hand the queued changes to the shard."""
        shard = self.shard
        while self._inbox and shard is not None:
            shard.note_changed(*self._inbox.popleft())

    async def stop(self) -> None:
        """Stop the engine and its thread (on the request loop), within `ENGINE_STOP_SECONDS`."""
        if not await stop_loop_thread(self._thread, self._loop, self._stopping, ENGINE_STOP_SECONDS):
            log.warning("paper matching engine thread did not stop in time", seconds=ENGINE_STOP_SECONDS)


async def start_engine(runtime: Runtime) -> None:
    """Start the embedded engine, on its own thread, when this process should run one (an API start hook)."""
    if not runtime.settings.effective_engine_in_process:
        return
    engine = EngineThread(runtime)
    await engine.start()
    runtime.components.put(COMMANDS, LocalCommands(engine.order_changed, engine.order_changed_settled))
    runtime.closers.append(engine.stop)
    log.info("paper matching engine running in process, on its own thread")


async def _read_commands(shard: EngineShard, client: Any, key: str, gather_seconds: float) -> None:
    """Follow the shard's command stream in batches; reconnect with backoff whenever Redis goes away (never exit).

    After a read that found fewer than `READ_BATCH` messages, the next waits `gather_seconds` (the setting
    `engine_read_gather_seconds`): under load one XREAD (and one step) takes many orders rather than one each, each at
    most that much later; the first message after a quiet spell is still read as soon as it arrives (the read blocks).

    The XREADs go straight to one connection of the client's pool (its `send_command` and `read_response`), without the
    client's command layer (retries, observability, reply callbacks: a third of a read's CPU); a read cut short
    (an error, the stop) drops that connection, whose reply may still be on its way."""
    last_id: str | bytes | None = None

    async def read() -> None:
        nonlocal last_id
        if last_id is None:
            # Messages from here on are read; anything older is in the database the rebuild reads.
            newest = await client.xrevrange(key, count=1)
            last_id = newest[0][0].decode() if newest else "0-0"
        pool = client.connection_pool
        connection = await pool.get_connection()
        try:
            while True:
                await connection.send_command("XREAD", "COUNT", READ_BATCH, "BLOCK", 1000, "STREAMS", key, last_id)
                response = await connection.read_response()
                entries = _entries(response)
                for _, flat in entries:
                    change = change_of(dict(zip(flat[::2], flat[1::2], strict=False)))
                    if change is not None:
                        shard.note_changed(change)
                if entries:
                    last_id = entries[-1][0]
                    if len(entries) < READ_BATCH and gather_seconds:
                        await asyncio.sleep(gather_seconds)
        finally:
            await connection.disconnect()
            await pool.release(connection)

    await forever("engine_commands", read)


def _entries(response: Any) -> Any:
    """The messages of an XREAD of one stream, as the server replied (RESP2: a list of one [key, messages]; RESP3: a
    map of it; none: nil), each [id, [field, value, ...]]."""
    if not response:
        return ()
    if isinstance(response, dict):
        return next(iter(response.values()))
    return response[0][1]


_CLOCK = CLOCK.encode()


def change_of(fields: dict[bytes, bytes]) -> Change | None:
    """The `Change` a stream message says (None: not one): with its state when it carries a readable one, and its tick
    when that was read on this process's clock (otherwise 0: an order the shard does not know is read)."""
    account = fields.get(b"account", b"").decode()
    order = fields.get(b"order", b"").decode()
    if not account or not order:
        return None
    encoded = fields.get(b"state")
    if encoded is None:
        return Change(account, order)
    try:
        state = decode_state(encoded)
        if state.working is not None and state.working.order_id != order:
            raise ValueError(f"the state is of order {state.working.order_id}")
        begun_at = int(fields[b"begun"]) if fields.get(b"clock") == _CLOCK else 0
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("unreadable order state in an engine message; the order is read", order_id=order, error=str(exc))
        return Change(account, order)
    return Change(account, order, state=state, begun_at=begun_at)


async def run_engine(runtime: Runtime, shard_number: int) -> None:
    """``tradestack serve engine --shard N``: rebuild, then match until SIGTERM or SIGINT."""
    settings = runtime.settings
    if settings.redis_url is None:
        raise RuntimeError("tradestack serve engine needs Redis (TRADESTACK_REDIS_URL): orders reach it through a Redis stream")
    if not 0 <= shard_number < settings.engine_shards:
        raise RuntimeError(
            f"--shard must be in 0..{settings.engine_shards - 1} (TRADESTACK_ENGINE_SHARDS={settings.engine_shards})"
        )
    client: Any = redis.asyncio.Redis.from_url(settings.redis_url)
    key = stream_key(settings.redis_namespace, shard_number)
    shard = EngineShard(runtime, shard_number)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(shard.run(), name="engine"),
        asyncio.create_task(forever("engine_quotes", shard.listen_quotes), name="engine-quotes"),
        asyncio.create_task(_read_commands(shard, client, key, settings.engine_read_gather_seconds), name="engine-commands"),
    ]
    if shard.keeps_gauges:
        tasks.append(asyncio.create_task(shard.keep_gauges(), name="engine-gauges"))
    log.info("paper matching engine started", shard=shard_number, shards=settings.engine_shards, stream=key)
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    shard.stop()
    waiter.cancel()
    await stop_tasks(tasks, "paper matching engine")
    await client.aclose()
    for task in done:
        if task is not waiter and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    log.info("paper matching engine stopped", shard=shard_number)
