"""Work that spans identity and the books: the first users of an installation and the demo trader's account."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import exists, select

from tradestack.books.service import BooksService
from tradestack.identity.service import Caller, SeededUser, identity_session, seed_users
from tradestack.kit.runtime import Runtime
from tradestack.models.identity import User

DEMO_DEPOSIT_AUD = Decimal(100_000)


async def seed_first_users(runtime: Runtime) -> list[SeededUser]:
    """On an installation without users: an admin and a demo trader with a funded AUD paper account, in one
    transaction. Generated passwords are returned to be shown once; later runs change nothing."""
    # Every start but the first: users exist, and a plain look spares building the identity service (its
    # password hasher computes an argon2 hash up front, a second of a busy machine's start-up). `seed_users`
    # counts again in its own transaction.
    async with runtime.database.read_session() as session:
        if await session.scalar(select(exists().select_from(User))):
            return []
    async with identity_session(runtime, Caller(ip="127.0.0.1", user_agent="tradestack up")) as identity:
        seeded, trader_id = await seed_users(identity)
        if trader_id is not None:
            books = BooksService(identity.session, runtime.clock)
            account = await books.open_account(trader_id, "Demo paper account", "AUD", kind="paper")
            await books.deposit(account.id, "AUD", DEMO_DEPOSIT_AUD, entry_id=f"deposit-{account.id}")
    return seeded
