"""The baseline of order_path_embedded.py: a bare FastAPI app that durably records an order in SQLite.

The embedded twin of bare_orders_app.py: no authentication, no middleware, no risk checks, no
events, no audit, no engine. One route validates the same JSON body and writes one row to
``bench_orders`` in its own transaction (BEGIN, INSERT, COMMIT) through one aiosqlite connection
with Tradestack's pragmas (WAL, synchronous=NORMAL), and answers 201 with the stored order.

    BENCH_SQLITE_PATH=/tmp/x/bare.db .venv/bin/uvicorn bare_orders_sqlite_app:app --app-dir benchmarks
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import aiosqlite
import orjson
from bare_orders_app import OrderIn
from fastapi import FastAPI
from starlette.responses import Response

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS bench_orders (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, client_order_id TEXT NOT NULL, symbol TEXT NOT NULL,
    side TEXT NOT NULL, type TEXT NOT NULL, time_in_force TEXT NOT NULL, quantity TEXT NOT NULL,
    limit_price TEXT, stop_price TEXT, status TEXT NOT NULL, created_at TEXT NOT NULL,
    UNIQUE (account_id, client_order_id)
)
"""
INSERT_SQL = (
    "INSERT INTO bench_orders (id, account_id, client_order_id, symbol, side, type, time_in_force, quantity, "
    "limit_price, stop_price, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'accepted', ?)"
)

connection: aiosqlite.Connection | None = None
lock = asyncio.Lock()  # one connection: one transaction at a time


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global connection
    connection = await aiosqlite.connect(os.environ["BENCH_SQLITE_PATH"], isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000"):
        await connection.execute(f"PRAGMA {pragma}")
    await connection.execute(TABLE_SQL)
    try:
        yield
    finally:
        await connection.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@app.post("/api/orders", status_code=201)
async def submit(body: OrderIn) -> Response:
    assert connection is not None  # noqa: S101 - set by the lifespan
    order_id, now = str(uuid.uuid4()), datetime.now(UTC)
    limit = str(body.limit_price) if body.limit_price is not None else None
    stop = str(body.stop_price) if body.stop_price is not None else None
    async with lock:
        await connection.execute("BEGIN")
        try:
            await connection.execute(
                INSERT_SQL, (order_id, body.account_id, body.client_order_id, body.symbol, body.side, body.type,
                             body.time_in_force, str(body.quantity), limit, stop, now.isoformat()),
            )  # fmt: skip
        except BaseException:
            await connection.execute("ROLLBACK")
            raise
        await connection.execute("COMMIT")
    out = {"id": order_id, "account_id": body.account_id, "client_order_id": body.client_order_id, "status": "accepted"}
    return Response(orjson.dumps(out), status_code=201, media_type="application/json")
