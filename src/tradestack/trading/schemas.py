"""Shapes of orders, risk limits and trading states on the wire. Decimals travel as strings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import Row

from tradestack.domain.marketdata import Side
from tradestack.domain.orders import Order, OrderType, TimeInForce
from tradestack.domain.risk import RiskLimits, TradingState
from tradestack.kit.fields import AverageText, DecimalText, PositiveAmount, PositivePrice, RequestBody, WireDecimal
from tradestack.models.trading import OrderRow

CLIENT_ORDER_ID = r"^[A-Za-z0-9._:\-]{1,64}$"


class OrderCreate(RequestBody):
    """A new order. `client_order_id` makes the submit idempotent: the same id and terms return the same order."""

    account_id: str | None = Field(
        default=None, min_length=1, max_length=36, description="Your account; may be left out when you have only one."
    )
    client_order_id: str = Field(
        pattern=CLIENT_ORDER_ID, description="Your id for this order, unique per account (1-64 of A-Z a-z 0-9 . _ : -)."
    )
    symbol: str = Field(min_length=1, max_length=32)
    side: Side
    type: OrderType
    quantity: PositiveAmount = Field(description="Units, a multiple of the instrument's lot size (decimal string).")
    limit_price: PositivePrice | None = Field(default=None, description="Limit and stop_limit orders only; on the tick.")
    stop_price: PositivePrice | None = Field(default=None, description="Stop and stop_limit orders only; on the tick.")
    time_in_force: TimeInForce = TimeInForce.DAY


class OrderReplace(RequestBody):
    """New terms for a working order; give at least one. Fields left out keep their value."""

    quantity: PositiveAmount | None = Field(default=None, description="New total quantity, above what is already filled.")
    limit_price: PositivePrice | None = None
    stop_price: PositivePrice | None = Field(default=None, description="Only before a stop order has triggered.")

    @model_validator(mode="after")
    def _something(self) -> OrderReplace:
        if self.quantity is None and self.limit_price is None and self.stop_price is None:
            raise ValueError("give at least one of quantity, limit_price, stop_price")
        return self


class OrderOut(BaseModel):
    """An order as it stands: its current terms, status and fills so far."""

    id: str
    account_id: str
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    quantity: DecimalText
    limit_price: DecimalText | None
    stop_price: DecimalText | None
    status: str
    filled_quantity: DecimalText
    remaining_quantity: DecimalText
    average_fill_price: AverageText | None = Field(
        description="Filled notional / filled quantity, rounded half-even to 8 places."
    )
    reason: str | None = Field(description="Why it was denied, canceled, expired or rejected.")
    version: int = Field(description="Number of events so far.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of_row(cls, row: OrderRow | Row[Any]) -> OrderOut:
        """An order as stored: its ORM row, or a Core row of the same columns."""
        return cls(
            id=row.id,
            account_id=row.account_id,
            client_order_id=row.client_order_id,
            symbol=row.symbol,
            side=row.side,
            type=row.type,
            time_in_force=row.time_in_force,
            quantity=row.quantity,
            limit_price=row.limit_price,
            stop_price=row.stop_price,
            status=row.status,
            filled_quantity=row.filled_quantity,
            remaining_quantity=row.quantity - row.filled_quantity,
            average_fill_price=row.average_fill_price,
            reason=row.reason,
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    @classmethod
    def of_order(cls, order: Order) -> OrderOut:
        request = order.request
        return cls(
            id=order.id,
            account_id=request.account_id,
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side.value,
            type=request.type.value,
            time_in_force=request.time_in_force.value,
            quantity=request.quantity,
            limit_price=request.limit_price,
            stop_price=request.stop_price,
            status=order.status.value,
            filled_quantity=order.filled_quantity,
            remaining_quantity=order.remaining_quantity,
            average_fill_price=order.average_fill_price,
            reason=order.reason,
            version=order.version,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class OrderPage(BaseModel):
    """One page of orders, newest first; pass `next` as `before` for the following page."""

    items: list[OrderOut]
    next: str | None


class OrderEventOut(BaseModel):
    """One event of an order's life, as stored."""

    seq: int
    kind: str
    ts: datetime
    data: dict[str, Any] = Field(description="The event's fields (decimals as strings).")


class CanceledOrders(BaseModel):
    """Orders canceled by one request."""

    canceled: list[OrderOut]


# Risk limits: non-negative (no "-0"), at most 10^15 in the account's currency or units, 8 decimals.
Limit = Annotated[WireDecimal, Field(ge=0, le=Decimal("1e15"), decimal_places=8)]
CollarPct = Annotated[WireDecimal, Field(ge=0, lt=100, decimal_places=8)]
OrdersPerMinute = Annotated[int, Field(ge=0, le=1_000_000)]
_LIMIT_DESCRIPTIONS = {
    "max_position_quantity": "Per instrument, in units.",
    "price_collar_pct": "How far (in %) a limit price may be through the last price.",
    "daily_loss_limit": "Once today's realized loss reaches it, only reducing orders pass.",
}


