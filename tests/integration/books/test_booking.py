"""Fills booked in bulk (`BooksService.fill_booking`) next to entries booked one by one (`JournalRepository.add`).

The engine books a group of fills through `FillBooking.write` (one statement a table, the balances set to where the
group left them); deposits and conversions go through `add`, which moves the ORM balance rows it read and keeps them
for the rest of the transaction. Both in one transaction must leave the balances at the sum of every entry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from tradestack.books.repository import JournalRepository
from tradestack.books.service import BooksService
from tradestack.domain.ledger import deposit
from tradestack.domain.order_kinds import Liquidity
from tradestack.domain.orders import OrderFilled
from tradestack.domain.portfolio import FxRates
from tradestack.kit.runtime import Runtime
from tradestack.models.trading import OrderRow

from ..conftest import MakeUser  # type: ignore[import-not-found]

TS = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


async def test_an_entry_added_after_a_bulk_booking_in_the_same_transaction_moves_the_balances_from_where_it_left_them(
    make_user: MakeUser, runtime: Runtime
) -> None:
    user = await make_user()
    async with runtime.database.session() as session:
        books = BooksService(session, runtime.clock)
        account = (await books.accounts_of(user.id))[0]
        session.add(
            OrderRow(
                id="o-bulk", account_id=account.id, client_order_id="c-bulk", fingerprint="{}", symbol="AAPL",
                side="buy", type="market", time_in_force="day", quantity=Decimal(10), limit_price=None, stop_price=None,
                status="filled", filled_quantity=Decimal(10), average_fill_price=Decimal(100), reason=None, version=3,
                created_at=TS, updated_at=TS,
            )
        )  # fmt: skip
        await session.flush()
        journal = JournalRepository(session)
        await journal.add(account.id, deposit("dep-1", TS, "USD", Decimal(5000)))  # loads and keeps the cash row
        booking = await books.fill_booking([account])
        fill = OrderFilled(
            order_id="o-bulk", ts=TS, fill_id="f-bulk", quantity=Decimal(10), price=Decimal(100), fee=Decimal(1),
            fee_currency="USD", liquidity=Liquidity.TAKER,
        )  # fmt: skip
        booking.book(account.id, "AAPL", "buy", fill, "USD", rates=FxRates({}), fx_fee_bps=Decimal(0))
        await booking.write()  # cash 5000 - 1000 - 1
        await journal.add(account.id, deposit("dep-2", TS, "USD", Decimal(100)))  # from 3999, not from 5000
    async with runtime.database.session() as session:
        snapshot = await BooksService(session, runtime.clock).snapshot(account.id)
    assert snapshot.cash_in("USD") == Decimal(4099)
    assert snapshot.holdings["AAPL"].position.quantity == Decimal(10)
