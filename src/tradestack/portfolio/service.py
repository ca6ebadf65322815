"""Opening paper accounts with a deposit; reading their books: positions, portfolio, fills and journal.

Reads see the caller's own accounts; with `accounts:read:all` (risk, admin) any account. Another
user's account answers 404 like an unknown one, so ids cannot be probed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal, Inexact, localcontext

import orjson

from tradestack.core.errors import NotFoundError, ValidationFailedError
from tradestack.core.money import D
from tradestack.domain.ledger import Account, AccountKind, deposit
from tradestack.domain.portfolio import (
    FxRates,
    MissingFxRate,
    PortfolioValuation,
    PositionState,
    PositionValuation,
    divide,
    market_value,
    unrealized_pnl,
)
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Caller, IdentityService, Principal, identity_session
from tradestack.kit.currencies import minor_units
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import QUOTE_KEY, MarketDataService
from tradestack.models.identity import TradingAccount
from tradestack.models.trading import BalanceRow
from tradestack.portfolio.repository import BooksRepository, Cursor, JournalRepository
from tradestack.portfolio.schemas import (
    AccountCreate,
    AccountWithCash,
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

MAX_PAGE = 1000
DEFAULT_PAGE = 100
FX_PIVOT = "USD"
_ZERO = Decimal(0)
# Sums of column values and of products of them are exact here; an inexact one raises.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact])


def parse_cursor(text: str | None) -> Cursor | None:
    """`before` of a page: the `next` of the previous page (``<ts>~<id>``), or an ISO 8601 time (naive is UTC)."""
    if text is None:
        return None
    stamp, separator, row_id = text.partition("~")
    try:
        ts = datetime.fromisoformat(stamp)
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except (ValueError, OverflowError):
        ts = None
    if ts is None or (separator and not (row_id and row_id.isprintable())):
        raise ValidationFailedError(
            f"before: give the `next` of the previous page or an ISO 8601 time such as 2026-11-20T15:00:00Z, got {text!r}"
        )
    return Cursor(ts, row_id if separator else None)


def format_cursor(ts: datetime, row_id: str) -> str:
    """The cursor that continues a page after the row (`ts`, `row_id`)."""
    return f"{ts.astimezone(UTC).isoformat().replace('+00:00', 'Z')}~{row_id}"


def _in_minor_units(value: Decimal | None, places: int | None) -> Decimal | None:
    """A base-currency total as a broker shows it: rounded half-even to the currency's minor unit."""
    if value is None or places is None:
        return value
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailedError(f"limit: must be between 1 and {MAX_PAGE}, got {limit}")


