"""SQL of the books: trading accounts, fills, journal entries with their postings (written together, never
edited), running balances, and pages of them. Only `books.service` uses it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from tradestack.core.money import UNROUNDED
from tradestack.domain.books import BalanceLine
from tradestack.domain.ledger import JournalEntry
from tradestack.domain.orders import FillEvent
from tradestack.domain.portfolio import PositionState
from tradestack.kit.db import PerDialect, execute_core, in_list, on_postgresql, unnest_insert, unnested
from tradestack.kit.pages import Cursor, older_than
from tradestack.kit.repository import ReadRepository, Repository, insert_new
from tradestack.models.books import BalanceRow, EquityPointRow, FillRow, JournalEntryRow, PostingRow, TradingAccount

_KEPT_BALANCES = "books.balance_rows"  # session.info: (the transaction, the balance rows it moved)
# Column values have at most 38 digits: their sums are exact in `UNROUNDED`, and an inexact one raises.

# What an order desk reloads of its stale accounts' books: prebuilt (no statement built per call) and run on the
# session's connection (no ORM execution per call), see `balance_lines_of`.
_BALANCE_LINES_OF = PerDialect.listing(
    lambda listed: select(
        BalanceRow.account_id, BalanceRow.ledger_account, BalanceRow.currency, BalanceRow.amount, BalanceRow.quantity
    ).where(listed(BalanceRow.account_id, "accounts"))
)
_REALIZED_SINCE_OF = PerDialect.listing(
    lambda listed: (
        select(JournalEntryRow.account_id, PostingRow.currency, PostingRow.amount)
        .join(JournalEntryRow, JournalEntryRow.id == PostingRow.entry_id)
        .where(
            listed(JournalEntryRow.account_id, "accounts"),
            JournalEntryRow.ts >= bindparam("since"),
            PostingRow.account.like("realized_pnl:%"),
        )
    )
)

# What a group of booked fills writes (`JournalRepository.add_booked`), one statement a table: on PostgreSQL rows from
# one array per column (`unnest_insert`: one execution whatever the number of rows), elsewhere an executemany.
_FILLS = cast(Table, FillRow.__table__)
_ENTRIES = cast(Table, JournalEntryRow.__table__)
_POSTINGS = cast(Table, PostingRow.__table__)
_BALANCES = cast(Table, BalanceRow.__table__)
_POSTING_COLUMNS = ("entry_id", "account", "currency", "amount", "quantity")  # its id is the sequence's
_BALANCE_COLUMNS = tuple(column.name for column in _BALANCES.c)
_INSERT_FILLS = PerDialect(unnest_insert(_FILLS), insert(_FILLS))
_INSERT_ENTRIES = PerDialect(unnest_insert(_ENTRIES), insert(_ENTRIES))
_INSERT_POSTINGS = PerDialect(unnest_insert(_POSTINGS, _POSTING_COLUMNS), insert(_POSTINGS))


def _set_balances() -> PerDialect[Any]:
    """Balances set to the amounts (and quantities) given, the rows missing inserted: an upsert of absolute values
    (computed in Python: SQLite keeps exact decimals as text, its arithmetic would use floats)."""
    keys = [_BALANCES.c.account_id, _BALANCES.c.ledger_account]
    rows = unnested(*((f"balances_{name}", name, _BALANCES.c[name].type) for name in _BALANCE_COLUMNS))
    unnested_rows = postgresql.insert(_BALANCES).from_select(list(_BALANCE_COLUMNS), select(*rows.c))
    each_row = sqlite.insert(_BALANCES)
    return PerDialect(
        unnested_rows.on_conflict_do_update(
            index_elements=keys,
            set_={"amount": unnested_rows.excluded.amount, "quantity": unnested_rows.excluded.quantity},
        ),
        each_row.on_conflict_do_update(
            index_elements=keys, set_={"amount": each_row.excluded.amount, "quantity": each_row.excluded.quantity}
        ),
    )


_SET_BALANCES = _set_balances()


async def _insert_rows(session: AsyncSession, statement: PerDialect[Any], table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """`rows` (dicts by column name) into `table` by one of the prebuilt statements above."""
    if not rows:
        return
    if on_postgresql(session):
        columns = {f"{table.name}_{name}": [row[name] for row in rows] for name in rows[0]}
        await execute_core(session, statement.postgresql, columns)
    else:
        await execute_core(session, statement.other, list(rows))


class JournalRepository:
    """`journal_entries` and `postings`."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, account_id: str, entry: JournalEntry) -> None:
        """Store a (balanced, by construction) entry with all its postings, and move the balances they touch.

        All in the current transaction. Writers of one account's books hold its lock
        (`AccountRepository.lock`), so the read-modify-write of `balances` cannot race.
        """
        self._session.add(
            JournalEntryRow(
                id=entry.id,
                account_id=account_id,
                ts=entry.ts,
                kind=entry.kind.value,
                reference=entry.reference,
                reverses=entry.reverses,
            )
        )
        await self._session.flush()
        self._session.add_all(
            PostingRow(entry_id=entry.id, account=str(p.account), currency=p.currency, amount=p.amount, quantity=p.quantity)
            for p in entry.postings
        )
        with localcontext(UNROUNDED):
            await self._move_balances(account_id, entry)
        await self._session.flush()

    async def _move_balances(self, account_id: str, entry: JournalEntry) -> None:
        moves: dict[str, tuple[str, Decimal, Decimal | None]] = {}
        for posting in entry.postings:
            key = str(posting.account)
            _, amount, quantity = moves.get(key, (posting.currency, Decimal(0), None))
            if posting.quantity is not None:
                quantity = (quantity or Decimal(0)) + posting.quantity
            moves[key] = (posting.currency, amount + posting.amount, quantity)
        kept = self._kept_balances()
        for key, (currency, amount, quantity) in moves.items():
            row = await self._session.get(BalanceRow, (account_id, key))
            if row is None:
                row = BalanceRow(account_id=account_id, ledger_account=key, currency=currency, amount=Decimal(0))
                self._session.add(row)
            kept[account_id, key] = row
            row.amount = row.amount + amount
            if quantity is not None:
                row.quantity = (row.quantity or Decimal(0)) + quantity

    def _kept_balances(self) -> dict[tuple[str, str], BalanceRow]:
        """The balance rows this transaction moved, held so the session's (weak) identity map keeps them: the next entry
        of the transaction reads them there, not again from the database. Writers of an account's books hold its lock, so
        nobody else moves them before the transaction ends (the engine's fills are booked by `add_booked` instead)."""
        transaction = self._session.sync_session.get_transaction()
        kept: tuple[object, dict[tuple[str, str], BalanceRow]] | None = self._session.info.get(_KEPT_BALANCES)
        if kept is None or kept[0] is not transaction:
            kept = (transaction, {})
            self._session.info[_KEPT_BALANCES] = kept
        return kept[1]

    async def balance_lines(self) -> list[tuple[str, BalanceLine]]:
        """(account id, running balance) of every account."""
        rows = await self._session.execute(
            select(BalanceRow.account_id, BalanceRow.ledger_account, BalanceRow.currency, BalanceRow.amount, BalanceRow.quantity)
        )
        return [(owner, BalanceLine(name, currency, amount, quantity)) for owner, name, currency, amount, quantity in rows]

    async def balance_lines_of(self, account_ids: Sequence[str]) -> list[tuple[str, BalanceLine]]:
        """(account id, running balance) of several accounts, by a prebuilt statement (`execute_core`)."""
        rows = await execute_core(self._session, _BALANCE_LINES_OF.of(self._session), {"accounts": list(account_ids)})
        return [(owner, BalanceLine(name, currency, amount, quantity)) for owner, name, currency, amount, quantity in rows]

    async def realized_since(self, account_id: str, since: datetime) -> dict[str, Decimal]:
        """Realized P&L per currency booked since `since`, gains positive (the journal keeps them as credits)."""
        return (await self.realized_since_of([account_id], since)).get(account_id, {})

    async def realized_since_of(self, account_ids: Sequence[str], since: datetime) -> dict[str, dict[str, Decimal]]:
        """`realized_since` of several accounts, by account id (accounts with none absent), in one query."""
        rows = await execute_core(
            self._session, _REALIZED_SINCE_OF.of(self._session), {"accounts": list(account_ids), "since": since}
        )
        totals: dict[str, dict[str, Decimal]] = {}
        for account_id, currency, amount in rows:
            of_account = totals.setdefault(account_id, {})
            of_account[currency] = of_account.get(currency, Decimal(0)) - amount
        return totals

    async def add_booked(
        self,
        fills: Sequence[tuple[str, str, str, FillEvent]],
        entries: Sequence[tuple[str, JournalEntry]],
        balances: Sequence[tuple[str, BalanceLine]],
    ) -> None:
        """Store executions (account id, symbol, side, fill), (balanced, by construction) journal entries (account id,
        entry) with their postings, and set running balances (account id, line) to what those entries moved them to:
        one statement a table whatever their number.

        All in the current transaction, whose writer holds the accounts' locks (`AccountRepository.lock_all`) since it
        read the balances it moved. Balance rows `add` loaded earlier in the transaction are set to the values written
        here, so an `add` after this one moves them from there. A fill's id is the primary key of `fills`: the same fill
        cannot be stored twice."""
        fill_rows = [
            {
                "id": fill.fill_id, "order_id": fill.order_id, "account_id": account_id, "symbol": symbol, "side": side,
                "quantity": fill.quantity, "price": fill.price, "fee": fill.fee, "fee_currency": fill.fee_currency,
                "liquidity": fill.liquidity.value, "ts": fill.ts,
            }
            for account_id, symbol, side, fill in fills
        ]  # fmt: skip
        entry_rows = [
            {
                "id": entry.id, "account_id": account_id, "ts": entry.ts, "kind": entry.kind.value,
                "reference": entry.reference, "reverses": entry.reverses,
            }
            for account_id, entry in entries
        ]  # fmt: skip
        posting_rows = [
            {"entry_id": entry.id, "account": str(p.account), "currency": p.currency, "amount": p.amount, "quantity": p.quantity}
            for _, entry in entries
            for p in entry.postings
        ]
        balance_rows = [
            {
                "account_id": account_id, "ledger_account": line.ledger_account, "currency": line.currency,
                "amount": line.amount, "quantity": line.quantity,
            }
            for account_id, line in balances
        ]  # fmt: skip
        await _insert_rows(self._session, _INSERT_FILLS, _FILLS, fill_rows)
        await _insert_rows(self._session, _INSERT_ENTRIES, _ENTRIES, entry_rows)
        await _insert_rows(self._session, _INSERT_POSTINGS, _POSTINGS, posting_rows)
        await _insert_rows(self._session, _SET_BALANCES, _BALANCES, balance_rows)
        loaded = self._session.sync_session.identity_map
        for row in balance_rows:  # rows `add` read in this transaction (and keeps): now what was just written
            kept = loaded.get(identity_key(BalanceRow, (row["account_id"], row["ledger_account"])))
            if kept is not None:
                set_committed_value(kept, "amount", row["amount"])
                set_committed_value(kept, "quantity", row["quantity"])

    async def fills_existing(self, fill_ids: Sequence[str]) -> set[str]:
        """Which of the fills `fill_ids` are already booked."""
        if not fill_ids:
            return set()
        return set(await self._session.scalars(select(FillRow.id).where(FillRow.id.in_(fill_ids))))

    async def balances(self, account_id: str) -> dict[str, BalanceRow]:
        """Every ledger account's running balance of `account_id`, by ledger account name."""
        rows = await self._session.scalars(select(BalanceRow).where(BalanceRow.account_id == account_id))
        return {row.ledger_account: row for row in rows}

    async def position(self, account_id: str, symbol: str) -> PositionState:
        """The account's position in `symbol` at cost (flat when it has none)."""
        row = await self._session.get(BalanceRow, (account_id, f"position:{symbol}"))
        if row is None or not row.quantity:
            return PositionState(symbol)
        return PositionState(symbol, row.quantity, row.amount)

    async def cash_balances(self, account_ids: Sequence[str]) -> dict[str, dict[str, Decimal]]:
        """Cash per currency of each account (accounts without cash are absent)."""
        if not account_ids:
            return {}
        rows = await self._session.execute(
            select(JournalEntryRow.account_id, PostingRow.currency, PostingRow.amount)
            .join(PostingRow, PostingRow.entry_id == JournalEntryRow.id)
            .where(JournalEntryRow.account_id.in_(account_ids), PostingRow.account.like("cash:%"))
        )
        # Summed in Python: SQLite stores exact decimals as text, so SUM() there would use floats.
        balances: dict[str, dict[str, Decimal]] = {}
        for account_id, currency, amount in rows:
            per_currency = balances.setdefault(account_id, {})
            per_currency[currency] = per_currency.get(currency, Decimal(0)) + amount
        return balances

    async def count_unbalanced(self) -> int:
        """Entries whose postings do not sum to zero in some currency (should always be 0)."""
        rows = await self._session.execute(select(PostingRow.entry_id, PostingRow.currency, PostingRow.amount))
        sums: dict[tuple[str, str], Decimal] = {}
        for entry_id, currency, amount in rows:
            sums[(entry_id, currency)] = sums.get((entry_id, currency), Decimal(0)) + amount
        return len({entry for (entry, _), total in sums.items() if total != 0})

    async def entries(self) -> int:
        """Number of journal entries."""
        return int((await self._session.execute(select(func.count()).select_from(JournalEntryRow))).scalar_one())


