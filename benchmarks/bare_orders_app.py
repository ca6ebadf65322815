"""The baseline of order_path.py: a bare FastAPI app that durably records an order, nothing else.

No authentication, no middleware, no rate limiting, no risk checks, no events, no audit, no
engine message: one route that validates the same JSON body (pydantic, decimals as strings),
writes one row to ``bench_orders`` in its own transaction (BEGIN, INSERT, COMMIT through an
asyncpg pool of 10 connections per worker, like Tradestack's default pool) and answers 201 with
the stored order. A unique (account_id, client_order_id) keeps the same idempotency key the
real table has. The table is created by order_path.py in the benchmark's throwaway database.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench_x \\
        .venv/bin/uvicorn bare_orders_app:app --app-dir benchmarks --workers 2 --no-access-log
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

import asyncpg  # type: ignore[import-untyped]
import orjson
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS bench_orders (
    id text PRIMARY KEY,
    account_id text NOT NULL,
    client_order_id text NOT NULL,
    symbol text NOT NULL,
    side text NOT NULL,
    type text NOT NULL,
    time_in_force text NOT NULL,
    quantity numeric NOT NULL,
    limit_price numeric,
    stop_price numeric,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    UNIQUE (account_id, client_order_id)
)
"""
INSERT_SQL = (
    "INSERT INTO bench_orders (id, account_id, client_order_id, symbol, side, type, time_in_force, quantity, "
    "limit_price, stop_price, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'accepted', $11)"
)
POOL_SIZE = 10

Positive = Annotated[Decimal, Field(gt=0, allow_inf_nan=False, max_digits=38)]


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: str = Field(min_length=1, max_length=36)
    client_order_id: str = Field(pattern=r"^[A-Za-z0-9._:\-]{1,64}$")
    symbol: str = Field(min_length=1, max_length=32)
    side: Literal["buy", "sell"]
    type: Literal["market", "limit", "stop", "stop_limit"]
    quantity: Positive
    limit_price: Positive | None = None
    stop_price: Positive | None = None
    time_in_force: Literal["day", "gtc", "ioc", "fok"] = "day"


pool: asyncpg.Pool | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global pool  # one pool per worker process
    pool = await asyncpg.create_pool(os.environ["BENCH_DATABASE_URL"], min_size=POOL_SIZE, max_size=POOL_SIZE)
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@app.post("/api/orders", status_code=201)
async def submit(body: OrderIn) -> Response:
    assert pool is not None  # noqa: S101 - set by the lifespan
    order_id, now = str(uuid.uuid4()), datetime.now(UTC)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            INSERT_SQL, order_id, body.account_id, body.client_order_id, body.symbol, body.side, body.type,
            body.time_in_force, body.quantity, body.limit_price, body.stop_price, now,
        )  # fmt: skip
    out = {
        "id": order_id, "account_id": body.account_id, "client_order_id": body.client_order_id, "symbol": body.symbol,
        "side": body.side, "type": body.type, "time_in_force": body.time_in_force, "quantity": str(body.quantity),
        "limit_price": None if body.limit_price is None else str(body.limit_price), "status": "accepted",
        "created_at": now.isoformat(),
    }  # fmt: skip
    return Response(orjson.dumps(out), status_code=201, media_type="application/json")
