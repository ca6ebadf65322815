"""Health, readiness and version, computed from the live backends."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from functools import lru_cache
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

import tradestack
from tradestack.core.clock import Clock
from tradestack.kit import migrations
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import MarketDataService
from tradestack.models.instance import Instance
from tradestack.ops.repository import InstanceRepository
from tradestack.ops.schemas import Check, DatabaseEndpoint, DatabaseHealth, PoolUsage, Readiness, Version

CHECK_TIMEOUT_SECONDS = 2.0


@lru_cache(maxsize=1)
def git_sha_of_source() -> str | None:
    """The commit of the source tree this package runs from, when it is a git checkout."""
    git = shutil.which("git")
    source = Path(__file__).resolve().parents[3]
    if git is None or not (source / ".git").exists():
        return None
    try:
        out = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            [git, "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class HealthService:
    """Answers /api/ready, /api/health/database and /api/version."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def _timed(self, name: str, probe: asyncio.Future[object] | object) -> Check:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)  # type: ignore[arg-type]
        except TimeoutError:
            return Check(ok=False, detail=f"{name} did not answer within {CHECK_TIMEOUT_SECONDS:g} s")
        except Exception as exc:  # noqa: BLE001 - any failure of a dependency is a failed check
            return Check(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
        return Check(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 3))

    async def migrations_check(self) -> Check:
        try:
            current = await asyncio.wait_for(migrations.current_revisions(self.runtime.database.engine), CHECK_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001
            return Check(ok=False, detail=f"cannot read the schema revision: {type(exc).__name__}: {exc}"[:300])
        head = migrations.head_revisions()
        if set(current) != set(head):
            return Check(
                ok=False,
                detail=(
                    f"database is at {','.join(current) or 'no revision'}, this version needs {','.join(head)}: "
                    "run `tradestack db upgrade`"
                ),
            )
        return Check(ok=True)

    async def marketdata_check(self) -> Check:
        """Fresh market data: some feed published within `marketdata_stale_seconds`."""
        limit = self.runtime.settings.marketdata_stale_seconds
        try:
            age = await asyncio.wait_for(MarketDataService(self.runtime).feed_age_seconds(), CHECK_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001
            return Check(ok=False, detail=f"cannot read the feed heartbeat: {type(exc).__name__}: {exc}"[:300])
        if age is None:
            return Check(ok=False, detail="no market data published yet (is `tradestack serve marketdata` running?)")
        if age > limit:
            return Check(ok=False, detail=f"market data is stale: last published {age:.1f} s ago (limit {limit:g} s)")
        return Check(ok=True, detail=f"last published {age:.2f} s ago")

    async def dependencies(self, *, marketdata: bool) -> dict[str, Check]:
        """What a worker process (engine, marketdata) needs: database, cache, schema at head, optionally fresh feeds."""
        database, cache, schema = await asyncio.gather(
            self._timed("database", self.runtime.database.ping()),
            self._timed("cache", self.runtime.cache.ping()),
            self.migrations_check(),
        )
        checks = {"database": database, "cache": cache, "migrations": schema}
        if marketdata:
            checks["marketdata"] = await self.marketdata_check()
        return checks

    async def readiness(self, *, draining: bool) -> Readiness:
        database, cache, schema = await asyncio.gather(
            self._timed("database", self.runtime.database.ping()),
            self._timed("cache", self.runtime.cache.ping()),
            self.migrations_check(),
        )
        checks = {"database": database, "cache": cache, "migrations": schema}
        if self.runtime.settings.marketdata_feeds:
            checks["marketdata"] = await self.marketdata_check()
        if draining:
            checks["draining"] = Check(ok=False, detail="shutting down: finishing in-flight requests")
        failing = {name for name, check in checks.items() if not check.ok}
        if failing == {"cache"}:
            # Degraded, still serving: auth reads the database, limits count in process (kit/outages.py).
            checks["cache"] = Check(ok=False, detail=f"degraded: {cache.detail}")
            return Readiness(status="degraded", checks=checks)
        return Readiness(status="not_ready" if failing else "ready", checks=checks)

    async def _endpoint(self, *, replica: bool) -> DatabaseEndpoint:
        database = self.runtime.database
        engine = database.replica_engine if replica and database.replica_engine is not None else database.engine
        pool = PoolUsage(**database.pool_status(replica=replica).__dict__)
        try:
            latency = await asyncio.wait_for(database.ping(replica=replica), CHECK_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001
            return DatabaseEndpoint(ok=False, dialect=engine.dialect.name, pool=pool, detail=f"{type(exc).__name__}: {exc}"[:300])
        return DatabaseEndpoint(ok=True, dialect=engine.dialect.name, latency_ms=round(latency * 1000, 3), pool=pool)

    async def database_health(self) -> DatabaseHealth:
        primary = await self._endpoint(replica=False)
        replica = await self._endpoint(replica=True) if self.runtime.database.replica_engine is not None else None
        ok = primary.ok and (replica is None or replica.ok)
        return DatabaseHealth(status="ok" if ok else "degraded", primary=primary, replica=replica)

    async def version(self) -> Version:
        try:
            current = await asyncio.wait_for(migrations.current_revisions(self.runtime.database.engine), CHECK_TIMEOUT_SECONDS)
        except Exception:  # noqa: BLE001 - version must answer even when the database is down
            current = ()
        settings = self.runtime.settings
        return Version(
            version=tradestack.__version__,
            git_sha=settings.git_sha or git_sha_of_source(),
            schema_revision=",".join(current) or None,
            schema_head=",".join(migrations.head_revisions()),
            environment=settings.environment,
        )


class InstanceService:
    """The installation's identity, created by the first seed."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.repository = InstanceRepository(session)
        self.clock = clock

    async def ensure_seeded(self, name: str = "tradestack") -> Instance:
        """Create the identity row on first run; later runs only record the time."""
        now = self.clock.now()
        instance = await self.repository.get()
        if instance is None:
            return await self.repository.add(Instance(id=str(uuid.uuid4()), name=name, created_at=now, seeded_at=now))
        instance.seeded_at = now
        await self.repository.session.flush()
        return instance
