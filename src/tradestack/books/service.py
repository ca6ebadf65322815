"""Trading accounts and their books: the only reader and writer of accounts, fills, the journal and balances.

`BooksService` works inside its caller's unit of work (it is given the session; it flushes, never
commits): open an account, deposit, convert, book fills (`fill_booking`: one or many, decided in
memory and written one statement a table, `books.booking`), and `snapshot` an account's books as a
pure `AccountBooks` value for the risk checks. Writers of one account's books hold its lock
(`BooksService.lock`, `lock_all`), so balances are moved by one transaction at a time; every write (deposit,
convert, book fills) takes that lock itself when its unit of work does not hold it yet, so each
transaction that changes an account's books also bumps its books version once (what an order desk
keeping the account in memory relies on to notice).

`BooksApi` answers the HTTP routes: open a paper account with a deposit, list yours, read an
account's positions, portfolio, fills and journal. Reads see the caller's own accounts; with
`accounts:read:all` (risk, admin) any account. Another user's account answers 404 like an unknown
one, so ids cannot be probed.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import (
    ROUND_FLOOR,
    Decimal,
    localcontext,
)
from typing import Any, NamedTuple, overload

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.audit.service import AuditService, wake_chainer
from tradestack.books.booking import FillBooking as FillBooking  # what `fill_booking` answers
from tradestack.books.repository import (
    AccountRepository,
    BooksRepository,
    EquityPoint,
    EquityReadRepository,
    EquityRepository,
    JournalRepository,
)
from tradestack.books.schemas import (
    AccountCreate,
    AccountWithCash,
    EquityPointOut,
    EquitySeries,
    FillOut,
    FillPage,
    JournalEntryOut,
    LedgerPage,
    MarkSource,
    Portfolio,
    PositionList,
    PositionOut,
    PostingOut,
)
from tradestack.core.clock import Clock
from tradestack.core.errors import NotFoundError, ValidationFailedError
from tradestack.core.money import UNROUNDED, plain, to_places
from tradestack.domain.books import AccountBooks, AccountProfile, BalanceLine, FxPolicy, books_of
from tradestack.domain.ledger import AccountKind, JournalEntry, deposit, fx_conversion
from tradestack.domain.portfolio import (
    FxRates,
    MissingFxRate,
    PortfolioValuation,
    PositionValuation,
    market_value,
    unrealized_pnl,
)
from tradestack.domain.riskstate import buying_power
from tradestack.domain.snapshot import MarketSnapshot
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Caller, Principal
from tradestack.kit.currencies import minor_units
from tradestack.kit.pages import format_cursor, parse_cursor
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import MarketDataService
from tradestack.models.books import TradingAccount

MAX_PAGE = 1000
DEFAULT_PAGE = 100
_ZERO = Decimal(0)
# Sums of column values and of products of them are exact in `UNROUNDED`; an inexact one raises.
_LOCKED = "books.locked"  # session.info: (the transaction, the account ids it holds locked)


Reservations = Callable[[str], Awaitable[Mapping[str, Decimal]]]
"""What an account's open buys reserve, per quote currency (`TradingService.reservations`)."""


def _buying_power(valued: _Valued, reserved: Mapping[str, Decimal], fx_fee_bps: Decimal) -> dict[str, Decimal]:
    """What a purchase in the base and in each currency held may spend, in that currency, rounded down to its minor unit."""
    books, rates, base = valued.books, valued.rates, valued.base_currency
    out: dict[str, Decimal] = {}
    for currency in sorted({base, *books.cash}):
        try:
            available = buying_power(books, rates, currency, reserved, fx_fee_bps=fx_fee_bps).available
            amount = rates.convert(available, base, currency) if currency != base else available
        except MissingFxRate:
            continue
        places = minor_units(currency)
        out[currency] = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_FLOOR) if places is not None else amount
    return out


@overload
def _in_minor_units(value: Decimal, places: int | None) -> Decimal: ...
@overload
def _in_minor_units(value: Decimal | None, places: int | None) -> Decimal | None: ...
def _in_minor_units(value: Decimal | None, places: int | None) -> Decimal | None:
    """A money figure as a broker shows it: rounded half-even to the currency's minor unit (`places`)."""
    if value is None or places is None:
        return value
    return to_places(value, places)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailedError(f"limit: must be between 1 and {MAX_PAGE}, got {limit}")