class PortfolioService:
    """Accounts' books."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def open_paper_account(self, principal: Principal, request: AccountCreate, caller: Caller) -> AccountWithCash:
        """Open a paper account and book its deposit, in one transaction: both happen or neither does."""
        async with identity_session(self.runtime, caller) as identity:
            account = await identity.open_account_for(
                principal, request.name, request.base_currency, allow_short=request.allow_short, fx_policy=request.fx_policy
            )
            entry = deposit(
                f"deposit-{uuid.uuid4()}",
                self.runtime.clock.now(),
                request.deposit.currency.upper(),
                request.deposit.amount,
                reference=f"account:{account.id}",
            )
            await JournalRepository(identity.session).add(account.id, entry)
            return AccountWithCash(
                id=account.id,
                name=account.name,
                base_currency=account.base_currency,
                kind=account.kind,
                allow_short=account.allow_short,
                fx_policy=account.fx_policy,
                created_at=account.created_at,
                cash={request.deposit.currency.upper(): request.deposit.amount},
            )

    async def accounts_of(self, principal: Principal) -> list[AccountWithCash]:
        """The caller's accounts with cash per currency."""
        async with self.runtime.database.read_session() as session:
            accounts = await IdentityService(session, self.runtime).accounts_of(principal.user_id)
            cash = await JournalRepository(session).cash_balances([a.id for a in accounts])
            return [
                AccountWithCash(
                    id=a.id,
                    name=a.name,
                    base_currency=a.base_currency,
                    kind=a.kind,
                    allow_short=a.allow_short,
                    fx_policy=a.fx_policy,
                    created_at=a.created_at,
                    cash=cash.get(a.id, {}),
                )
                for a in accounts
            ]

    # -- books -----------------------------------------------------------------------------------

    async def account_or_default(self, principal: Principal, account_id: str | None) -> str:
        """`account_id`, or when absent the caller's only account."""
        if account_id is not None:
            return account_id
        async with self.runtime.database.read_session() as session:
            return await IdentityService(session, self.runtime).default_account_id(principal.user_id)

    async def positions(self, principal: Principal, account_id: str) -> PositionList:
        """The account's open positions, marked to the live quotes."""
        books = await self._books(principal, account_id)
        return PositionList(
            account_id=books.account_id,
            base_currency=books.base_currency,
            positions=books.positions,
            problems=books.problems,
        )

    async def portfolio(self, principal: Principal, account_id: str) -> Portfolio:
        """Cash, positions, realized P&L, fees and equity of the account, valued now."""
        books = await self._books(principal, account_id)
        places = minor_units(books.base_currency)
        cash_base = _in_minor_units(books.valuation.cash_base if books.valuation else None, places)
        market_value_base = _in_minor_units(books.market_value_base, places)
        return Portfolio(
            account_id=books.account_id,
            base_currency=books.base_currency,
            as_of=books.as_of,
            cash=books.balances.get(AccountKind.CASH, {}),
            positions=books.positions,
            realized_pnl=books.realized_pnl,
            fees=books.balances.get(AccountKind.FEES, {}),
            fx_rates={f"{base}/{quote}": rate for (base, quote), rate in sorted(books.rates.quotes.items())},
            cash_base=cash_base,
            market_value_base=market_value_base,
            unrealized_pnl_base=_in_minor_units(books.valuation.unrealized_pnl_base if books.valuation else None, places),
            equity=None if cash_base is None or market_value_base is None else cash_base + market_value_base,
            problems=books.problems,
        )

    async def fills(
        self, principal: Principal, account_id: str, *, symbol: str | None, limit: int, before: str | None
    ) -> FillPage:
        """A page of the account's fills (of `symbol` only, when given), newest first."""
        _check_limit(limit)
        cursor = parse_cursor(before)
        if symbol is not None:
            symbol = (await MarketDataService(self.runtime).instrument(symbol)).symbol
        async with self.runtime.database.read_session() as session:  # rows expire when it ends: read them inside
            repository = BooksRepository(session)
            await self._readable(repository, principal, account_id)
            rows = await repository.fills_page(account_id, symbol=symbol, limit=limit + 1, before=cursor)
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

    async def ledger(self, principal: Principal, account_id: str, *, limit: int, before: str | None) -> LedgerPage:
        """A page of the account's journal entries with their postings, newest first."""
        _check_limit(limit)
        cursor = parse_cursor(before)
        async with self.runtime.database.read_session() as session:  # rows expire when it ends: read them inside
            repository = BooksRepository(session)
            await self._readable(repository, principal, account_id)
            rows = await repository.entries_page(account_id, limit=limit + 1, before=cursor)
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

    @staticmethod
    async def _readable(repository: BooksRepository, principal: Principal, account_id: str) -> TradingAccount:
        account = await repository.account(account_id)
        if account is None or (account.owner_id != principal.user_id and not principal.can(Permission.ACCOUNTS_READ_ALL)):
            raise NotFoundError(f"no account {account_id}: GET /api/accounts lists yours")
        return account

    async def _books(self, principal: Principal, account_id: str) -> _Books:
        async with self.runtime.database.read_session() as session:  # rows expire when it ends: read them inside
            repository = BooksRepository(session)
            account = await self._readable(repository, principal, account_id)
            base_currency = account.base_currency
            by_kind, positions = _split((await JournalRepository(session).balances(account_id)).values())
        pairs = {
            i.symbol: (i.base_currency, i.quote_currency)
            for i in (await MarketDataService(self.runtime).instruments()).values()
            if i.base_currency is not None
        }
        symbols = sorted(set(positions) | set(pairs))
        cached = await self.runtime.cache.get_many([QUOTE_KEY + s for s in symbols])
        quotes = {s: q for s, raw in zip(symbols, cached, strict=True) if (q := _parse_quote(raw)) is not None}
        rates = FxRates(
            {pair: rate for symbol, pair in pairs.items() if symbol in quotes and (rate := quotes[symbol].rate) is not None},
            pivot=FX_PIVOT,
        )
        return _value(account_id, base_currency, self.runtime.clock.now(), by_kind, positions, quotes, rates)


# -- valuation ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Quote:
    """The parts of a cached quote a valuation uses."""

    mark: tuple[Decimal, MarkSource] | None
    rate: Decimal | None
    ts: datetime | None


def _positive(data: Mapping[str, object], name: str) -> Decimal | None:
    value = data.get(name)
    if not isinstance(value, str):
        return None
    try:
        number = D(value)
    except ValueError:
        return None
    return number if number > 0 else None