def _refuse_negative_zero(limits: BaseModel) -> None:
    for name, value in limits:
        if isinstance(value, Decimal) and value.is_signed():
            raise ValueError(f"{name} must not be negative (not even -0)")


class RiskLimitsBody(RequestBody):
    """An account's pre-trade limits; money amounts in the account's base currency."""

    max_order_notional: Limit
    max_position_quantity: Limit = Field(description=_LIMIT_DESCRIPTIONS["max_position_quantity"])
    max_gross_exposure: Limit
    price_collar_pct: CollarPct = Field(description=_LIMIT_DESCRIPTIONS["price_collar_pct"])
    max_orders_per_minute: OrdersPerMinute
    daily_loss_limit: Limit = Field(description=_LIMIT_DESCRIPTIONS["daily_loss_limit"])

    @model_validator(mode="after")
    def _no_negative_zero(self) -> RiskLimitsBody:
        _refuse_negative_zero(self)
        return self


class RiskLimitsPatch(RequestBody):
    """Some of an account's pre-trade limits; the others keep their value (its own, or the defaults)."""

    max_order_notional: Limit | None = None
    max_position_quantity: Limit | None = Field(default=None, description=_LIMIT_DESCRIPTIONS["max_position_quantity"])
    max_gross_exposure: Limit | None = None
    price_collar_pct: CollarPct | None = Field(default=None, description=_LIMIT_DESCRIPTIONS["price_collar_pct"])
    max_orders_per_minute: OrdersPerMinute | None = None
    daily_loss_limit: Limit | None = Field(default=None, description=_LIMIT_DESCRIPTIONS["daily_loss_limit"])

    @model_validator(mode="after")
    def _something(self) -> RiskLimitsPatch:
        if not self.model_dump(exclude_none=True):
            raise ValueError(f"give at least one of {', '.join(RiskLimitsBody.model_fields)}")
        _refuse_negative_zero(self)
        return self


class RiskLimitsOut(BaseModel):
    """An account's limits, whether they are its own or the configured defaults."""

    account_id: str
    currency: str
    source: Literal["account", "default"]
    max_order_notional: DecimalText
    max_position_quantity: DecimalText
    max_gross_exposure: DecimalText
    price_collar_pct: DecimalText
    max_orders_per_minute: int
    daily_loss_limit: DecimalText
    updated_at: datetime | None = None
    updated_by: str | None = None

    @classmethod
    def of(
        cls,
        account_id: str,
        limits: RiskLimits,
        source: Literal["account", "default"],
        updated_at: datetime | None,
        updated_by: str | None,
    ) -> RiskLimitsOut:
        return cls(
            account_id=account_id,
            currency=limits.currency,
            source=source,
            max_order_notional=limits.max_order_notional,
            max_position_quantity=limits.max_position_quantity,
            max_gross_exposure=limits.max_gross_exposure,
            price_collar_pct=limits.price_collar_pct,
            max_orders_per_minute=limits.max_orders_per_minute,
            daily_loss_limit=limits.daily_loss_limit,
            updated_at=updated_at,
            updated_by=updated_by,
        )


class HaltRequest(RequestBody):
    """Halt (or restrict to reducing orders) one account or, with scope "global", everything."""

    scope: str = Field(min_length=1, max_length=36, description='"global" or an account id.')
    state: Literal[TradingState.HALTED, TradingState.REDUCING] = TradingState.HALTED
    reason: str = Field(min_length=1, max_length=500, description="Recorded with the state and in the audit log.")


class ResumeRequest(RequestBody):
    """Let one account or (scope "global") everything trade again."""

    scope: str = Field(min_length=1, max_length=36, description='"global" or an account id.')
    reason: str | None = Field(default=None, max_length=500)


class TradingStateOut(BaseModel):
    """A scope's trading state; `canceled_orders` counts the open orders a halt canceled."""

    scope: str
    state: str
    reason: str | None
    updated_at: datetime | None
    updated_by: str | None
    canceled_orders: int = 0


class ConversionCreate(RequestBody):
    """Sell `amount` of one currency's cash for another at the live rate, less the paper FX fee."""

    from_currency: str = Field(pattern=r"^[A-Za-z]{3,5}$", description="The cash to sell, e.g. AUD.")
    to_currency: str = Field(pattern=r"^[A-Za-z]{3,5}$", description="The cash to buy, e.g. USD.")
    amount: PositiveAmount = Field(description="How much of from_currency to sell, in its minor units (decimal string).")


class ConversionOut(BaseModel):
    """A booked conversion: one balanced FX journal entry, and the account's cash after it."""

    account_id: str
    entry_id: str
    sold_currency: str
    sold_amount: DecimalText
    bought_currency: str
    bought_amount: DecimalText = Field(description="amount x rate less the fee, rounded half-even to the minor unit.")
    rate: DecimalText = Field(description="Live rate (the pair's last price, else its mid): one from_currency in to_currency.")
    fee_bps: DecimalText
    cash: dict[str, DecimalText]