def _profile(row: TradingAccount | Row[Any]) -> AccountProfile:
    return AccountProfile(
        id=row.id,
        owner_id=row.owner_id,
        name=row.name,
        base_currency=row.base_currency,
        kind=row.kind,
        allow_short=row.allow_short,
        fx_policy=FxPolicy(row.fx_policy),
        created_at=row.created_at,
    )


def start_of_day(now: datetime) -> datetime:
    """Midnight UTC of `now`'s day: where "today" starts for the daily loss limit."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class BooksVersions(NamedTuple):
    """An account's two write counters, as an order desk's lock (`BooksService.lock_many`) left them.

    ``books`` is bumped by every writer of the account's books, ``desks`` only by the order desks'
    lock, and order desks only add orders. So a desk that kept the account at ``kept`` and now
    holds these knows whether nobody else wrote since (`untouched_since`), or order desks alone did
    (`only_desks_since`): then the balances, limits and states it keeps are still true and only the
    account's orders are to be read again. A writer of a release before ``desks`` existed bumps
    ``books`` alone, desk or not, and so counts as another writer: the account is reloaded whole.
    """

    books: int
    desks: int

    def untouched_since(self, kept: BooksVersions) -> bool:
        """Whether this lock's own bump is the only write since ``kept``."""
        return self.books == kept.books + 1 and self.desks == kept.desks + 1

    def only_desks_since(self, kept: BooksVersions) -> bool:
        """Whether every write since ``kept`` (this lock's own bump included) was an order desk's."""
        return self.books - kept.books == self.desks - kept.desks > 0


