"""The baseline of quotes_api.py: a bare FastAPI app serving the cached quotes, nothing else.

No authentication, no middleware, no rate limiting, no logging: one route that does what the
Tradestack endpoint does at its core (split the symbols, one Redis MGET of the
``<namespace>:cache:md:quote:<SYMBOL>`` keys, splice the stored JSON bytes into
``{"quotes":[...],"unavailable":[...]}``). Redis is BENCH_REDIS_URL (default db 13), the key
namespace BENCH_REDIS_NAMESPACE (Tradestack's TRADESTACK_REDIS_NAMESPACE, default "ts").

    .venv/bin/uvicorn bare_quotes_app:app --app-dir benchmarks --workers 2 --no-access-log
"""

from __future__ import annotations

import os

import orjson
import redis.asyncio
from fastapi import FastAPI
from starlette.responses import Response

QUOTE_PREFIX = os.environ.get("BENCH_REDIS_NAMESPACE", "ts") + ":cache:md:quote:"

app = FastAPI()
client = redis.asyncio.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))


@app.get("/api/market/quotes")
async def quotes(symbols: str) -> Response:
    wanted = list(dict.fromkeys(part.strip().upper() for part in symbols.split(",") if part.strip()))
    values = await client.mget([QUOTE_PREFIX + symbol for symbol in wanted])
    found = [value for value in values if isinstance(value, bytes)]
    missing = [symbol for symbol, value in zip(wanted, values, strict=True) if value is None]
    body = b'{"quotes":[' + b",".join(found) + b'],"unavailable":' + orjson.dumps(missing) + b"}"
    return Response(body, media_type="application/json")
