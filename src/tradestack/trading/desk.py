"""The order desk: the single writer of new orders in each process, deciding them in memory and committing them in groups.

Both stacks decide new orders here (one desk per process: the embedded app, each API worker on
PostgreSQL). Without the desk each order took its account's lock for a whole transaction of a
dozen statements (the account, its balances, its open orders, limits, states, the order-rate
count, the insert, the audit outbox). The desk instead:

1. takes every submit that is waiting (up to `BATCH`) from its queue, and reads the quotes and FX
   rates the group is decided against (one cache read for the group, not one per request, beside
   the transaction's first round trips);
2. locks the group's accounts once, in one statement (`BooksService.lock_many`: id order, so two
   desks cannot deadlock; on SQLite also the process's writer lock), which bumps each account's
   books version and its desk version (`BooksVersions`). Every other writer of an account's books
   takes the same lock and bumps the books version alone (fills, cancels, replaces, conversions,
   limits, halts), so versions one above those the desk last wrote mean nobody else wrote since and
   what it keeps of the account is still true; both grown alike mean only other order desks did
   (another API worker), and it reads only the orders they added (each order is tagged with the desk
   version its desk wrote it at: those above the one it knows; the account's orders all again when
   those do not cover every version in between); otherwise it reloads the account, all the group's
   stale accounts together (four statements whatever their number);
3. decides each command in order (the account's owner, idempotency - one query for the group's
   client order ids, on PostgreSQL only once the unique (account, client order id) refused one in the
   group's write, see `_group` - the instrument's and the session's rules, then the risk checks) against
   what it keeps of each account: its profile, books (`AccountBooks`), open orders
   (`OpenOrders`), limits, trading state and the times of its orders in the last minute, updated
   as it accepts orders; the global trading state is read once per group;
4. writes the group in one transaction (orders, order events, audit outbox: on PostgreSQL one statement of
   column arrays for all three, elsewhere one executemany each) and commits (on PostgreSQL, when submits are queued
   for the next group, beginning its transaction in the same round trip); then does the group's after-commit
   work together (`after`: its WebSocket updates and its engine messages, which carry each new order as committed,
   `Decided.state`, so an engine in this process need not read it again: one Redis round trip for both where both go
   to Redis, the updates first) and only then answers each caller
   (acknowledged means durable). That last step runs beside the next group's transaction,
   groups still answered in order.

What it kept of the group's accounts is dropped after a failed group, whose commands are then
decided again one by one, each in its own transaction, so one bad command cannot fail the others;
except a lock timeout (PostgreSQL SQLSTATE 55P03: another transaction held an account's books
longer than ``lock_timeout``), which answers the whole group 503 with ``Retry-After`` at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.audit.service import AuditService
from tradestack.books.service import BooksService, BooksVersions, start_of_day
from tradestack.core.errors import ConflictError, NotFoundError, ServiceUnavailableError, ValidationFailedError
from tradestack.domain.books import AccountBooks, AccountProfile
from tradestack.domain.instruments import Instrument
from tradestack.domain.matching import FeeModel
from tradestack.domain.orders import Order, OrderAccepted, OrderDenied, OrderEvent, OrderRequest, OrderSubmitted
from tradestack.domain.portfolio import MissingFxRate
from tradestack.domain.risk import OrderIntent, RiskLimits, TradingState, evaluate
from tradestack.domain.riskstate import OpenOrder, OpenOrders, account_risk_state, converter
from tradestack.domain.snapshot import MarketSnapshot
from tradestack.identity.service import Caller, Principal
from tradestack.kit.aio import stop_tasks
from tradestack.kit.db import on_postgresql, plan_at_each_run
from tradestack.kit.logging import get_logger
from tradestack.kit.outages import RETRY_AFTER_SECONDS, causes, is_lock_timeout
from tradestack.kit.runtime import Runtime, Slot
from tradestack.trading.commands import tick
from tradestack.trading.prices import missing_fx
from tradestack.trading.repository import GLOBAL_SCOPE, OPEN_STATUSES, TradingRepository
from tradestack.trading.schemas import OrderOut

log = get_logger(__name__)
BATCH = 256  # ~30 parameters an order in the group's one INSERT statement: well under the 32,767 allowed
_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Submit:
    """One new order to decide: the request (validated against its instrument) and what deciding it needs."""

    principal: Principal
    caller: Caller
    request: OrderRequest
    fingerprint: str
    instrument: Instrument
    instruments: Mapping[str, Instrument]


@dataclass(frozen=True, slots=True)
class Decided:
    """What became of a submit: the order, the denying check (None when accepted) and whether it is new.

    A new order also carries its `state` as its group commits it and a `commands.tick` taken before the
    group's transaction began (`begun_at`): what the engine is handed (`commands.Change`).
    """

    order: OrderOut
    check: str | None
    created: bool
    state: Order | None = None
    begun_at: int = 0


@dataclass(slots=True)
class _Account:
    """What the desk keeps of one account between its decisions."""

    profile: AccountProfile
    version: BooksVersions
    books: AccountBooks
    day: date
    open: OpenOrders
    limits: RiskLimits
    state: TradingState
    instruments: Mapping[str, Instrument]
    recent: deque[datetime] = field(default_factory=deque)


@dataclass(slots=True)
class _Pending:
    command: Submit
    future: asyncio.Future[Decided]


def open_order_of_order(order: Order) -> OpenOrder:
    """What the risk state counts of an order just accepted."""
    request = order.request
    return OpenOrder(
        order_id=order.id,
        symbol=request.symbol,
        side=request.side,
        type=request.type,
        remaining=order.remaining_quantity,
        limit_price=request.limit_price,
        stop_price=request.stop_price,
    )


class OrderDesk:
    """Decides submits one at a time, commits them a group at a time (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        fee_model: Callable[[Instrument], FeeModel],
        limits_of: Callable[[AccountProfile, str | None], RiskLimits],
        open_order_of_row: Callable[[Any], OpenOrder],
        validate: Callable[[OrderRequest, Instrument, MarketSnapshot, datetime], None],
        market_of: Callable[[Sequence[str], Mapping[str, Instrument]], Awaitable[MarketSnapshot]],
        after: Callable[[Sequence[tuple[Submit, Decided]], MarketSnapshot], Awaitable[None]],
    ) -> None:
        self.runtime = runtime
        self._validate = validate
        self._market_of = market_of
        self._after = after
        self._answering: asyncio.Task[None] | None = None
        self._fee_model = fee_model
        self._limits_of = limits_of
        self._open_order_of_row = open_order_of_row
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._accounts: dict[str, _Account] = {}
        self._task: asyncio.Task[None] | None = None
        self._audit = AuditService(runtime.database, runtime.clock)

    async def submit(self, command: Submit) -> Decided:
        """Decide `command`; answers once its group is committed (or raises what refused it)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="order-desk")
        future: asyncio.Future[Decided] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(command, future))
        return await future

    async def close(self) -> None:
        await stop_tasks([self._task], "order desk")
        if self._answering is not None:  # committed groups are still answered
            await asyncio.wait({self._answering})

    # -- the loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            group = [await self._queue.get()]
            while len(group) < BATCH and not self._queue.empty():
                group.append(self._queue.get_nowait())
            try:
                await self._group(group)
            except asyncio.CancelledError:
                for pending in group:
                    if not pending.future.done():
                        pending.future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - decided again one by one: one bad command must not fail the others
                busy = _lock_timeout(exc)
                if busy is not None:
                    for pending in group:
                        if not pending.future.done():
                            pending.future.set_exception(busy)
                    continue
                log.warning("order group failed; deciding its orders one by one", orders=len(group), error=repr(exc))
                for pending in group:
                    if pending.future.done():
                        continue
                    try:
                        await self._group([pending])
                    except Exception as single:  # noqa: BLE001 - handed to its caller
                        if not pending.future.done():
                            pending.future.set_exception(_lock_timeout(single) or single)

    async def _group(self, group: list[_Pending]) -> None:
        """Decide and commit the group. On PostgreSQL the stored orders of its client order ids are not read first:
        the unique (account, client order id) refuses a reused one, and the group is then decided again with them
        read (`_refresh`'s ``read_keys``), answered as the stored order (or 409)."""
        try:
            await self._decide_group(group, read_keys=False)
        except Exception as exc:
            if not _reused_client_order_id(exc):
                raise
            log.debug("a client order id of the order group was used before; deciding it again with them read", orders=len(group))
            await self._decide_group(group, read_keys=True)

    async def _decide_group(self, group: list[_Pending], *, read_keys: bool) -> None:
        outcomes: list[tuple[_Pending, Decided | BaseException]] = []
        account_ids = sorted({pending.command.request.account_id for pending in group})
        # The quotes are read beside the transaction's first round trips (BEGIN, the lock, the reads): only deciding needs them.
        market_read = asyncio.ensure_future(self._market(group))
        begun_at = tick()
        async with self.runtime.database.writing():
            try:
                async with self.runtime.database.writer_session(next_waiting=self._next_waiting) as session:
                    repo = TradingRepository(session)
                    locked = await BooksService(session, self.runtime.clock).lock_many(account_ids)
                    global_state, stored = await self._refresh(session, locked, group, read_keys=read_keys)
                    market = await market_read
                    created: list[tuple[Order, list[OrderEvent], str]] = []
                    taken: dict[tuple[str, str], tuple[Decided, str]] = {
                        key: (Decided(OrderOut.of_row(row), None, False), row.fingerprint) for key, row in stored.items()
                    }
                    staged: list[dict[str, Any]] = []
                    for pending in group:
                        try:
                            decided = self._decide(pending.command, market, global_state, created, taken, staged, begun_at)
                            outcomes.append((pending, decided))
                        except (ValidationFailedError, ConflictError, NotFoundError) as refused:
                            outcomes.append((pending, refused))
                    # executemany: one data-modifying statement of multi-row VALUES (CTEs) saved two round trips
                    # but cost more CPU to build than they saved (fewer orders/s on both stacks, measured). On
                    # PostgreSQL the prebuilt statement of column arrays writes the audit entries too (one round trip).
                    desks = {account_id: version.desks for account_id, (_, version) in locked.items()}
                    if created and on_postgresql(session):
                        await repo.create_many(created, desks, self._audit.stage_alongside(staged))
                    else:
                        await repo.create_many(created, desks)
                        await self._audit.stage_many(session, staged)
            except BaseException:
                self._forget(account_ids)  # what it kept assumed this group would commit
                if not market_read.done():
                    market_read.cancel()
                elif not market_read.cancelled():
                    market_read.exception()  # retrieved: the group's failure is what is raised
                raise
        self._answering = asyncio.create_task(self._answer(self._answering, outcomes, market), name="order-desk-answers")

    async def _market(self, group: list[_Pending]) -> MarketSnapshot:
        """The quotes and FX rates the group is decided against: one cache read for the whole group, not one per order."""
        catalogue = group[-1].command.instruments
        if any(pending.command.instruments is not catalogue for pending in group):
            catalogue = {symbol: i for pending in group for symbol, i in pending.command.instruments.items()}
        return await self._market_of(sorted({pending.command.instrument.symbol for pending in group}), catalogue)

    async def _answer(
        self,
        previous: asyncio.Task[None] | None,
        outcomes: list[tuple[_Pending, Decided | BaseException]],
        market: MarketSnapshot,
    ) -> None:
        """After the previous group's answers: the committed group's after-commit work, then its answers."""
        if previous is not None:
            await asyncio.wait({previous})
        try:
            created = [(p.command, outcome) for p, outcome in outcomes if isinstance(outcome, Decided) and outcome.created]
            if created:
                await self._after(created, market)
        except Exception as exc:  # noqa: BLE001 - the group is committed: its orders are answered as such
            log.warning("after-commit work of an order group failed", orders=len(outcomes), error=repr(exc))
        finally:
            for pending, outcome in outcomes:
                if pending.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    pending.future.set_exception(outcome)
                else:
                    pending.future.set_result(outcome)

    def _next_waiting(self) -> bool:
        """Whether the next group's transaction begins as soon as this one commits: submits are queued for it."""
        return not self._queue.empty()

    def _forget(self, account_ids: Sequence[str]) -> None:
        for account_id in account_ids:
            self._accounts.pop(account_id, None)

    # -- what it keeps -------------------------------------------------------------------------------

    async def _refresh(
        self,
        session: AsyncSession,
        locked: dict[str, tuple[AccountProfile, BooksVersions]],
        group: list[_Pending],
        *,
        read_keys: bool,
    ) -> tuple[TradingState, dict[tuple[str, str], Any]]:
        """Reload the locked accounts someone else wrote since (all in one go), note the versions this group writes,
        and return the global trading state and the stored orders of the group's (account id, client order id) pairs.

        One statement reads the stored orders, the orders of the accounts other writers wrote and the trading
        states (`TradingRepository.desk_reads`); a stale account's balances, realized P&L and limits are two more."""
        now = self.runtime.clock.now()
        stale: list[AccountProfile] = []
        outdated: dict[str, _Account] = {}  # of today, stale: its open orders are synced rather than counted anew
        known: dict[str, int] = {}  # of today, only order desks wrote since: the desk version it knows, to read what they added
        for account_id, (profile, version) in locked.items():
            kept = self._accounts.get(account_id)
            if kept is not None and kept.day == now.date() and version.untouched_since(kept.version):
                kept.version = version
            elif kept is not None and kept.day == now.date() and version.only_desks_since(kept.version):
                known[account_id] = kept.version.desks
                kept.profile, kept.version = profile, version
            else:
                self._accounts.pop(account_id, None)
                stale.append(profile)
                if kept is not None and kept.day == now.date():
                    outdated[account_id] = kept
        repo = TradingRepository(session)
        ids = [profile.id for profile in stale]
        # On PostgreSQL the transaction runs plans kept for the connection from its lock on (`kit.db`'s probes): the
        # read of the other desks' orders and the states is safe so (`TradingRepository.desk_reads`); reading a stale
        # account's orders, or the stored orders of client order ids, is planned at each run.
        read_keys = read_keys or not on_postgresql(session)
        if ids or read_keys:
            await plan_at_each_run(session)
        keys = [(p.command.request.account_id, p.command.request.client_order_id) for p in group] if read_keys else []
        reads = await repo.desk_reads([key for key in keys if key[0] in locked], ids, now - _MINUTE, ids, known)
        global_state = reads.states.get(GLOBAL_SCOPE, TradingState.ACTIVE)
        missed = [account_id for account_id in known if not self._add_theirs(account_id, known[account_id], reads.added)]
        if missed:  # read the account's orders again: the same sums, priced anew only for the orders that changed
            if not ids:  # the reads ran (or ended) on kept plans (`TradingRepository.desk_reads`): this one is planned
                await plan_at_each_run(session)
            again = await repo.desk_reads([], missed, now - _MINUTE, [])
            for account_id in missed:
                kept = self._accounts[account_id]
                kept.open.sync(map(self._open_order_of_row, again.open_rows[account_id]))
                kept.recent = deque(again.times[account_id])
        open_rows, recent = reads.open_rows, reads.times
        if not stale:
            return global_state, reads.stored
        stored_limits = await repo.limits_of(ids)
        books = await BooksService(session, self.runtime.clock).snapshots(stale, today=start_of_day(now))
        instruments = {p.command.request.account_id: p.command.instruments for p in group}
        for profile in stale:
            limits = self._limits_of(profile, stored_limits.get(profile.id))
            catalogue = instruments[profile.id]
            open_orders = map(self._open_order_of_row, open_rows[profile.id])
            kept = outdated.get(profile.id)
            if kept is not None and kept.limits == limits and kept.instruments is catalogue:
                # Most often another desk added orders since (two API workers share the accounts): only those are priced.
                kept.open.sync(open_orders)
                counted = kept.open
            else:
                counted = OpenOrders(limits, catalogue, self._fee_model, open_orders)
            self._accounts[profile.id] = _Account(
                profile=profile,
                version=locked[profile.id][1],
                books=books[profile.id],
                day=now.date(),
                open=counted,
                limits=limits,
                state=reads.states.get(profile.id, TradingState.ACTIVE),
                instruments=catalogue,
                recent=deque(recent[profile.id]),
            )
        return global_state, reads.stored

    def _add_theirs(self, account_id: str, known: int, added: dict[str, list[Any]]) -> bool:
        """Count the orders other desks added to the account since desk version `known` (`added`: tagged above it);
        False, counting nothing, when they are not all there: some desk version in between (each a group of another
        desk) tagged no order - a group that added none, or a desk of a release that does not tag them.

        Only order desks wrote the account since (`BooksVersions.only_desks_since`) and they only add orders: what it
        keeps is still true but for those."""
        kept = self._accounts[account_id]
        rows = added[account_id]
        if len({row.desk_version for row in rows}) != kept.version.desks - known - 1:
            return False
        for row in rows:
            if row.status in OPEN_STATUSES:
                kept.open.put(self._open_order_of_row(row))
        if rows:
            kept.recent = deque(sorted([*kept.recent, *(row.created_at for row in rows)]))
        return True

    # -- one decision ------------------------------------------------------------------------------

    def _decide(
        self,
        command: Submit,
        market: MarketSnapshot,
        global_state: TradingState,
        created: list[tuple[Order, list[OrderEvent], str]],
        taken: dict[tuple[str, str], tuple[Decided, str]],
        staged: list[dict[str, Any]],
        begun_at: int,
    ) -> Decided:
        request, principal = command.request, command.principal
        now = self.runtime.clock.now()
        account = self._accounts.get(request.account_id)
        if account is None or account.profile.owner_id != principal.user_id:
            raise NotFoundError(f"no account {request.account_id}")
        key = (request.account_id, request.client_order_id)
        if key in taken:
            earlier, earlier_fingerprint = taken[key]
            if earlier_fingerprint != command.fingerprint:
                raise ConflictError(
                    f"client_order_id {request.client_order_id!r} was already used for order {earlier.order.id} with "
                    "different terms; use a new client_order_id for a new order",
                    order_id=earlier.order.id,
                )
            return Decided(earlier.order, None, False)
        self._validate(request, command.instrument, market, now)
        while account.recent and account.recent[0] < now - _MINUTE:
            account.recent.popleft()
        base, quote = account.profile.base_currency, command.instrument.quote_currency
        try:
            state = account_risk_state(
                account.books,
                account.open,
                market,
                side=request.side,
                currency=quote,
                orders_in_last_minute=len(account.recent),
                trading_state=account.state,
                fx_fee_bps=self.runtime.settings.paper_fx_fee_bps,
            )
            denial = evaluate(
                _intent(request),
                account.limits,
                state,
                global_state,
                market.mark(request.symbol),
                fee_model=self._fee_model(command.instrument),
                to_base=converter(market.rates, quote, base),
            )
        except MissingFxRate as exc:
            missing = missing_fx(command.instruments, market.rates, exc.base, exc.quote)
            raise ValidationFailedError(
                f"cannot value this order for account {request.account_id} in {base}: converting {exc.base} to "
                f"{exc.quote} needs {missing}"
            ) from None
        order_id = str(uuid.uuid4())
        events: list[OrderEvent] = [OrderSubmitted(order_id=order_id, ts=now, request=request)]
        events.append(
            OrderAccepted(order_id=order_id, ts=now)
            if denial is None
            else OrderDenied(order_id=order_id, ts=now, reason=str(denial))
        )
        order = Order.from_events(events)
        created.append((order, events, command.fingerprint))
        account.recent.append(now)
        if denial is None:
            account.open.put(open_order_of_order(order))
        detail: dict[str, Any] = {"request": request.to_dict()}
        if denial is not None:
            detail |= {"check": denial.check.value, "reason": denial.reason}
        staged.append(
            {
                "action": "order.submit",
                "outcome": "success" if denial is None else "denied",
                "actor_user_id": principal.user_id,
                "actor_api_key_id": principal.api_key_id,
                "actor_email": principal.email,
                "target": f"order:{order_id}",
                "ip": command.caller.ip,
                "user_agent": command.caller.user_agent,
                "detail": detail,
            }
        )
        decided = Decided(OrderOut.of_order(order), None if denial is None else denial.check.value, True, order, begun_at)
        taken[key] = (decided, command.fingerprint)
        return decided


_ORDERS_CLIENT_KEY = "uq_orders_account_id"  # the unique (account_id, client_order_id) of `orders`


def _reused_client_order_id(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is PostgreSQL refusing an order whose (account, client order id) is stored."""
    return any(
        getattr(current, "sqlstate", None) == "23505" and getattr(current, "constraint_name", None) == _ORDERS_CLIENT_KEY
        for current in causes(exc)
    )


def _lock_timeout(exc: BaseException) -> ServiceUnavailableError | None:
    """The 503 for a group that waited longer than ``lock_timeout`` for an account's books (SQLSTATE 55P03); else None."""
    if not is_lock_timeout(exc):
        return None
    return ServiceUnavailableError(
        f"the account's books are busy (another transaction held them longer than the database's lock_timeout): "
        f"retry in {RETRY_AFTER_SECONDS} s",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _intent(request: OrderRequest) -> OrderIntent:
    return OrderIntent(
        account_id=request.account_id,
        symbol=request.symbol,
        side=request.side,
        type=request.type,
        quantity=request.quantity,
        limit_price=request.limit_price,
        stop_price=request.stop_price,
    )


DESK: Slot[OrderDesk] = Slot("trading.desk")


def desk_of(runtime: Runtime, factory: Callable[[], OrderDesk]) -> OrderDesk:
    """This process's desk, created on first use and closed with the runtime."""
    existing = runtime.components.get(DESK)
    if existing is not None:
        return existing
    created = runtime.components.put(DESK, factory())
    runtime.closers.append(created.close)
    return created
