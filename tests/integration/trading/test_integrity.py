"""`check integrity` passes on consistent books and names each kind of corruption, on both stacks."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from tradestack.books.repository import JournalRepository
from tradestack.books.service import BooksService
from tradestack.domain.ledger import deposit, fill_entry
from tradestack.domain.marketdata import Side
from tradestack.domain.orders import (
    Liquidity,
    OrderAccepted,
    OrderEvent,
    OrderFilled,
    OrderRequest,
    OrderSubmitted,
    OrderType,
    TimeInForce,
)
from tradestack.domain.portfolio import PositionState
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.models.books import BalanceRow, FillRow, JournalEntryRow
from tradestack.models.trading import OrderEventRow, OrderRow
from tradestack.ops.integrity import check_integrity

from ..conftest import MakeUser  # type: ignore[import-not-found]

TS = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


async def _books(runtime: Runtime, make_user: MakeUser) -> tuple[str, str]:
    """An account with a deposit and one filled order (10 AAPL @ 190.25, fee 1 USD), all consistent."""
    user = await make_user(Role.TRADER, login=False)
    async with runtime.database.read_session() as session:
        account = (await BooksService(session, runtime.clock).accounts_of(user.id))[0]
    request = OrderRequest(
        client_order_id="c-1", account_id=account.id, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT,
        quantity=Decimal(10), limit_price=Decimal("190.5"), time_in_force=TimeInForce.DAY,
    )  # fmt: skip
    order_id = "o-" + account.id[:8]
    events: list[OrderEvent] = [
        OrderSubmitted(order_id=order_id, ts=TS, request=request),
        OrderAccepted(order_id=order_id, ts=TS),
        OrderFilled(
            order_id=order_id,
            ts=TS,
            fill_id=f"{order_id}-1",
            quantity=Decimal(10),
            price=Decimal("190.25"),
            fee=Decimal(1),
            fee_currency="USD",
            liquidity=Liquidity.TAKER,
        ),
    ]
    async with runtime.database.session() as session:
        session.add(
            OrderRow(
                id=order_id, account_id=account.id, client_order_id="c-1", fingerprint=request.fingerprint(),
                symbol="AAPL", side="buy", type="limit", time_in_force="day", quantity=Decimal(10),
                limit_price=Decimal("190.5"), stop_price=None, status="filled", filled_quantity=Decimal(10),
                average_fill_price=Decimal("190.25"), reason=None, version=3, created_at=TS, updated_at=TS,
            )
        )  # fmt: skip
        await session.flush()
        for seq, event in enumerate(events, start=1):
            session.add(
                OrderEventRow(order_id=order_id, seq=seq, kind=event.kind, ts=TS, payload=orjson.dumps(event.to_dict()).decode())
            )
        session.add(
            FillRow(
                id=f"{order_id}-1", order_id=order_id, account_id=account.id, symbol="AAPL", side="buy",
                quantity=Decimal(10), price=Decimal("190.25"), fee=Decimal(1), fee_currency="USD", liquidity="taker", ts=TS,
            )
        )  # fmt: skip
        journal = JournalRepository(session)
        await journal.add(account.id, deposit("dep-" + order_id, TS, "USD", Decimal(100_000)))
        await journal.add(
            account.id,
            fill_entry(
                "fill-" + order_id, TS, "AAPL", "buy", Decimal(10), Decimal("190.25"), "USD", Decimal(1), "USD",
                PositionState("AAPL"), reference=f"{order_id}-1",
            ),
        )  # fmt: skip
    return account.id, order_id


async def test_consistent_books_pass(runtime: Runtime, make_user: MakeUser) -> None:
    await _books(runtime, make_user)
    report = await check_integrity(runtime.database)
    assert report.ok, report.problems
    assert report.checked["orders"] >= 1
    assert report.checked["fills"] == 1
    assert report.checked["journal entries"] == 2
    assert report.checked["postings"] == 6  # deposit: cash, deposits; fill: position and cash, fees and cash
    assert report.checked["balances"] == 4  # cash:USD, deposits:USD, fees:USD, position:AAPL


async def test_each_corruption_is_named(runtime: Runtime, make_user: MakeUser) -> None:
    account_id, order_id = await _books(runtime, make_user)
    async with runtime.database.engine.begin() as conn:
        await conn.execute(text("UPDATE orders SET status = 'canceled' WHERE id = :id"), {"id": order_id})
    problems = (await check_integrity(runtime.database)).problems
    assert problems == [f"order {order_id}: stored status/filled/version canceled/10/3 but its events give filled/10/3"]

    async with runtime.database.engine.begin() as conn:
        await conn.execute(text("UPDATE orders SET status = 'filled' WHERE id = :id"), {"id": order_id})
        await conn.execute(text("UPDATE fills SET quantity = :q WHERE order_id = :id"), {"q": "11", "id": order_id})
    problems = (await check_integrity(runtime.database)).problems
    assert f"account {account_id} AAPL: the journal holds 10 but the fills add up to 11" in problems
    assert f"fill {order_id}-1: 11 @ 190.25 but the order's event says 10 @ 190.25" in problems

    async with runtime.database.engine.begin() as conn:
        await conn.execute(text("UPDATE fills SET quantity = :q WHERE order_id = :id"), {"q": "10", "id": order_id})
        await conn.execute(text("DELETE FROM order_events WHERE order_id = :id AND seq = 2"), {"id": order_id})
    problems = (await check_integrity(runtime.database)).problems
    assert problems == [f"order {order_id}: event sequence [1, 3] has holes or does not start at 1"]


@pytest.mark.parametrize(("deposits", "imbalance"), [("-99999", "1"), ("-100001", "-1")])
async def test_unbalanced_journal_is_named_whatever_the_sign(
    runtime: Runtime, make_user: MakeUser, deposits: str, imbalance: str
) -> None:
    account_id, order_id = await _books(runtime, make_user)
    async with runtime.database.engine.begin() as conn:
        if runtime.database.dialect == "postgresql":
            # PostgreSQL refuses to commit an unbalanced entry (test_journal_constraint.py); corrupt this
            # throwaway database past its trigger, as a restore with triggers off would.
            await conn.execute(text("ALTER TABLE postings DISABLE TRIGGER postings_balanced"))
        await conn.execute(text("UPDATE postings SET amount = :a WHERE account = 'deposits:USD'"), {"a": deposits})
    problems = (await check_integrity(runtime.database)).problems
    assert problems == [
        f"journal entry dep-{order_id} does not balance: USD postings sum to {imbalance}",
        f"balance deposits:USD of account {account_id}: amount -100000 but its postings sum to {deposits}",
    ]


def test_the_command_exits_1_naming_the_problem(tmp_path: Path, sqlite_url: str) -> None:
    tradestack = str(Path(sys.executable).parent / "tradestack")
    env = {"PATH": "/usr/bin:/bin", "TRADESTACK_DATABASE_URL": sqlite_url, "TRADESTACK_DATA_DIR": str(tmp_path)}
    subprocess.run([tradestack, "db", "upgrade"], env=env, check=True, capture_output=True)
    ok = subprocess.run([tradestack, "check", "integrity"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "integrity check passed" in ok.stdout
    import sqlite3

    path = sqlite_url.split("///", 1)[1]
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO users (id, email, password_hash, role, is_active, mfa_enabled, created_at, updated_at) "
                   "VALUES ('u', 'u@x', 'x', 'trader', 1, 0, '2026-01-01', '2026-01-01')")  # fmt: skip
        db.execute("INSERT INTO trading_accounts (id, owner_id, name, base_currency, kind, allow_short, created_at) "
                   "VALUES ('a', 'u', 'p', 'USD', 'paper', 0, '2026-01-01')")  # fmt: skip
        db.execute("INSERT INTO journal_entries (id, account_id, ts, kind) VALUES ('e1', 'a', '2026-01-01', 'deposit')")
        db.execute("INSERT INTO postings (entry_id, account, currency, amount) VALUES ('e1', 'cash:USD', 'USD', '5')")
    bad = subprocess.run([tradestack, "check", "integrity"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "journal entry e1 does not balance: USD postings sum to 5" in bad.stderr
    assert "balance cash:USD of account a is missing: its postings sum to 5" in bad.stderr


async def test_balances_that_are_not_the_fold_of_the_journal_are_named(runtime: Runtime, make_user: MakeUser) -> None:
    account_id, _ = await _books(runtime, make_user)
    async with runtime.database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE balances SET amount = :a WHERE account_id = :id AND ledger_account = 'cash:USD'"),
            {"a": "98095.5", "id": account_id},
        )
        await conn.execute(
            text("UPDATE balances SET quantity = :q WHERE account_id = :id AND ledger_account = 'position:AAPL'"),
            {"q": "9", "id": account_id},
        )
    report = await check_integrity(runtime.database)
    assert report.problems == [
        f"balance cash:USD of account {account_id}: amount 98095.5 but its postings sum to 98096.5",
        f"balance position:AAPL of account {account_id}: quantity 9 but its postings' quantities sum to 10",
    ]
    assert report.checked["balances"] == 4

    async with runtime.database.engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM balances WHERE account_id = :id AND ledger_account = 'fees:USD'"), {"id": account_id}
        )
        await conn.execute(
            text("UPDATE balances SET amount = :a WHERE account_id = :id AND ledger_account = 'cash:USD'"),
            {"a": "98096.5", "id": account_id},
        )
        await conn.execute(
            text("UPDATE balances SET quantity = :q WHERE account_id = :id AND ledger_account = 'position:AAPL'"),
            {"q": "10", "id": account_id},
        )
    report = await check_integrity(runtime.database)
    assert report.problems == [f"balance fees:USD of account {account_id} is missing: its postings sum to 1"]
    assert report.checked["balances"] == 3


async def test_positions_balances_and_entries_that_do_not_fold_are_named(runtime: Runtime, make_user: MakeUser) -> None:
    account_id, order_id = await _books(runtime, make_user)
    async with runtime.database.engine.begin() as conn:
        # The fill says it was a sell of MSFT; the journal holds 10 AAPL bought.
        await conn.execute(text("UPDATE fills SET symbol = 'MSFT', side = 'sell' WHERE order_id = :id"), {"id": order_id})
        await conn.execute(
            text("UPDATE balances SET currency = 'EUR' WHERE account_id = :id AND ledger_account = 'cash:USD'"),
            {"id": account_id},
        )
        await conn.execute(
            text("UPDATE balances SET quantity = NULL WHERE account_id = :id AND ledger_account = 'position:AAPL'"),
            {"id": account_id},
        )
    async with runtime.database.session() as session:
        session.add(
            BalanceRow(account_id=account_id, ledger_account="cash:GBP", currency="GBP", amount=Decimal(5), quantity=None)
        )
        session.add(JournalEntryRow(id="empty-entry", account_id=account_id, ts=TS, kind="deposit"))
    problems = (await check_integrity(runtime.database)).problems
    assert sorted(problems) == sorted(
        [
            f"account {account_id} AAPL: the journal holds 10 but the fills add up to 0",
            f"account {account_id} MSFT: the journal holds 0 but the fills add up to -10",
            f"balance cash:USD of account {account_id}: kept in EUR but its postings are in USD",
            f"balance position:AAPL of account {account_id}: quantity none but its postings' quantities sum to 10",
            f"balance cash:GBP of account {account_id}: amount 5 but its postings sum to 0",
            "journal entry empty-entry has no postings",
        ]
    )


async def test_orders_without_events_or_with_events_that_do_not_fold_are_named(runtime: Runtime, make_user: MakeUser) -> None:
    account_id, order_id = await _books(runtime, make_user)
    async with runtime.database.session() as session:
        for n in (1, 2):
            session.add(
                OrderRow(
                    id=f"bare-{n}", account_id=account_id, client_order_id=f"bare-{n}", fingerprint="x", symbol="AAPL",
                    side="buy", type="limit", time_in_force="day", quantity=Decimal(1), limit_price=Decimal(1), stop_price=None,
                    status="accepted", filled_quantity=Decimal(0), average_fill_price=None, reason=None, version=2,
                    created_at=TS, updated_at=TS,
                )
            )  # fmt: skip
    async with runtime.database.engine.begin() as conn:
        await conn.execute(text("UPDATE order_events SET payload = '{}' WHERE order_id = :id AND seq = 3"), {"id": order_id})
    problems = sorted((await check_integrity(runtime.database)).problems)
    # Its fill is then recorded by no order that folds: reported once, with the order.
    assert len(problems) == 3, problems
    assert problems[:2] == [
        "order bare-1: its events do not fold: an order needs at least its OrderSubmitted event",
        "order bare-2: its events do not fold: an order needs at least its OrderSubmitted event",
    ]
    assert problems[2].startswith(f"order {order_id}: its events do not fold: unknown order event kind")


async def test_the_report_keeps_the_first_fifty_problems(runtime: Runtime, make_user: MakeUser) -> None:
    account_id, _ = await _books(runtime, make_user)
    async with runtime.database.session() as session:
        for n in range(60):
            session.add(JournalEntryRow(id=f"empty-{n:02}", account_id=account_id, ts=TS, kind="deposit"))
    report = await check_integrity(runtime.database)
    assert len(report.problems) == 50
    assert not report.ok
