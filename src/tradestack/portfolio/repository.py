"""The journal in the database: entries and their postings, written together and never edited."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.domain.ledger import JournalEntry
from tradestack.models.trading import JournalEntryRow, PostingRow


class JournalRepository:
    """`journal_entries` and `postings`."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, account_id: str, entry: JournalEntry) -> None:
        """Store a (balanced, by construction) entry with all its postings in the current transaction."""
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
        await self._session.flush()

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
