"""`tradestack data retention`: fine bars pruned only where coarser ones keep the period, long-deactivated
users anonymised with an audit entry, the books and the audit chain untouched; on both stacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy import func, insert, select, text, update

from tradestack.audit.service import AuditService
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.models.audit import AuditEntry, AuditPersonal
from tradestack.models.base import Base
from tradestack.models.identity import RefreshToken, User
from tradestack.models.marketdata import BarRow
from tradestack.ops.integrity import check_integrity
from tradestack.ops.retention import UNUSABLE_PASSWORD, anonymous_email, apply_retention

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .test_integrity_orders import _orders

DAY = timedelta(days=1)


async def _audit_rows_naming(runtime: Runtime, *needles: str) -> int:
    """Rows of every audit table (chained entries, personal rows, the outbox) whose text holds one of `needles`."""
    tables = [table for name, table in Base.metadata.tables.items() if name.startswith("audit_")]
    assert {table.name for table in tables} >= {"audit_entries", "audit_personal", "audit_outbox"}
    found = 0
    async with runtime.database.session() as session:
        for table in tables:
            for row in await session.execute(select(table)):
                found += any(needle.lower() in str(value).lower() for value in row for needle in needles)
    return found


def _bar(symbol: str, resolution: str, ts: datetime) -> dict[str, object]:
    price = Decimal(100)
    return {"symbol": symbol, "resolution": resolution, "ts": ts, "open": price, "high": price, "low": price, "close": price,
            "volume": Decimal(1), "source": "retention-test"}  # fmt: skip


async def _bars(runtime: Runtime) -> dict[tuple[str, str], int]:
    async with runtime.database.session() as session:
        query = select(BarRow.symbol, BarRow.resolution, func.count()).where(BarRow.source == "retention-test")
        rows = await session.execute(query.group_by(BarRow.symbol, BarRow.resolution))
        return {(symbol, resolution): count for symbol, resolution, count in rows}


async def test_fine_bars_are_pruned_only_where_coarser_bars_keep_the_period(runtime: Runtime) -> None:
    now = runtime.clock.now()
    old = datetime(now.year - 3, 1, 1, tzinfo=UTC)  # older than the default 730 days for 1h bars
    rows = [_bar("AAPL", "1h", old + n * timedelta(hours=1)) for n in range(24 * 10)]  # ten days of hourly bars
    rows += [_bar("AAPL", "1d", old + n * DAY) for n in range(5)]  # daily bars for the first five of them
    rows += [_bar("AAPL", "1h", now.replace(minute=0, second=0, microsecond=0) - n * timedelta(hours=1)) for n in range(1, 4)]
    rows += [_bar("MSFT", "1h", old + n * timedelta(hours=1)) for n in range(24)]  # no coarser series: kept
    async with runtime.database.session() as session:
        await session.execute(insert(BarRow), rows)
    before = await _bars(runtime)
    assert before == {("AAPL", "1h"): 243, ("AAPL", "1d"): 5, ("MSFT", "1h"): 24}

    dry = await apply_retention(runtime, dry_run=True)
    assert [(p.symbol, p.resolution, p.covered_by, p.bars) for p in dry.pruned] == [("AAPL", "1h", "1d", 120)]
    assert await _bars(runtime) == before

    done = await apply_retention(runtime)
    assert done.bars == 120
    assert await _bars(runtime) == {("AAPL", "1h"): 123, ("AAPL", "1d"): 5, ("MSFT", "1h"): 24}
    async with runtime.database.session() as session:
        first_hourly = (
            await session.execute(select(func.min(BarRow.ts)).where(BarRow.symbol == "AAPL", BarRow.resolution == "1h"))
        ).scalar_one()
    assert first_hourly == old + 5 * DAY  # the first hourly bar the daily series does not cover
    assert (await apply_retention(runtime)).bars == 0


async def test_long_deactivated_users_are_anonymised_and_audited_while_books_and_chain_hold(
    runtime: Runtime, client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    gone = await make_user(Role.TRADER)
    await _orders(runtime, make_user, 6)  # orders and their events (of another trader) that must stay as they are
    recent = await make_user(Role.TRADER)
    active = await make_user(Role.TRADER)
    long_ago = runtime.clock.now() - 40 * DAY
    agent = f"gone-agent/{gone.id}"
    for password in (gone.password, "not the password"):  # a login and a failed one, from a recognisable client
        await client.post("/api/auth/login", json={"email": gone.email, "password": password}, headers={"User-Agent": agent})
    await client.post("/api/auth/login", json={"email": active.email, "password": active.password})
    async with runtime.database.session() as session:
        await session.execute(update(User).where(User.id == gone.id).values(is_active=False, updated_at=long_ago))
        await session.execute(update(User).where(User.id == recent.id).values(is_active=False))
    assert await AuditService(runtime.database, runtime.clock).settle(wait_seconds=10)
    chain_before = await AuditService(runtime.database, runtime.clock).verify()
    assert await _audit_rows_naming(runtime, gone.email, agent) > 0  # the user's personal data is there to erase
    assert chain_before.anonymised == 0

    assert (await apply_retention(runtime, dry_run=True)).anonymised == [gone.id]
    async with runtime.database.session() as session:
        assert (await session.get(User, gone.id)).email == gone.email  # type: ignore[union-attr]

    assert await _audit_rows_naming(runtime, gone.email, agent) > 0  # a dry run erases nothing
    done = await apply_retention(runtime)
    assert done.anonymised == [gone.id]
    assert done.audit_personal_erased >= 2  # their login and failed login at least
    erased = await AuditService(runtime.database, runtime.clock).verify()  # before the user.anonymised entry is chained
    assert (erased.ok, erased.checked, erased.head_hash) == (True, chain_before.checked, chain_before.head_hash)
    assert erased.anonymised == done.audit_personal_erased
    assert await AuditService(runtime.database, runtime.clock).settle(wait_seconds=10)
    assert await _audit_rows_naming(runtime, gone.email, agent) == 0  # in no audit table, chained or staged
    async with runtime.database.session() as session:  # nor the address and client of the entries they made
        by_gone = select(AuditEntry.id).where(AuditEntry.actor_user_id == gone.id)
        left = await session.scalar(select(func.count()).select_from(AuditPersonal).where(AuditPersonal.entry_id.in_(by_gone)))
        others = await session.scalar(
            select(func.count()).select_from(AuditPersonal).where(func.lower(AuditPersonal.actor_email) == active.email.lower())
        )
    assert (left, others) == (0, 2)  # another user's personal data (two logins) stays
    async with runtime.database.session() as session:
        users = {user.id: user for user in await session.scalars(select(User))}
        live_tokens = await session.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .where(RefreshToken.user_id == gone.id, RefreshToken.revoked_at.is_(None))
        )
        entries = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "user.anonymised"))).all()
    assert users[gone.id].email == anonymous_email(gone.id)
    assert users[gone.id].password_hash == UNUSABLE_PASSWORD
    assert users[gone.id].mfa_secret is None
    assert not users[gone.id].mfa_enabled
    assert live_tokens == 0
    assert (users[recent.id].email, users[active.id].email) == (recent.email, active.email)
    assert [(entry.target, entry.outcome) for entry in entries] == [(f"user:{gone.id}", "success")]
    for email in (gone.email, anonymous_email(gone.id)):
        login = await client.post("/api/auth/login", json={"email": email, "password": gone.password})
        assert login.status_code == 401, login.text

    chain = await AuditService(runtime.database, runtime.clock).verify()
    assert chain.ok
    assert chain.checked > chain_before.checked
    assert chain.anonymised == done.audit_personal_erased
    integrity = await check_integrity(runtime.database)
    assert integrity.ok, integrity.problems
    assert (await apply_retention(runtime)).anonymised == []  # done once
    assert integrity.checked["orders"] == 6
    async with runtime.database.engine.connect() as connection:
        accounts = await connection.execute(text("SELECT count(*) FROM trading_accounts WHERE owner_id = :id"), {"id": gone.id})
        assert accounts.scalar_one() == 1  # the user row and its accounts stay: only personal fields change
