"""Response bodies of the operations endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Check(BaseModel):
    ok: bool
    detail: str | None = None
    latency_ms: float | None = None


class Readiness(BaseModel):
    status: str = Field(
        description="ready; degraded (200: the cache is away, serving from the database); not_ready (503)", examples=["ready"]
    )
    checks: dict[str, Check]


class PoolUsage(BaseModel):
    size: int
    checked_out: int
    checked_in: int
    overflow: int
    max_overflow: int


class DatabaseEndpoint(BaseModel):
    ok: bool
    dialect: str
    latency_ms: float | None = None
    pool: PoolUsage
    detail: str | None = None


class DatabaseHealth(BaseModel):
    status: str = Field(description="ok or degraded")
    primary: DatabaseEndpoint
    replica: DatabaseEndpoint | None = None


class Version(BaseModel):
    version: str
    git_sha: str | None
    schema_revision: str | None = Field(description="Migration revision the database is at.")
    schema_head: str = Field(description="Latest migration revision this version ships.")
    environment: str


class ExternalTarget(BaseModel):
    """One venue or feed this installation depends on, as last probed."""

    name: str = Field(examples=["ccxt:binance"])
    kind: str = Field(description="venue (ccxt exchange, broker gateway) or feed (market data)", examples=["venue"])
    required: bool = Field(description="A required target that is down makes /api/health/external answer 503.")
    ok: bool
    latency_ms: float | None = None
    last_success: datetime | None = Field(default=None, description="When this process last reached it.")
    checked_at: datetime
    error: str | None = None


class ExternalHealth(BaseModel):
    status: str = Field(description="ok, or degraded when a required target is down", examples=["ok"])
    targets: list[ExternalTarget]
