"""Response bodies of the backtests API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field


class BacktestSummary(BaseModel):
    """A stored run: what ran on which bars, and its headline figures."""

    id: str
    created_at: datetime
    strategy: str
    symbols: list[str]
    first_bar: datetime
    last_bar: datetime
    bars: int
    code_version: str
    data_fingerprint: str = Field(description="SHA-256 of the bars replayed.")
    final_equity: str = Field(description="Exact decimal, in the account currency.")
    metrics: dict[str, Any] = Field(description="Return statistics; money as strings, ratios as fractions, NaN as null.")


class BacktestList(BaseModel):
    """Stored runs, newest first."""

    backtests: list[BacktestSummary]


class BacktestDetail(BacktestSummary):
    """A stored run with its spec and everything it produced."""

    spec: dict[str, Any] = Field(description="Strategy parameters and the account and execution models.")
    result: dict[str, Any] = Field(description="Orders, order events, fills, journal entries and the equity curve.")


class StrategyDeploy(BaseModel):
    """Deploy a named strategy with its parameters on one of your accounts (paper)."""

    model_config = {"extra": "forbid"}

    strategy: str = Field(min_length=1, max_length=64, description="Strategy name (sma_cross, bollinger).")
    account_id: str = Field(min_length=1, max_length=36, description="Your trading account it trades.")
    symbols: list[str] = Field(min_length=1, max_length=20, description="Symbols it trades and receives bars of.")
    params: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=100)] | int | float] = Field(
        default_factory=dict, max_length=32, description='Constructor parameters by name, e.g. {"fast": 10}.'
    )
    bar_seconds: int = Field(default=60, ge=1, le=86_400, description="Bars are built from the quotes over this many seconds.")
    max_errors: int = Field(default=5, ge=1, le=1000, description="It stops itself after this many errors in a row.")


class StrategyPosition(BaseModel):
    """A position the strategy's own fills hold, at cost and at the mark."""

    symbol: str
    quantity: str = Field(description="Signed units (decimal string).")
    cost: str = Field(description="Cost basis, quote currency (decimal string).")
    mark: str | None = Field(description="Current mark (last, else mid of a sane quote), or null when none.")
    unrealized_pnl: str | None = Field(description="Value at the mark less the cost; null without a mark.")


class StrategyPnl(BaseModel):
    """P&L attributed to the strategy from its own fills (quote currency of its instruments)."""

    realized: str
    unrealized: str | None = Field(description="Null when a held symbol has no mark.")
    fees: str
    total: str | None = Field(description="realized + unrealized - fees; null when unrealized is unknown.")


class StrategyOut(BaseModel):
    """A deployment and how it is doing."""

    id: str
    strategy: str
    account_id: str
    owner_id: str
    symbols: list[str]
    params: dict[str, str]
    bar_seconds: int
    max_errors: int
    state: str = Field(description="running, stopped (by a user) or failed (stopped itself after repeated errors).")
    trading_state: str | None = Field(
        default=None, description="The kill switch as it applies to its account now: active, reducing or halted."
    )
    order_prefix: str = Field(description="Its orders' client order ids start with this.")
    created_at: datetime
    updated_at: datetime
    stopped_at: datetime | None
    stop_reason: str | None
    errors: int
    consecutive_errors: int
    last_error: str | None
    last_error_at: datetime | None
    orders: int = 0
    open_orders: int = 0
    fills: int = 0
    positions: list[StrategyPosition] = Field(default_factory=list)
    pnl: StrategyPnl | None = None


class StrategyList(BaseModel):
    """Deployments, newest first."""

    strategies: list[StrategyOut]
