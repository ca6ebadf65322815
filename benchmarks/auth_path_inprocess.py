"""CPU per authenticated GET /api/market/quotes through the whole ASGI stack, in one process, no HTTP server.

    .venv/bin/python benchmarks/auth_path_inprocess.py embedded|production [--requests 500]

On a loaded shared machine wall-clock throughput swings several-fold between runs; the CPU
time this process spends per request (client + app, ``time.process_time``) is far steadier, so
this is the figure to compare. To compare with an older checkout, run the same script with
``PYTHONPATH=<old checkout>/src`` in the same session (alternating). embedded: SQLite +
in-process limiter and cache; production: a throwaway PostgreSQL database and Redis db 3
(``--redis-url``). The limits are raised so that nothing is refused; feeds are off. The last
line is ``RESULT name=auth_path_inprocess mode=... cpu_us_per_req=... req_per_s=... ratio=1``
(no baseline inside: the ratio is the one between two runs).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
from pydantic import SecretStr

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
                status = (await http.get(PATH, headers=headers)).status_code
                for _ in range(200):
                    await http.get(PATH, headers=headers)
                best, cpu = 0.0, []
                for _ in range(3):
                    wall, used = time.perf_counter(), time.process_time()
                    for _ in range(requests):
                        await http.get(PATH, headers=headers)
                    best = max(best, requests / (time.perf_counter() - wall))
                    cpu.append((time.process_time() - used) / requests * 1e6)
        print(
            f"RESULT name=auth_path_inprocess mode={mode} status={status} cpu_us_per_req={min(cpu):.0f} "
            f"req_per_s={best:.0f} ratio=1"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if database is not None:
            admin = await asyncpg.connect(ADMIN_URL)
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["embedded", "production"])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    args = parser.parse_args()
    asyncio.run(run(args.mode, args.requests, args.redis_url))


if __name__ == "__main__":
    main()
