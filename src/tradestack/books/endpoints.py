"""Trading accounts: open a paper account with a deposit, list yours with their cash; read an account's books."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tradestack.books.schemas import (
    AccountCreate,
    AccountWithCash,
    EquitySeries,
    FillPage,
    LedgerPage,
    Portfolio,
    PositionList,
)
from tradestack.books.service import DEFAULT_PAGE, MAX_PAGE, BooksApi
from tradestack.identity.deps import caller_of, require
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Principal
from tradestack.kit.pages import Before
from tradestack.kit.web import RuntimeDep
from tradestack.trading.schemas import ConversionCreate, ConversionOut
from tradestack.trading.service import TradingService

router = APIRouter(prefix="/api/accounts", tags=["accounts"])
books = APIRouter(prefix="/api", tags=["portfolio"])

Reader = Annotated[Principal, require(Permission.ACCOUNTS_READ_OWN)]
AccountId = Annotated[
    str | None,
    Query(
        pattern=r"^[\x21-\x7e]{1,36}$",
        description="The trading account's id (yours, or any with accounts:read:all); yours when you have only one.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Page size (1-{MAX_PAGE}).")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such account, or not yours"}}


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
    return await BooksApi(runtime).open_paper_account(principal, body, caller_of(request))


@router.post(
    "/{account_id}/convert",
    response_model=ConversionOut,
    summary="Convert cash between currencies at the live rate (one balanced FX journal entry)",
    responses={**NOT_FOUND, 422: {"description": "Unknown currency, not enough cash, or no FX rate yet"}},
)
async def convert(
    runtime: RuntimeDep,
    principal: Annotated[Principal, require(Permission.TRADE_OWN)],
    account_id: str,
    body: ConversionCreate,
    request: Request,
) -> ConversionOut:
    return await TradingService(runtime).convert(principal, account_id, body, caller_of(request))


@router.get("", response_model=list[AccountWithCash], summary="Your trading accounts with cash per currency")
async def list_accounts(
    runtime: RuntimeDep, principal: Annotated[Principal, require(Permission.ACCOUNTS_READ_OWN)]
) -> list[AccountWithCash]:
    return await BooksApi(runtime).accounts_of(principal)


@books.get(
    "/positions",
    response_model=PositionList,
    summary="Open positions at cost and marked to the live quotes",
    responses={**NOT_FOUND, 422: {"description": "Bad account_id, or none given and you have several accounts"}},
)
async def positions(runtime: RuntimeDep, principal: Reader, account_id: AccountId = None) -> PositionList:
    service = BooksApi(runtime)
    return await service.positions(principal, await service.account_or_default(principal, account_id))


@books.get(
    "/portfolio",
    response_model=Portfolio,
    summary="Cash, positions, realized P&L, fees and equity in the base currency",
    responses={**NOT_FOUND, 422: {"description": "Bad account_id, or none given and you have several accounts"}},
)
async def portfolio(runtime: RuntimeDep, principal: Reader, account_id: AccountId = None) -> Portfolio:
    service = BooksApi(runtime)
    account = await service.account_or_default(principal, account_id)
    return await service.portfolio(principal, account, TradingService(runtime).reservations)


@books.get(
    "/portfolio/equity",
    response_model=EquitySeries,
    summary="Recorded equity in the base currency over time (from when recording started; downsampled when long)",
    responses={
        **NOT_FOUND,
        422: {"description": "from after to, a time that is not ISO 8601, or no account_id given and you have several accounts"},
    },
)
async def equity(
    runtime: RuntimeDep,
    principal: Reader,
    start: Annotated[
        datetime | None,
        Query(alias="from", description="Start (ISO 8601, UTC when no offset) [default: 30 days before `to`]."),
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="End (ISO 8601, UTC when no offset) [default: now].")] = None,
    account_id: AccountId = None,
) -> EquitySeries:
    service = BooksApi(runtime)
    return await service.equity(principal, await service.account_or_default(principal, account_id), start, end)


@books.get(
    "/fills",
    response_model=FillPage,
    summary="Fills, newest first, a page at a time",
    responses={**NOT_FOUND, 422: {"description": "No account_id with several accounts, unknown symbol, bad limit or bad cursor"}},
)
async def fills(
    runtime: RuntimeDep,
    principal: Reader,
    account_id: AccountId = None,
    symbol: Annotated[str | None, Query(min_length=1, max_length=32, description="Only fills of this symbol.")] = None,
    limit: Limit = DEFAULT_PAGE,
    before: Before = None,
) -> FillPage:
    service = BooksApi(runtime)
    account = await service.account_or_default(principal, account_id)
    return await service.fills(principal, account, symbol=symbol, limit=limit, before=before)


@books.get(
    "/ledger",
    response_model=LedgerPage,
    summary="Journal entries with their postings, newest first, a page at a time",
    responses={**NOT_FOUND, 422: {"description": "No account_id with several accounts, bad limit or bad cursor"}},
)
async def ledger(
    runtime: RuntimeDep, principal: Reader, account_id: AccountId = None, limit: Limit = DEFAULT_PAGE, before: Before = None
) -> LedgerPage:
    service = BooksApi(runtime)
    return await service.ledger(principal, await service.account_or_default(principal, account_id), limit=limit, before=before)