class BooksService:
    """Accounts and their books, inside the caller's unit of work (flushes, never commits)."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock
        self._accounts = AccountRepository(session)
        self._journal = JournalRepository(session)

    # -- accounts --------------------------------------------------------------------------------

    async def open_account(
        self,
        owner_id: str,
        name: str,
        base_currency: str,
        *,
        kind: str = "paper",
        allow_short: bool = False,
        fx_policy: FxPolicy | str = FxPolicy.AUTO_CONVERT,
    ) -> AccountProfile:
        """A new account of `owner_id`, with empty books."""
        currency = base_currency.upper()
        if len(currency) != 3 or not currency.isalpha():
            raise ValidationFailedError(f"base currency must be a 3-letter ISO code such as AUD or USD, not {base_currency!r}")
        row = TradingAccount(
            id=str(uuid.uuid4()),
            owner_id=owner_id,
            name=name,
            base_currency=currency,
            kind=kind,
            allow_short=allow_short,
            fx_policy=FxPolicy(fx_policy).value,
            created_at=self.clock.now(),
        )
        added = _profile(await self._accounts.add(row))
        self._held().add(added.id)  # nobody else sees the row before this transaction commits
        return added

    async def account(self, account_id: str) -> AccountProfile | None:
        """The account (None when unknown)."""
        row = await self._accounts.get(account_id)
        return _profile(row) if row is not None else None

    async def lock(self, account_id: str) -> AccountProfile | None:
        """The account, its books locked against other writers until the transaction ends; None when unknown.

        Every writer of an account's books but the order desks takes this lock, which also bumps the
        account's books version (not its desk version: see `BooksVersions`)."""
        row = await self._accounts.lock(account_id)
        if row is None:
            return None
        self._held().add(row.id)
        return _profile(row)

    async def lock_all(self, account_ids: Sequence[str]) -> dict[str, AccountProfile]:
        """`lock` of several accounts in one statement (in id order, as the order desks lock them); by id, unknown ids
        absent."""
        rows = await self._accounts.lock_all(account_ids)
        self._held().update(rows)
        return {account_id: _profile(row) for account_id, row in rows.items()}

    async def lock_many(self, account_ids: Sequence[str]) -> dict[str, tuple[AccountProfile, BooksVersions]]:
        """The order desks' lock: lock the accounts' books (in id order, one statement) and bump both their versions;
        by id, each with its new versions (unknown ids absent), see `BooksVersions`."""
        rows = await self._accounts.lock_many(account_ids)
        self._held().update(rows)
        return {
            account_id: (_profile(row), BooksVersions(row.books_version, row.desk_version)) for account_id, row in rows.items()
        }

    async def accounts_of(self, owner_id: str) -> list[AccountProfile]:
        """The accounts `owner_id` owns, oldest first."""
        return [_profile(row) for row in await self._accounts.of_owner(owner_id)]

    async def default_account_id(self, owner_id: str) -> str:
        """The account a request without `account_id` means: the owner's only one (422 with none or several)."""
        accounts = await self.accounts_of(owner_id)
        if len(accounts) == 1:
            return accounts[0].id
        if not accounts:
            raise ValidationFailedError("you have no trading account yet: open one with POST /api/accounts")
        listed = ", ".join(f"{a.id} ({a.name}, {a.base_currency})" for a in accounts)
        raise ValidationFailedError(f"account_id: you have {len(accounts)} accounts, say which one: {listed}")

    async def readable(self, principal: Principal, account_id: str, *, missing: str | None = None) -> AccountProfile:
        """The account when `principal` owns it or may read every account; else the 404 of an unknown one."""
        account = await self.account(account_id)
        if account is None or (account.owner_id != principal.user_id and not principal.can(Permission.ACCOUNTS_READ_ALL)):
            raise NotFoundError(missing or f"no account {account_id}: GET /api/accounts lists yours")
        return account

    # -- writing the books -----------------------------------------------------------------------

    def _held(self) -> set[str]:
        """The accounts this unit of work's transaction holds locked (their books version bumped)."""
        transaction = self.session.sync_session.get_transaction()
        held: tuple[object, set[str]] | None = self.session.info.get(_LOCKED)
        if held is None or held[0] is not transaction:
            held = (transaction, set())
            self.session.info[_LOCKED] = held
        return held[1]

    async def _writing(self, account_id: str) -> None:
        """Before writing `account_id`'s books: lock it and bump its books version, unless this transaction already did."""
        if account_id not in self._held() and await self.lock(account_id) is None:
            raise NotFoundError(f"no account {account_id}")

    async def deposit(self, account_id: str, currency: str, amount: Decimal, *, entry_id: str | None = None) -> JournalEntry:
        """Book cash paid into the account."""
        await self._writing(account_id)
        entry = deposit(
            entry_id or f"deposit-{uuid.uuid4()}", self.clock.now(), currency.upper(), amount, reference=f"account:{account_id}"
        )
        await self._journal.add(account_id, entry)
        return entry

    async def convert(
        self, account_id: str, sold: tuple[str, Decimal], bought: tuple[str, Decimal], *, reference: str | None = None
    ) -> JournalEntry:
        """Book the exchange of `sold` cash (currency, amount) for `bought`; 422 when the account holds less than it sells."""
        (source, amount), (target, received) = sold, bought
        await self._writing(account_id)
        lines = await self._journal.balances(account_id)
        held = lines[f"cash:{source}"].amount if f"cash:{source}" in lines else Decimal(0)
        if held < amount:
            raise ValidationFailedError(f"amount: the account holds {plain(held)} {source} in cash; convert at most that")
        entry = fx_conversion(
            f"fx-{uuid.uuid4()}",
            self.clock.now(),
            source,
            amount,
            target,
            received,
            reference=reference or f"account:{account_id}",
        )
        await self._journal.add(account_id, entry)
        return entry

    async def booked_fills(self, fill_ids: Sequence[str]) -> set[str]:
        """Which of the fills `fill_ids` are already in the books."""
        return await self._journal.fills_existing(fill_ids)

    async def fill_booking(self, accounts: Sequence[AccountProfile]) -> FillBooking:
        """A booking of fills of `accounts` in this unit of work (see `FillBooking`): their running balances read once,
        each account locked first unless this transaction holds it already (`lock_all` locks many in one statement)."""
        for account in accounts:
            await self._writing(account.id)
        lines = await self._journal.balance_lines_of([account.id for account in accounts]) if accounts else []
        return FillBooking(self._journal, accounts, lines)

    # -- reading the books -----------------------------------------------------------------------

    async def snapshot(self, account: AccountProfile | str, *, today: datetime | None = None) -> AccountBooks:
        """The account's books now, as a pure value; with `today` (a day's start) also the P&L realized since."""
        profile = account if isinstance(account, AccountProfile) else await self.account(account)
        if profile is None:
            raise NotFoundError(f"no account {account}")
        return (await self.snapshots([profile], today=today))[profile.id]

    async def snapshots(self, accounts: Sequence[AccountProfile], *, today: datetime | None = None) -> dict[str, AccountBooks]:
        """`snapshot` of several accounts, by id, in two queries whatever their number."""
        if not accounts:
            return {}
        ids = [profile.id for profile in accounts]
        lines: dict[str, list[BalanceLine]] = {account_id: [] for account_id in ids}
        for account_id, line in await self._journal.balance_lines_of(ids):
            lines[account_id].append(line)
        realized = await self._journal.realized_since_of(ids, today) if today is not None else {}
        return {
            profile.id: books_of(
                profile.id,
                profile.base_currency,
                lines[profile.id],
                allow_short=profile.allow_short,
                fx_policy=profile.fx_policy,
                realized_today=realized.get(profile.id, {}),
            )
            for profile in accounts
        }

    async def all_books(self) -> list[AccountBooks]:
        """Every account's books (for the platform-wide gauges)."""
        bases = await self._accounts.base_currencies()
        by_account: dict[str, list[BalanceLine]] = {account_id: [] for account_id in bases}
        for account_id, line in await self._journal.balance_lines():
            by_account.setdefault(account_id, []).append(line)
        return [books_of(account_id, bases[account_id], lines) for account_id, lines in by_account.items() if account_id in bases]

    async def cash_of(self, account_ids: Sequence[str]) -> dict[str, dict[str, Decimal]]:
        """Cash per currency of each account (accounts without cash are absent)."""
        return await self._journal.cash_balances(account_ids)

    async def fills_page(
        self, principal: Principal, account_id: str, *, symbol: str | None, limit: int, before: str | None
    ) -> FillPage:
        """A page of the account's fills (of `symbol` only, when given), newest first."""
        _check_limit(limit)
        cursor = parse_cursor(before)
        await self.readable(principal, account_id)
        rows = await BooksRepository(self.session).fills_page(account_id, symbol=symbol, limit=limit + 1, before=cursor)
        page = rows[:limit]
        items = [
            FillOut(
                id=r.id, order_id=r.order_id, symbol=r.symbol, side=r.side, quantity=r.quantity, price=r.price,
                fee=r.fee, fee_currency=r.fee_currency, liquidity=r.liquidity, ts=r.ts,
            )
            for r in page
        ]  # fmt: skip
        next_page = format_cursor(page[-1].ts, page[-1].id) if len(rows) > limit else None
        return FillPage(items=items, next=next_page)

    async def ledger_page(self, principal: Principal, account_id: str, *, limit: int, before: str | None) -> LedgerPage:
        """A page of the account's journal entries with their postings, newest first."""
        _check_limit(limit)
        cursor = parse_cursor(before)
        await self.readable(principal, account_id)
        rows = await BooksRepository(self.session).entries_page(account_id, limit=limit + 1, before=cursor)
        page = rows[:limit]
        items = [
            JournalEntryOut(
                id=entry.id,
                ts=entry.ts,
                kind=entry.kind,
                reference=entry.reference,
                reverses=entry.reverses,
                postings=[
                    PostingOut(account=p.account, currency=p.currency, amount=p.amount, quantity=p.quantity) for p in postings
                ],
            )
            for entry, postings in page
        ]
        next_page = format_cursor(page[-1][0].ts, page[-1][0].id) if len(rows) > limit else None
        return LedgerPage(items=items, next=next_page)


