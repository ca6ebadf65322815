"""Response bodies of the backtests API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
