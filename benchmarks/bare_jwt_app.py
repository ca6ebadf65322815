"""The baseline of quotes_embedded.py: a minimal FastAPI route behind a JWT bearer dependency.

One process, no middleware, no rate limiting, no logging: an ``HTTPBearer`` dependency decodes
the token with PyJWT (HS256, audience and issuer checked, as Tradestack's own tokens are) and
the route answers fixed quote bytes (BENCH_QUOTES_BODY, the body Tradestack answered).

    BENCH_JWT_SECRET=... .venv/bin/uvicorn bare_jwt_app:app --app-dir benchmarks --no-access-log
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

SECRET = os.environ.get("BENCH_JWT_SECRET", "")
AUDIENCE, ISSUER = "bench", "bench"
BODY = os.environ.get("BENCH_QUOTES_BODY", '{"quotes":[],"unavailable":[]}').encode()

app = FastAPI()
bearer = HTTPBearer()


async def claims(credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]) -> dict[str, Any]:
    try:
        decoded: dict[str, Any] = jwt.decode(
            credentials.credentials, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER
        )
    except jwt.PyJWTError as exc:
        raise HTTPException(401, "invalid token") from exc
    return decoded


@app.get("/api/market/quotes")
async def quotes(symbols: str, _: Annotated[dict[str, Any], Depends(claims)]) -> Response:
    return Response(BODY, media_type="application/json")