def _with_cash(account: AccountProfile, cash: Mapping[str, Decimal]) -> AccountWithCash:
    return AccountWithCash(
        id=account.id,
        name=account.name,
        base_currency=account.base_currency,
        kind=account.kind,
        allow_short=account.allow_short,
        fx_policy=account.fx_policy.value,
        created_at=account.created_at,
        cash=dict(cash),
    )


class BooksApi:
    """What the accounts and books routes answer; each call is its own unit of work."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def open_paper_account(self, principal: Principal, request: AccountCreate, caller: Caller) -> AccountWithCash:
        """Open a paper account and book its deposit, in one transaction: both happen or neither does (audited)."""
        async with self.runtime.database.session() as session:
            books = BooksService(session, self.runtime.clock)
            account = await books.open_account(
                principal.user_id,
                request.name,
                request.base_currency,
                allow_short=request.allow_short,
                fx_policy=request.fx_policy,
            )
            await books.deposit(account.id, request.deposit.currency, request.deposit.amount)
            await AuditService(self.runtime.database, self.runtime.clock).stage(
                session,
                action="account.open",
                outcome="success",
                actor_user_id=principal.user_id,
                actor_api_key_id=principal.api_key_id,
                actor_email=principal.email,
                target=f"account:{account.id}",
                ip=caller.ip,
                user_agent=caller.user_agent,
                detail={
                    "base_currency": account.base_currency,
                    "allow_short": request.allow_short,
                    "fx_policy": request.fx_policy,
                },
            )
        wake_chainer(self.runtime)
        return _with_cash(account, {request.deposit.currency.upper(): request.deposit.amount})

    async def accounts_of(self, principal: Principal) -> list[AccountWithCash]:
        """The caller's accounts with cash per currency."""
        async with self.runtime.database.read_session() as session:
            books = BooksService(session, self.runtime.clock)
            accounts = await books.accounts_of(principal.user_id)
            cash = await books.cash_of([a.id for a in accounts])
        return [_with_cash(a, cash.get(a.id, {})) for a in accounts]

    async def account_or_default(self, principal: Principal, account_id: str | None) -> str:
        """`account_id`, or when absent the caller's only account."""
        if account_id is not None:
            return account_id
        async with self.runtime.database.read_session() as session:
            return await BooksService(session, self.runtime.clock).default_account_id(principal.user_id)

    async def positions(self, principal: Principal, account_id: str) -> PositionList:
        """The account's open positions, marked to the live quotes."""
        books = await self._valued(principal, account_id)
        return PositionList(
            account_id=books.account_id,
            base_currency=books.base_currency,
            positions=books.positions,
            problems=books.problems,
        )

    async def portfolio(self, principal: Principal, account_id: str, reservations: Reservations | None = None) -> Portfolio:
        """Cash, positions, realized P&L, fees, equity and buying power of the account, valued now.

        `reservations` says what the account's open buys hold per currency (the trading module knows);
        without it buying power counts none.
        """
        books = await self._valued(principal, account_id)
        reserved = await reservations(account_id) if reservations is not None else {}
        places = minor_units(books.base_currency)
        cash_base, market_value_base = _base_totals(books)
        return Portfolio(
            account_id=books.account_id,
            base_currency=books.base_currency,
            as_of=books.as_of,
            cash=dict(books.books.balances.get(AccountKind.CASH, {})),
            positions=books.positions,
            realized_pnl={c: _in_minor_units(amount, minor_units(c)) for c, amount in books.realized_pnl.items()},
            fees=dict(books.books.balances.get(AccountKind.FEES, {})),
            fx_rates={f"{base}/{quote}": rate for (base, quote), rate in sorted(books.rates.quotes.items())},
            cash_base=cash_base,
            market_value_base=market_value_base,
            unrealized_pnl_base=_in_minor_units(books.valuation.unrealized_pnl_base if books.valuation else None, places),
            equity=_shown_equity(books),
            fx_policy=books.books.fx_policy.value,
            buying_power=_buying_power(books, reserved, self.runtime.settings.paper_fx_fee_bps),
            problems=books.problems,
        )

    async def fills(
        self, principal: Principal, account_id: str, *, symbol: str | None, limit: int, before: str | None
    ) -> FillPage:
        """A page of the account's fills (of `symbol` only, when given), newest first."""
        _check_limit(limit)
        parse_cursor(before)
        if symbol is not None:
            symbol = (await MarketDataService(self.runtime).instrument(symbol)).symbol
        async with self.runtime.database.read_session() as session:
            return await BooksService(session, self.runtime.clock).fills_page(
                principal, account_id, symbol=symbol, limit=limit, before=before
            )

    async def ledger(self, principal: Principal, account_id: str, *, limit: int, before: str | None) -> LedgerPage:
        """A page of the account's journal entries with their postings, newest first."""
        async with self.runtime.database.read_session() as session:
            return await BooksService(session, self.runtime.clock).ledger_page(principal, account_id, limit=limit, before=before)

    async def equity(self, principal: Principal, account_id: str, start: datetime | None, end: datetime | None) -> EquitySeries:
        """The account's recorded equity between `start` (default: 30 days before `end`) and `end` (default: now),
        downsampled to at most `equity_chart_points`; 422 when the range is reversed."""
        settings = self.runtime.settings
        end = _utc(end) if end is not None else self.runtime.clock.now()
        start = _utc(start) if start is not None else end - DEFAULT_EQUITY_RANGE
        if start > end:
            raise ValidationFailedError(
                f"from: must not be after to (got from={start.isoformat()} and to={end.isoformat()}); swap them"
            )
        async with self.runtime.database.read_session() as session:
            account = await BooksService(session, self.runtime.clock).readable(principal, account_id)
            repository = EquityReadRepository(session)
            recorded = await repository.between(account.id, start, end)
            since = await repository.first(account.id)
        kept, downsampled = downsample(recorded, start, end, settings.equity_chart_points)
        return EquitySeries(
            account_id=account.id,
            base_currency=account.base_currency,
            start=start,
            end=end,
            recorded_since=since,
            interval_seconds=settings.equity_record_seconds,
            max_points=settings.equity_chart_points,
            downsampled=downsampled,
            points=[EquityPointOut(ts=p.ts, equity=p.equity) for p in kept],
        )

    async def _valued(self, principal: Principal, account_id: str) -> _Valued:
        async with self.runtime.database.read_session() as session:
            service = BooksService(session, self.runtime.clock)
            account = await service.readable(principal, account_id)
            books = await service.snapshot(account)
        market = await MarketDataService(self.runtime).snapshot(books.holdings)
        return _value(books, self.runtime.clock.now(), market)


