"""The order desk of the embedded mode: the single writer that decides new orders, in memory, and commits them in groups.

On SQLite this process is the only writer, and every writer of trading books holds one lock
(`trading.repository.sqlite_writer_lock`). Without the desk each order took that lock for a whole
transaction of a dozen statements (the account, its balances, its open orders, limits, states,
the order-rate count, the inserts, the audit outbox). The desk instead:

1. takes every submit that is waiting (up to `BATCH`) from its queue, and the lock once for all;
2. decides each one in order (the account's owner, idempotency, the instrument's and the session's
   rules, then the risk checks), against what it keeps of each account in memory - its profile, its
   books (`AccountBooks`), its open orders (`OpenOrders`), limits, trading state and the times of
   its orders in the last minute - loaded from the database the first time and updated as it
   accepts orders; idempotency on (account, client_order_id) is checked in the database and among
   the group;
3. writes the group in one transaction with multi-row statements (orders, order events, audit
   outbox) and commits; only then is each caller answered (acknowledged means durable).

What it keeps is dropped whenever any other writer of the books has ended a transaction since it
read it (a fill, a cancel, a replace, a conversion, new limits, a halt: `books_writes` changes), so a
decision never uses stale books; the same happens after a failed group, whose commands are then
decided again one by one, each in its own transaction, so one bad command cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.audit.service import AuditService
from tradestack.books.service import BooksService, start_of_day
from tradestack.core.errors import ConflictError, NotFoundError, ValidationFailedError
from tradestack.domain.books import AccountBooks, AccountProfile
from tradestack.domain.instruments import Instrument
from tradestack.domain.matching import FeeModel
from tradestack.domain.orders import Order, OrderAccepted, OrderDenied, OrderEvent, OrderRequest, OrderSubmitted
from tradestack.domain.portfolio import MissingFxRate
from tradestack.domain.risk import OrderIntent, RiskLimits, TradingState, evaluate
from tradestack.domain.riskstate import OpenOrder, OpenOrders, account_risk_state, converter
from tradestack.domain.snapshot import MarketSnapshot
from tradestack.identity.service import Caller, Principal
from tradestack.kit.logging import get_logger
from tradestack.kit.runtime import Runtime, Slot
from tradestack.marketdata.service import MarketDataService
from tradestack.trading.prices import missing_fx
from tradestack.trading.repository import GLOBAL_SCOPE, TradingRepository, books_writes, sqlite_writer_lock
from tradestack.trading.schemas import OrderOut

log = get_logger(__name__)
BATCH = 256
_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Submit:
    """One new order to decide: the request (validated against its instrument) and what deciding it needs."""

    principal: Principal
    caller: Caller
    request: OrderRequest
    fingerprint: str
    instrument: Instrument
    instruments: dict[str, Instrument]
    market: MarketSnapshot


@dataclass(frozen=True, slots=True)
class Decided:
    """What became of a submit: the order, the denying check (None when accepted) and whether it is new."""

    order: OrderOut
    check: str | None
    created: bool


@dataclass(slots=True)
class _Account:
    """What the desk keeps of one account between its decisions."""

    profile: AccountProfile
    books: AccountBooks
    day: date
    open: OpenOrders
    limits: RiskLimits
    state: TradingState
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
    ) -> None:
        self.runtime = runtime
        self._validate = validate
        self._fee_model = fee_model
        self._limits_of = limits_of
        self._open_order_of_row = open_order_of_row
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._accounts: dict[str, _Account] = {}
        self._global: TradingState | None = None
        self._read_at = -1
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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

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
                log.warning("order group failed; deciding its orders one by one", orders=len(group), error=repr(exc))
                for pending in group:
                    if pending.future.done():
                        continue
                    try:
                        await self._group([pending])
                    except Exception as single:  # noqa: BLE001 - handed to its caller
                        if not pending.future.done():
                            pending.future.set_exception(single)

    async def _group(self, group: list[_Pending]) -> None:
        outcomes: list[tuple[_Pending, Decided | BaseException]] = []
        async with sqlite_writer_lock():
            if books_writes() != self._read_at:
                self._forget()
            try:
                async with self.runtime.database.session() as session:
                    created: list[tuple[Order, list[OrderEvent], str]] = []
                    taken: dict[tuple[str, str], Decided] = {}
                    for pending in group:
                        try:
                            outcomes.append((pending, await self._decide(session, pending.command, created, taken)))
                        except (ValidationFailedError, ConflictError, NotFoundError) as refused:
                            outcomes.append((pending, refused))
                    await TradingRepository(session).create_many([(o, e, f) for o, e, f in created])
            except BaseException:
                self._forget()  # what it kept assumed this group would commit
                raise
        for pending, outcome in outcomes:
            if pending.future.done():
                continue
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)

    def _forget(self) -> None:
        self._accounts.clear()
        self._global = None
        self._read_at = books_writes()

    # -- one decision ------------------------------------------------------------------------------

    async def _decide(
        self,
        session: AsyncSession,
        command: Submit,
        created: list[tuple[Order, list[OrderEvent], str]],
        taken: dict[tuple[str, str], Decided],
    ) -> Decided:
        request, principal = command.request, command.principal
        now = self.runtime.clock.now()
        account = await self._account(session, request.account_id, now)
        if account is None or account.profile.owner_id != principal.user_id:
            raise NotFoundError(f"no account {request.account_id}")
        key = (request.account_id, request.client_order_id)
        earlier = taken.get(key)
        if earlier is None:
            existing = await TradingRepository(session).by_client_order_id(*key)
            if existing is not None:
                earlier = Decided(OrderOut.of_row(existing), None, False)
                earlier_fingerprint = existing.fingerprint
            else:
                earlier_fingerprint = None
        else:
            earlier_fingerprint = next(f for o, _, f in created if o.id == earlier.order.id)
        if earlier is not None:
            if earlier_fingerprint != command.fingerprint:
                raise ConflictError(
                    f"client_order_id {request.client_order_id!r} was already used for order {earlier.order.id} with "
                    "different terms; use a new client_order_id for a new order",
                    order_id=earlier.order.id,
                )
            return Decided(earlier.order, None, False)
        self._validate(request, command.instrument, command.market, now)
        while account.recent and account.recent[0] < now - _MINUTE:
            account.recent.popleft()
        base, quote = account.profile.base_currency, command.instrument.quote_currency
        market = command.market
        global_state = await self._global_state(session)
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
        await self._audit.stage(
            session,
            action="order.submit",
            outcome="success" if denial is None else "denied",
            actor_user_id=principal.user_id,
            actor_api_key_id=principal.api_key_id,
            actor_email=principal.email,
            target=f"order:{order_id}",
            ip=command.caller.ip,
            user_agent=command.caller.user_agent,
            detail=detail,
        )
        decided = Decided(OrderOut.of_order(order), None if denial is None else denial.check.value, True)
        taken[(request.account_id, request.client_order_id)] = decided
        return decided

    async def _account(self, session: AsyncSession, account_id: str, now: datetime) -> _Account | None:
        kept = self._accounts.get(account_id)
        if kept is not None and kept.day == now.date():
            return kept
        books = BooksService(session, self.runtime.clock)
        profile = await books.account(account_id)
        if profile is None:
            return None
        repo = TradingRepository(session)
        limits_row = await repo.limits(account_id)
        limits = self._limits_of(profile, limits_row.limits if limits_row else None)
        instruments = await MarketDataService(self.runtime).instruments()
        rows = await repo.open_orders([account_id])
        states = await repo.states(account_id)
        kept = _Account(
            profile=profile,
            books=await books.snapshot(profile, today=start_of_day(now)),
            day=now.date(),
            open=OpenOrders(limits, instruments, self._fee_model, (self._open_order_of_row(row) for row in rows)),
            limits=limits,
            state=TradingState(states[account_id].state) if account_id in states else TradingState.ACTIVE,
            recent=deque(await repo.order_times_since(account_id, now - _MINUTE)),
        )
        self._accounts[account_id] = kept
        return kept

    async def _global_state(self, session: AsyncSession) -> TradingState:
        if self._global is None:
            states = await TradingRepository(session).states(None)
            self._global = TradingState(states[GLOBAL_SCOPE].state) if GLOBAL_SCOPE in states else TradingState.ACTIVE
        return self._global


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
