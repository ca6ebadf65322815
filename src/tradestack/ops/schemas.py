"""Response bodies of the operations endpoints."""

from __future__ import annotations

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