# -- equity over time -----------------------------------------------------------------------------

DEFAULT_EQUITY_RANGE = timedelta(days=30)


def _utc(stamp: datetime) -> datetime:
    """`stamp` in UTC; a naive one is taken as UTC."""
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def downsample(points: Sequence[EquityPoint], start: datetime, end: datetime, most: int) -> tuple[list[EquityPoint], bool]:
    """At most `most` of `points` (oldest first, within [`start`, `end`]): the range cut into `most` equal spans,
    each keeping its last point, so the newest point always stays. The flag says whether any was dropped."""
    if len(points) <= most:
        return list(points), False
    span = (end - start) / most
    kept: dict[int, EquityPoint] = {}
    for point in points:
        kept[min(int((point.ts - start) / span), most - 1)] = point
    return list(kept.values()), True


async def record_equity(runtime: Runtime) -> int:
    """Value every account now, exactly as GET /api/portfolio does, and store its equity; returns the points stored.

    An account whose valuation is approximate (a position without a live quote is valued at cost) or
    impossible (no FX rate into its base currency) gets no point this time: the chart shows only
    figures marked to market.
    """
    now = runtime.clock.now()
    async with runtime.database.read_session() as session:
        every = await BooksService(session, runtime.clock).all_books()
    market = await MarketDataService(runtime).snapshot(sorted({symbol for books in every for symbol in books.holdings}))
    points: list[tuple[str, str, EquityPoint]] = []
    for books in every:
        valued = _value(books, now, market)
        equity = _shown_equity(valued)
        if equity is not None and not valued.problems:
            points.append((books.account_id, books.base_currency, EquityPoint(now, equity)))
    async with runtime.database.session() as session:
        return await EquityRepository(session).add(points)