_ACCOUNTS = cast(Table, TradingAccount.__table__)
# The order desks' lock (`lock_many`) bumps both versions, every other writer's (`lock`) the books version alone,
# so a desk that kept an account at (v, d) and now locks (w, e) knows from ``w - v == e - d`` that only order desks
# wrote its books since (they add orders, nothing else). A writer of a release before `desk_version` existed bumps
# the books version alone, desk or not: it counts as another writer and the account is reloaded whole.
_BUMP = {"books_version": _ACCOUNTS.c.books_version + 1, "desk_version": _ACCOUNTS.c.desk_version + 1}
_LOCKED = (
    select(_ACCOUNTS.c.id)
    .where(in_list(_ACCOUNTS.c.id, "ids", postgresql=True))
    .order_by(_ACCOUNTS.c.id)
    .with_for_update()
    .cte("locked")
)
# The ANY again outside the CTE: without it PostgreSQL's generic plan of the prepared statement (an array of unknown
# length) joined the CTE to a scan of every account instead of looking each one up by its key. On PostgreSQL the order
# desk's connection runs it with that generic plan, made once (`kit.db.postgres_session_settings`, ``probes``), and so
# does the desk's read after it unless the desk asks for planning at each run (`OrderDesk._refresh`).
_LOCK_MANY = PerDialect(
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == _LOCKED.c.id, in_list(_ACCOUNTS.c.id, "ids", postgresql=True))
    .values(_BUMP)
    .returning(*_ACCOUNTS.c),
    update(_ACCOUNTS).where(in_list(_ACCOUNTS.c.id, "ids", postgresql=False)).values(_BUMP).returning(*_ACCOUNTS.c),
)
# Every other writer's lock of several accounts at once (`lock_all`): the same, its books version alone bumped.
_BUMP_BOOKS = {"books_version": _ACCOUNTS.c.books_version + 1}
_LOCK_ALL = PerDialect(
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == _LOCKED.c.id, in_list(_ACCOUNTS.c.id, "ids", postgresql=True))
    .values(_BUMP_BOOKS)
    .returning(*_ACCOUNTS.c),
    update(_ACCOUNTS).where(in_list(_ACCOUNTS.c.id, "ids", postgresql=False)).values(_BUMP_BOOKS).returning(*_ACCOUNTS.c),
)


