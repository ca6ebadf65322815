"""Shapes of orders, risk limits and trading states on the wire. Decimals travel as strings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator

from tradestack.core.money import DECIMAL_TEXT, ascii_decimal_text, plain
from tradestack.domain.orders import Order, OrderSide, OrderType, TimeInForce
from tradestack.domain.risk import RiskLimits, TradingState
from tradestack.models.trading import OrderRow

DecimalText = Annotated[Decimal, PlainSerializer(plain, return_type=str, when_used="json")]
# A decimal from a client: a JSON number or ASCII decimal text (the schema publishes the pattern).
WireDecimal = Annotated[
    Decimal, BeforeValidator(ascii_decimal_text), Field(json_schema_extra={"pattern": DECIMAL_TEXT}, allow_inf_nan=False)
]
Positive = Annotated[WireDecimal, Field(gt=0, max_digits=38)]
# Risk limits: non-negative (no "-0"), at most 10^15 in the account's currency or units, 8 decimals.
LimitAmount = Annotated[WireDecimal, Field(ge=0, le=Decimal("1e15"), decimal_places=8)]
CLIENT_ORDER_ID = r"^[A-Za-z0-9._:\-]{1,64}$"


class OrderCreate(BaseModel):
    """A new order. `client_order_id` makes the submit idempotent: the same id and terms return the same order."""

    model_config = ConfigDict(extra="forbid")

    account_id: str = Field(min_length=1, max_length=36)
    client_order_id: str = Field(
        pattern=CLIENT_ORDER_ID, description="Your id for this order, unique per account (1-64 of A-Z a-z 0-9 . _ : -)."
    )
    symbol: str = Field(min_length=1, max_length=32)
    side: OrderSide
    type: OrderType
    quantity: Positive = Field(description="Units, a multiple of the instrument's lot size (decimal string).")
    limit_price: Positive | None = Field(default=None, description="Limit and stop_limit orders only; on the tick.")
    stop_price: Positive | None = Field(default=None, description="Stop and stop_limit orders only; on the tick.")
    time_in_force: TimeInForce = TimeInForce.DAY


class OrderReplace(BaseModel):
    """New terms for a working order; give at least one. Fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    quantity: Positive | None = Field(default=None, description="New total quantity, above what is already filled.")
    limit_price: Positive | None = None
    stop_price: Positive | None = Field(default=None, description="Only before a stop order has triggered.")

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
    average_fill_price: DecimalText | None
    reason: str | None = Field(description="Why it was denied, canceled, expired or rejected.")
    version: int = Field(description="Number of events so far.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of_row(cls, row: OrderRow) -> OrderOut:
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


class RiskLimitsBody(BaseModel):
    """An account's pre-trade limits; money amounts in the account's base currency."""

    model_config = ConfigDict(extra="forbid")

    max_order_notional: LimitAmount
    max_position_quantity: LimitAmount = Field(description="Per instrument, in units.")
    max_gross_exposure: LimitAmount
    price_collar_pct: Annotated[WireDecimal, Field(ge=0, lt=100, decimal_places=8)] = Field(
        description="How far (in %) a limit price may be through the last price."
    )
    max_orders_per_minute: int = Field(ge=0, le=1_000_000)
    daily_loss_limit: LimitAmount = Field(description="Once today's realized loss reaches it, only reducing orders pass.")

    @model_validator(mode="after")
    def _no_negative_zero(self) -> RiskLimitsBody:
        for name, value in self:
            if isinstance(value, Decimal) and value.is_signed():
                raise ValueError(f"{name} must not be negative (not even -0)")
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


class HaltRequest(BaseModel):
    """Halt (or restrict to reducing orders) one account or, with scope "global", everything."""

    model_config = ConfigDict(extra="forbid")

    scope: str = Field(min_length=1, max_length=36, description='"global" or an account id.')
    state: Literal[TradingState.HALTED, TradingState.REDUCING] = TradingState.HALTED
    reason: str = Field(min_length=1, max_length=500, description="Recorded with the state and in the audit log.")


class ResumeRequest(BaseModel):
    """Let one account or (scope "global") everything trade again."""

    model_config = ConfigDict(extra="forbid")

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