def _parse_quote(raw: bytes | None) -> _Quote | None:
    """A cached quote's mark (last, else mid) and FX rate (mid, else last); None when absent or unreadable."""
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    bid, ask, last = _positive(data, "bid"), _positive(data, "ask"), _positive(data, "last")
    with localcontext(_EXACT):
        mid = divide(bid + ask, Decimal(2)) if bid is not None and ask is not None and bid <= ask else None
    mark: tuple[Decimal, MarkSource] | None = (last, "last") if last is not None else (mid, "mid") if mid is not None else None
    ts = None
    if isinstance(data.get("ts"), str):
        try:
            ts = datetime.fromisoformat(data["ts"]).astimezone(UTC)
        except ValueError:
            ts = None
    return _Quote(mark, mid if mid is not None else last, ts)


Balances = dict[AccountKind, dict[str, Decimal]]
OpenPositions = dict[str, tuple[PositionState, str]]


def _split(rows: Iterable[BalanceRow]) -> tuple[Balances, OpenPositions]:
    """Balances by kind and code (cash, fees ... per currency), and open positions with their quote currency."""
    by_kind: Balances = {}
    positions: OpenPositions = {}
    for row in rows:
        account = Account.parse(row.ledger_account)
        if account.kind is AccountKind.POSITION:
            if row.quantity:
                positions[account.code] = (PositionState(account.code, row.quantity, row.amount), row.currency)
            continue
        by_kind.setdefault(account.kind, {})[account.code] = row.amount
    return {kind: dict(sorted(codes.items())) for kind, codes in by_kind.items()}, dict(sorted(positions.items()))


@dataclass(frozen=True, slots=True)
class _Books:
    """An account's balances and their valuation; base-currency figures are None without FX rates."""

    account_id: str
    base_currency: str
    as_of: datetime
    balances: Balances
    positions: list[PositionOut]
    rates: FxRates
    valuation: PortfolioValuation | None
    market_value_base: Decimal | None
    equity: Decimal | None
    problems: list[str]

    @property
    def realized_pnl(self) -> dict[str, Decimal]:
        """Realized P&L per currency with gains positive (the ledger credits them)."""
        with localcontext(_EXACT):
            return {c: _ZERO - amount for c, amount in self.balances.get(AccountKind.REALIZED_PNL, {}).items()}


def _value(
    account_id: str,
    base: str,
    now: datetime,
    balances: Balances,
    positions: OpenPositions,
    quotes: Mapping[str, _Quote],
    rates: FxRates,
) -> _Books:
    """Value the books: quoted positions at their mark, the others at cost; totals only when every currency converts."""
    problems: list[str] = []
    marks: dict[str, tuple[Decimal, MarkSource]] = {}
    for symbol in positions:
        quote = quotes.get(symbol)
        if quote is not None and quote.mark is not None:
            marks[symbol] = quote.mark
        else:
            problems.append(f"no live quote for {symbol}: valued at its average cost")
    cash = {currency: amount for currency, amount in balances.get(AccountKind.CASH, {}).items() if amount != 0}
    convertible = True
    for currency in sorted((set(cash) | {c for _, c in positions.values()}) - {base}):
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
            positions={symbol: state for symbol, (state, _) in positions.items() if symbol in marks},
            quote_currencies={symbol: currency for symbol, (_, currency) in positions.items()},
            marks={symbol: price for symbol, (price, _) in marks.items()},
            rates=rates,
        )
    valued: dict[str, PositionValuation] = {p.symbol: p for p in valuation.positions} if valuation else {}
    out: list[PositionOut] = []
    at_cost_base = _ZERO
    with localcontext(_EXACT):
        for symbol, (state, currency) in positions.items():
            ts: datetime | None = None
            if symbol in marks:
                (mark, source), ts = marks[symbol], quotes[symbol].ts
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
            out.append(
                PositionOut(
                    symbol=symbol, quantity=state.quantity, average_cost=state.average_price, cost_basis=state.cost,
                    quote_currency=currency, mark_price=mark, mark_source=source, mark_ts=ts, market_value=value,
                    unrealized_pnl=pnl, market_value_base=value_base, unrealized_pnl_base=pnl_base,
                )
            )  # fmt: skip
        market_value_base = valuation.market_value_base + at_cost_base if valuation else None
        equity = valuation.equity + at_cost_base if valuation else None
    return _Books(account_id, base, now, balances, out, rates, valuation, market_value_base, equity, problems)