class AccountRepository(Repository):
    """`trading_accounts`."""

    async def add(self, account: TradingAccount) -> TradingAccount:
        self.session.add(account)
        await self.session.flush()
        return account

    async def get(self, account_id: str) -> TradingAccount | None:
        """The account, without a lock (None when unknown)."""
        return await self.session.get(TradingAccount, account_id)

    async def lock(self, account_id: str) -> TradingAccount | None:
        """The account, locked until the transaction ends, its `books_version` bumped (not its `desk_version`: see
        `lock_many`); None when unknown."""
        statement = (
            update(TradingAccount)
            .where(TradingAccount.id == account_id)
            .values(books_version=TradingAccount.books_version + 1)
            .returning(TradingAccount)
        )
        rows = await self.session.scalars(statement, execution_options={"synchronize_session": False, "populate_existing": True})
        return rows.one_or_none()

    async def lock_all(self, account_ids: Sequence[str]) -> dict[str, Row[Any]]:
        """`lock` of several accounts in one statement, as `lock_many` locks them (in id order on PostgreSQL), each
        one's `books_version` bumped (not its `desk_version`); their rows by id (unknown ones absent)."""
        if not account_ids:
            return {}
        rows = await execute_core(self.session, _LOCK_ALL.of(self.session), {"ids": sorted(set(account_ids))})
        return {row.id: row for row in rows}

    async def lock_many(self, account_ids: Sequence[str]) -> dict[str, Row[Any]]:
        """The accounts' rows by id (unknown ones absent; every column, `books_version` and `desk_version` bumped), locked
        until the transaction ends: the order desks' lock (they only add orders).

        One statement, built once (Core, no ORM: the order desk's every group runs it). On PostgreSQL
        the rows are locked in id order (``FOR UPDATE`` in a CTE), so two transactions locking
        overlapping sets wait for each other instead of deadlocking; the bump is what tells an order
        desk that someone else wrote the books since it last did. TradingAccount objects this session
        already holds are not refreshed: lock before reading.
        """
        if not account_ids:
            return {}
        rows = await execute_core(self.session, _LOCK_MANY.of(self.session), {"ids": sorted(set(account_ids))})
        return {row.id: row for row in rows}

    async def of_owner(self, owner_id: str) -> list[TradingAccount]:
        """The accounts `owner_id` owns, oldest first."""
        query = select(TradingAccount).where(TradingAccount.owner_id == owner_id).order_by(TradingAccount.created_at)
        return list((await self.session.execute(query)).scalars().all())

    async def base_currencies(self) -> dict[str, str]:
        """Every account's base currency, by account id."""
        rows = await self.session.execute(select(TradingAccount.id, TradingAccount.base_currency))
        return {account_id: currency for account_id, currency in rows}