# -- valuation ------------------------------------------------------------------------------------


def _base_totals(valued: _Valued) -> tuple[Decimal | None, Decimal | None]:
    """Cash and the positions' market value in the base currency, each rounded to its minor unit (None without FX)."""
    places = minor_units(valued.base_currency)
    cash_base = _in_minor_units(valued.valuation.cash_base if valued.valuation else None, places)
    return cash_base, _in_minor_units(valued.market_value_base, places)


def _shown_equity(valued: _Valued) -> Decimal | None:
    """Equity as the portfolio shows it, and as it is recorded: the two rounded base totals added (None without FX)."""
    cash_base, market_value_base = _base_totals(valued)
    return None if cash_base is None or market_value_base is None else cash_base + market_value_base


@dataclass(frozen=True, slots=True)
class _Valued:
    """An account's books and their valuation; base-currency figures are None without FX rates."""

    books: AccountBooks
    as_of: datetime
    positions: list[PositionOut]
    rates: FxRates
    valuation: PortfolioValuation | None
    market_value_base: Decimal | None
    equity: Decimal | None
    problems: list[str]

    @property
    def account_id(self) -> str:
        return self.books.account_id

    @property
    def base_currency(self) -> str:
        return self.books.base_currency

    @property
    def realized_pnl(self) -> dict[str, Decimal]:
        """Realized P&L per currency with gains positive (the ledger credits them)."""
        with localcontext(UNROUNDED):
            return {c: _ZERO - amount for c, amount in self.books.balances.get(AccountKind.REALIZED_PNL, {}).items()}


