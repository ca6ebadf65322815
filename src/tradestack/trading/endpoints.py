"""Orders (`/api/orders`) and risk control (`/api/risk`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import TypeAdapter

from tradestack.core.errors import ValidationFailedError
from tradestack.identity.deps import authorize, caller_of, require
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Principal
from tradestack.kit.pages import Before
from tradestack.kit.web import RuntimeDep, hot_body, hot_path
from tradestack.trading.schemas import (
    CanceledOrders,
    HaltRequest,
    OrderCreate,
    OrderEventOut,
    OrderOut,
    OrderPage,
    OrderReplace,
    ResumeRequest,
    RiskLimitsBody,
    RiskLimitsOut,
    RiskLimitsPatch,
    TradingStateOut,
)
from tradestack.trading.service import MAX_PAGE, TradingService

orders = APIRouter(prefix="/api/orders", tags=["orders"])
risk = APIRouter(prefix="/api/risk", tags=["risk"])

Trader = Annotated[Principal, require(Permission.TRADE_OWN)]
Reader = Annotated[Principal, require(Permission.ACCOUNTS_READ_OWN)]
STATUSES = ("submitted", "accepted", "denied", "triggered", "partially_filled", "filled", "canceled", "expired", "rejected")


_ORDER_OUT = TypeAdapter(OrderOut)


async def _submit_hot(request: Request) -> Response | None:
    """`submit_order` without FastAPI's routing, dependency solving and middleware layers (`tradestack.api.hot`).

    Answered as FastAPI serialises the route's `OrderOut`; a body `hot_body` does not take goes to the route."""
    body = await hot_body(request, OrderCreate)
    if body is None:
        return None
    principal = await authorize(request, Permission.TRADE_OWN)
    order, created = await TradingService(request.app.state.runtime).submit(principal, body, caller_of(request))
    return Response(_ORDER_OUT.dump_json(order), status_code=201 if created else 200, media_type="application/json")


@orders.post(
    "",
    response_model=OrderOut,
    status_code=201,
    summary="Submit an order",
    responses={
        200: {"description": "This client_order_id was already used with the same terms: the same order"},
        404: {"description": "No such account of yours"},
        409: {"description": "This client_order_id was already used with different terms"},
        422: {"description": "Invalid terms, closed session, or denied by a risk check (stored as denied)"},
    },
)
@hot_path(_submit_hot)
async def submit_order(
    runtime: RuntimeDep, principal: Trader, body: OrderCreate, request: Request, response: Response
) -> OrderOut:
    order, created = await TradingService(runtime).submit(principal, body, caller_of(request))
    if not created:
        response.status_code = 200
    return order


@orders.get("", response_model=OrderPage, summary="Your orders, newest first")
async def list_orders(
    runtime: RuntimeDep,
    principal: Reader,
    account_id: Annotated[str | None, Query(max_length=36, description="One account; all of yours when absent.")] = None,
    status: Annotated[list[str] | None, Query(description=f"Repeat to allow several: {', '.join(STATUSES)}; or 'open'.")] = None,
    symbol: Annotated[str | None, Query(max_length=32)] = None,
    before: Before = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> OrderPage:
    wanted = _statuses(status)
    return await TradingService(runtime).page(
        principal, account_id=account_id, status=wanted, symbol=symbol.upper() if symbol else None, before=before, limit=limit
    )


def _statuses(status: list[str] | None) -> list[str] | None:
    if not status:
        return None
    wanted: list[str] = []
    for value in status:
        if value == "open":
            wanted += ["submitted", "accepted", "triggered", "partially_filled"]
        elif value in STATUSES:
            wanted.append(value)
        else:
            raise ValidationFailedError(f"unknown status {value!r}: use one of {', '.join(STATUSES)} or open")
    return wanted


@orders.delete("", response_model=CanceledOrders, summary="Cancel all your open orders (of one account, or all)")
async def cancel_all_orders(
    runtime: RuntimeDep,
    principal: Trader,
    request: Request,
    account_id: Annotated[str | None, Query(max_length=36)] = None,
) -> CanceledOrders:
    return CanceledOrders(canceled=await TradingService(runtime).cancel_all(principal, account_id, caller_of(request)))


@orders.get("/{order_id}", response_model=OrderOut, summary="One order")
async def get_order(runtime: RuntimeDep, principal: Reader, order_id: str) -> OrderOut:
    return await TradingService(runtime).get(principal, order_id)


@orders.get("/{order_id}/events", response_model=list[OrderEventOut], summary="An order's events, oldest first")
async def order_events(runtime: RuntimeDep, principal: Reader, order_id: str) -> list[OrderEventOut]:
    return await TradingService(runtime).events(principal, order_id)


@orders.patch(
    "/{order_id}",
    response_model=OrderOut,
    summary="Replace a working order's quantity or prices",
    responses={409: {"description": "The order is not working"}, 422: {"description": "Invalid new terms or denied by risk"}},
)
async def replace_order(runtime: RuntimeDep, principal: Trader, order_id: str, body: OrderReplace, request: Request) -> OrderOut:
    return await TradingService(runtime).replace(principal, order_id, body, caller_of(request))


@orders.delete(
    "/{order_id}",
    response_model=OrderOut,
    summary="Cancel an order",
    responses={409: {"description": "The order is already final"}},
)
async def cancel_order(runtime: RuntimeDep, principal: Trader, order_id: str, request: Request) -> OrderOut:
    return await TradingService(runtime).cancel(principal, order_id, caller_of(request))


@risk.post("/halt", response_model=TradingStateOut, summary="Halt (or restrict to reducing) an account or everything")
async def halt(
    runtime: RuntimeDep, principal: Annotated[Principal, require(Permission.RISK_HALT)], body: HaltRequest, request: Request
) -> TradingStateOut:
    return await TradingService(runtime).set_state(principal, body, caller_of(request))


@risk.post("/resume", response_model=TradingStateOut, summary="Let an account or everything trade again")
async def resume(
    runtime: RuntimeDep, principal: Annotated[Principal, require(Permission.RISK_HALT)], body: ResumeRequest, request: Request
) -> TradingStateOut:
    return await TradingService(runtime).set_state(principal, body, caller_of(request))


@risk.get("/states", response_model=list[TradingStateOut], summary="Trading states that are set")
async def states(runtime: RuntimeDep, _: Annotated[Principal, require(Permission.RISK_HALT)]) -> list[TradingStateOut]:
    return await TradingService(runtime).states()


@risk.get("/limits/{account_id}", response_model=RiskLimitsOut, summary="An account's pre-trade limits")
async def get_limits(runtime: RuntimeDep, principal: Reader, account_id: str) -> RiskLimitsOut:
    return await TradingService(runtime).get_limits(principal, account_id)


@risk.put("/limits/{account_id}", response_model=RiskLimitsOut, summary="Set an account's pre-trade limits")
async def put_limits(
    runtime: RuntimeDep,
    principal: Annotated[Principal, require(Permission.RISK_LIMITS)],
    account_id: str,
    body: RiskLimitsBody,
    request: Request,
) -> RiskLimitsOut:
    return await TradingService(runtime).put_limits(principal, account_id, body, caller_of(request))


@risk.patch("/limits/{account_id}", response_model=RiskLimitsOut, summary="Change some of an account's pre-trade limits")
async def patch_limits(
    runtime: RuntimeDep,
    principal: Annotated[Principal, require(Permission.RISK_LIMITS)],
    account_id: str,
    body: RiskLimitsPatch,
    request: Request,
) -> RiskLimitsOut:
    return await TradingService(runtime).patch_limits(principal, account_id, body, caller_of(request))