class BooksRepository(ReadRepository):
    """Reads of an account's books: the account itself, its fills and its journal, newest first, by keyset."""

    async def account(self, account_id: str) -> TradingAccount | None:
        """The trading account `account_id` (None when there is none)."""
        return await self.session.get(TradingAccount, account_id)

    async def fills_page(self, account_id: str, *, symbol: str | None, limit: int, before: Cursor | None) -> list[FillRow]:
        """Up to `limit` fills of the account (of `symbol` only, when given), newest first, older than `before`."""
        query = select(FillRow).where(FillRow.account_id == account_id)
        if symbol is not None:
            query = query.where(FillRow.symbol == symbol)
        query = older_than(query, FillRow.ts, FillRow.id, before)
        return list(await self.session.scalars(query.order_by(FillRow.ts.desc(), FillRow.id.desc()).limit(limit)))

    async def entries_page(
        self, account_id: str, *, limit: int, before: Cursor | None
    ) -> list[tuple[JournalEntryRow, list[PostingRow]]]:
        """Up to `limit` journal entries of the account, newest first, older than `before`, each with its postings in order."""
        query = older_than(
            select(JournalEntryRow).where(JournalEntryRow.account_id == account_id),
            JournalEntryRow.ts,
            JournalEntryRow.id,
            before,
        )
        entries = list(
            await self.session.scalars(query.order_by(JournalEntryRow.ts.desc(), JournalEntryRow.id.desc()).limit(limit))
        )
        postings: dict[str, list[PostingRow]] = {entry.id: [] for entry in entries}
        if entries:
            rows = await self.session.scalars(
                select(PostingRow).where(PostingRow.entry_id.in_(list(postings))).order_by(PostingRow.id)
            )
            for posting in rows:
                postings[posting.entry_id].append(posting)
        return [(entry, postings[entry.id]) for entry in entries]


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """An account's equity (base currency) at `ts`."""

    ts: datetime
    equity: Decimal


