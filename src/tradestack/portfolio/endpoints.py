"""Trading accounts: open a paper account with a deposit, list yours with their cash."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from tradestack.identity.deps import caller_of, require
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Principal
from tradestack.kit.web import RuntimeDep
from tradestack.portfolio.schemas import AccountCreate, AccountWithCash
from tradestack.portfolio.service import PortfolioService

router = APIRouter(prefix="/api/accounts", tags=["accounts"])


@router.post(
    "",
    response_model=AccountWithCash,
    status_code=201,
    summary="Open a paper account with an initial deposit",
    responses={422: {"description": "Bad name, currency or amount"}},
)
async def open_account(
    runtime: RuntimeDep,
    principal: Annotated[Principal, require(Permission.TRADE_OWN)],
    body: AccountCreate,
    request: Request,
) -> AccountWithCash:
    return await PortfolioService(runtime).open_paper_account(principal, body, caller_of(request))


@router.get("", response_model=list[AccountWithCash], summary="Your trading accounts with cash per currency")
async def list_accounts(
    runtime: RuntimeDep, principal: Annotated[Principal, require(Permission.ACCOUNTS_READ_OWN)]
) -> list[AccountWithCash]:
    return await PortfolioService(runtime).accounts_of(principal)
