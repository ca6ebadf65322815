"""PostgreSQL refuses to commit a journal entry that does not sum to zero per currency (deferred trigger, migration 0005)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tradestack.kit import migrations

NOW = datetime(2026, 11, 21, tzinfo=UTC)


async def _account(engine: AsyncEngine) -> str:
    user, account = str(uuid.uuid4()), str(uuid.uuid4())
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash, role, is_active, mfa_enabled, created_at, updated_at) "
                "VALUES (:id, :email, 'x', 'trader', true, false, :now, :now)"
            ),
            {"id": user, "email": f"{user}@example.com", "now": NOW},
        )
        await conn.execute(
            text(
                "INSERT INTO trading_accounts (id, owner_id, name, base_currency, kind, allow_short, created_at) "
                "VALUES (:id, :owner, 'paper', 'AUD', 'paper', false, :now)"
            ),
            {"id": account, "owner": user, "now": NOW},
        )
    return account


async def _entry(engine: AsyncEngine, account: str, postings: list[tuple[str, str, str]]) -> None:
    entry = str(uuid.uuid4())
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO journal_entries (id, account_id, ts, kind) VALUES (:id, :account, :ts, 'deposit')"),
            {"id": entry, "account": account, "ts": NOW},
        )
        for name, currency, amount in postings:
            # Each statement alone is unbalanced: only the commit is checked.
            await conn.execute(
                text("INSERT INTO postings (entry_id, account, currency, amount) VALUES (:e, :a, :c, CAST(:m AS NUMERIC))"),
                {"e": entry, "a": name, "c": currency, "m": amount},
            )


@pytest.fixture
async def engine(postgres_url: str) -> AsyncEngine:
    engine = create_async_engine(postgres_url)
    await migrations.upgrade(engine)
    return engine


async def test_balanced_entries_commit_and_unbalanced_ones_do_not(engine: AsyncEngine) -> None:
    try:
        account = await _account(engine)
        await _entry(engine, account, [("cash:USD", "USD", "1000.25"), ("deposits:USD", "USD", "-1000.25")])
        await _entry(
            engine,
            account,
            [("cash:USD", "USD", "-10"), ("fx:USD", "USD", "10"), ("cash:EUR", "EUR", "9.2"), ("fx:EUR", "EUR", "-9.2")],
        )
        with pytest.raises(DBAPIError, match=r"does not balance: EUR postings sum to 0\.01"):
            await _entry(
                engine,
                account,
                [("cash:USD", "USD", "-10"), ("fx:USD", "USD", "10"), ("cash:EUR", "EUR", "9.21"), ("fx:EUR", "EUR", "-9.2")],
            )
        with pytest.raises(DBAPIError, match="does not balance"):
            await _entry(engine, account, [("cash:USD", "USD", "5")])
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM journal_entries"))).scalar_one() == 2
            assert (await conn.execute(text("SELECT count(*) FROM postings"))).scalar_one() == 6
        # Deleting one leg of a committed entry is refused too.
        with pytest.raises(DBAPIError, match="does not balance"):
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM postings WHERE account = 'deposits:USD'"))
    finally:
        await engine.dispose()
