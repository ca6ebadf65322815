"""Opening paper accounts with a deposit, and reading their cash."""

from __future__ import annotations

import uuid

from tradestack.domain.ledger import deposit
from tradestack.identity.service import Caller, IdentityService, Principal, identity_session
from tradestack.kit.runtime import Runtime
from tradestack.portfolio.repository import JournalRepository
from tradestack.portfolio.schemas import AccountCreate, AccountWithCash


class PortfolioService:
    """Accounts' books."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def open_paper_account(self, principal: Principal, request: AccountCreate, caller: Caller) -> AccountWithCash:
        """Open a paper account and book its deposit, in one transaction: both happen or neither does."""
        async with identity_session(self.runtime, caller) as identity:
            account = await identity.open_account_for(principal, request.name, request.base_currency)
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
                    created_at=a.created_at,
                    cash=cash.get(a.id, {}),
                )
                for a in accounts
            ]