class EquityRepository(Repository):
    """`equity_points`: written by the recorder, read a range at a time."""

    async def add(self, points: Sequence[tuple[str, str, EquityPoint]]) -> int:
        """Store (account id, currency, point) rows; a point an account already has for that instant is kept
        as it was (two recorders may value the same instant). Returns how many were new."""
        if not points:
            return 0
        rows = [{"account_id": a, "currency": c, "ts": p.ts, "equity": p.equity} for a, c, p in points]
        return await insert_new(self.session, EquityPointRow, rows, ("account_id", "ts"))


class EquityReadRepository(ReadRepository):
    """Reads of `equity_points`."""

    async def between(self, account_id: str, start: datetime, end: datetime) -> list[EquityPoint]:
        """The account's points with `start` <= ts <= `end`, oldest first."""
        rows = await self.session.execute(
            select(EquityPointRow.ts, EquityPointRow.equity)
            .where(EquityPointRow.account_id == account_id, EquityPointRow.ts >= start, EquityPointRow.ts <= end)
            .order_by(EquityPointRow.ts)
        )
        return [EquityPoint(ts, equity) for ts, equity in rows]

    async def first(self, account_id: str) -> datetime | None:
        """When the account's first point was recorded (None before any)."""
        first: datetime | None = await self.session.scalar(
            select(func.min(EquityPointRow.ts)).where(EquityPointRow.account_id == account_id)
        )
        return first