def _value(books: AccountBooks, now: datetime, market: MarketSnapshot) -> _Valued:
    """Value the books: quoted positions at their mark, the others at cost; totals only when every currency converts."""
    base, rates = books.base_currency, market.rates
    problems: list[str] = []
    marks: dict[str, tuple[Decimal, MarkSource]] = {}
    for symbol in books.holdings:
        marked = market.marked(symbol)
        if marked is not None:
            marks[symbol] = marked
        else:
            problems.append(f"no live quote for {symbol}: valued at its average cost")
    cash = {currency: amount for currency, amount in books.cash.items() if amount != 0}
    convertible = True
    for currency in sorted((set(cash) | {h.currency for h in books.holdings.values()}) - {base}):
        try:
            rates.rate(currency, base)
        except MissingFxRate as exc:
            convertible = False
            problems.append(f"{exc.detail}; the {base} totals and equity are null until one is quoted")
    valuation = None
    if convertible:
        valuation = PortfolioValuation.compute(
            base_currency=base,
            cash=cash,
            positions={symbol: h.position for symbol, h in books.holdings.items() if symbol in marks},
            quote_currencies={symbol: h.currency for symbol, h in books.holdings.items()},
            marks={symbol: price for symbol, (price, _) in marks.items()},
            rates=rates,
        )
    valued: dict[str, PositionValuation] = {p.symbol: p for p in valuation.positions} if valuation else {}
    out: list[PositionOut] = []
    at_cost_base = _ZERO
    with localcontext(UNROUNDED):
        for symbol, holding in books.holdings.items():
            state, currency = holding.position, holding.currency
            ts: datetime | None = None
            source: MarkSource
            if symbol in marks:
                (mark, source), ts = marks[symbol], market.quotes[symbol].ts
                value, pnl = market_value(state, mark), unrealized_pnl(state, mark)
            else:
                mark, source, value, pnl = state.average_price, "cost", state.cost, _ZERO
            value_base: Decimal | None = None
            pnl_base: Decimal | None = None
            if symbol in valued:
                value_base, pnl_base = valued[symbol].market_value_base, valued[symbol].unrealized_pnl_base
            elif valuation is not None:
                value_base, pnl_base = rates.convert(value, currency, base), _ZERO
                at_cost_base += value_base
            quote_places, base_places = minor_units(currency), minor_units(base)
            out.append(
                PositionOut(
                    symbol=symbol, quantity=state.quantity, average_cost=state.average_price,
                    cost_basis=_in_minor_units(state.cost, quote_places), quote_currency=currency, mark_price=mark,
                    mark_source=source, mark_ts=ts, market_value=_in_minor_units(value, quote_places),
                    unrealized_pnl=_in_minor_units(pnl, quote_places),
                    market_value_base=_in_minor_units(value_base, base_places),
                    unrealized_pnl_base=_in_minor_units(pnl_base, base_places),
                )
            )  # fmt: skip
        market_value_base = valuation.market_value_base + at_cost_base if valuation else None
        equity = valuation.equity + at_cost_base if valuation else None
    return _Valued(books, now, out, rates, valuation, market_value_base, equity, problems)
