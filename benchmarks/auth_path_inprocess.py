"""CPU per authenticated GET /api/market/quotes through the whole ASGI stack, in one process, no HTTP server.

    .venv/bin/python benchmarks/auth_path_inprocess.py embedded|production [--requests 500]

On a loaded shared machine wall-clock throughput swings several-fold between runs; the CPU
time this process spends per request (client + app, ``time.process_time``) is far steadier, so
this is the figure to compare. To compare with an older checkout, run the same script with
``PYTHONPATH=<old checkout>/src`` in the same session (alternating). embedded: SQLite +
in-process limiter and cache; production: a throwaway PostgreSQL database and Redis db 3
(``--redis-url``). The limits are raised so that nothing is refused; feeds are off.

The baseline, in the same process and rounds (alternating): the same request through
benchmarks/bare_jwt_app.py (a minimal FastAPI route behind a PyJWT bearer dependency, answering
the body Tradestack answered). The last line is ``RESULT name=auth_path_inprocess mode=...
cpu_us_per_req=... baseline_cpu_us_per_req=... ratio=<baseline CPU / Tradestack CPU per request>``
(medians of the rounds; 1 would be the bare route's cost).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
from pydantic import SecretStr
from quotes_embedded import bare_token

from tradestack.api.app import create_app
from tradestack.identity.permissions import Role
from tradestack.identity.service import Caller, identity_session
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PATH = "/api/market/quotes?symbols=AAPL,MSFT"
UNLIMITED = "100000000/minute"


async def run(mode: str, requests: int, redis_url: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    database = None
    if mode == "production":
        database = f"bench_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(ADMIN_URL)
        await admin.execute(f'CREATE DATABASE "{database}"')
        await admin.close()
        url, redis = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}", redis_url
    else:
        url, redis = f"sqlite+aiosqlite:///{tmp}/bench.db", None
    settings = Settings(
        database_url=url,
        redis_url=redis,
        redis_namespace=f"bench{uuid.uuid4().hex[:8]}",
        data_dir=tmp,
        secret_key=SecretStr(secrets.token_urlsafe(48)),
        log_level="warning",
        marketdata_feeds=[],
        rate_limit_per_ip=UNLIMITED,
        rate_limit_per_principal=UNLIMITED,
    )  # type: ignore[call-arg]
    db = Database(settings)
    await migrations.upgrade(db.engine)
    await db.dispose()
    app = create_app(settings)
    password = secrets.token_urlsafe(18)
    try:
        async with app.router.lifespan_context(app):
            async with identity_session(app.state.runtime, Caller()) as service:
                await service.create_user("bench@example.com", password, Role.TRADER)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                login = await http.post("/api/auth/login", json={"email": "bench@example.com", "password": password})
                headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
                answer = await http.get(PATH, headers=headers)
                bare, bare_headers = _bare_client(answer.content)
                async with bare:
                    if (await bare.get(PATH, headers=bare_headers)).status_code != 200:
                        raise RuntimeError("the bare JWT app refuses its own token")
                    for _ in range(200):
                        await http.get(PATH, headers=headers)
                        await bare.get(PATH, headers=bare_headers)
                    rounds = []
                    for _ in range(3):  # alternating: Tradestack, then the bare route
                        rounds.append((await _round(http, headers, requests), await _round(bare, bare_headers, requests)))
        ours = statistics.median(cpu for (cpu, _), _ in rounds)
        ours_rate = statistics.median(rate for (_, rate), _ in rounds)
        baseline = statistics.median(cpu for _, (cpu, _) in rounds)
        baseline_rate = statistics.median(rate for _, (_, rate) in rounds)
        print(
            f"RESULT name=auth_path_inprocess mode={mode} status={answer.status_code} cpu_us_per_req={ours:.0f} "
            f"req_per_s={ours_rate:.0f} baseline_cpu_us_per_req={baseline:.0f} baseline_req_per_s={baseline_rate:.0f} "
            f"ratio={baseline / ours:.3f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if database is not None:
            admin = await asyncpg.connect(ADMIN_URL)
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.close()


def _bare_client(body: bytes) -> tuple[httpx.AsyncClient, dict[str, str]]:
    """An in-process client of bare_jwt_app answering `body`, and a token it accepts."""
    secret = secrets.token_urlsafe(48)
    os.environ["BENCH_JWT_SECRET"], os.environ["BENCH_QUOTES_BODY"] = secret, body.decode()
    import bare_jwt_app  # reads its secret and body when imported

    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=bare_jwt_app.app), base_url="http://testserver")
    return client, {"Authorization": f"Bearer {bare_token(secret)}"}


async def _round(http: httpx.AsyncClient, headers: dict[str, str], requests: int) -> tuple[float, float]:
    """`requests` GETs one after the other: CPU microseconds per request, and requests per second of wall time."""
    wall, used = time.perf_counter(), time.process_time()
    for _ in range(requests):
        await http.get(PATH, headers=headers)
    return (time.process_time() - used) / requests * 1e6, requests / (time.perf_counter() - wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["embedded", "production"])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    args = parser.parse_args()
    asyncio.run(run(args.mode, args.requests, args.redis_url))


if __name__ == "__main__":
    main()
