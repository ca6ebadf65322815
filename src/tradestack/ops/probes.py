"""Background probes of the process's dependencies, and the external venues' health.

Every `probe_interval_seconds` the probe task sets ``database_up`` and ``redis_up`` (1/0, this
process's own view), the data directory's filesystem gauges and the memory limit, and probes
every configured venue (``broker_connected{venue}``). `/api/health/external` probes the venues
again on demand and reports each one's last success, latency and error.

A venue is required when a feed or broker that trades or prices through it is configured:
today the ccxt exchange of the ``ccxt`` feed. The market-data heartbeat is reported too, but not
required (its staleness is the `TradestackMarketDataStale` alert and a readiness check).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tradestack.kit.aio import stop_tasks, wait_event
from tradestack.kit.logging import get_logger
from tradestack.kit.metrics import (
    BROKER_CONNECTED,
    DATA_DIR_FILESYSTEM_AVAIL,
    DATA_DIR_FILESYSTEM_SIZE,
    DATA_DIR_USED,
    DATABASE_UP,
    MEMORY_LIMIT,
    REDIS_UP,
)
from tradestack.kit.runtime import Runtime, Slot
from tradestack.marketdata.service import MarketDataService
from tradestack.ops.schemas import ExternalHealth, ExternalTarget

log = get_logger(__name__)


@dataclass
class _Memory:
    """Last success per target name, kept for the life of the process."""

    last_success: dict[str, datetime] = field(default_factory=dict)


MEMORY: Slot[_Memory] = Slot("ops.external")


def _memory(runtime: Runtime) -> _Memory:
    return runtime.components.get_or_create(MEMORY, _Memory)


def memory_limit_bytes() -> int | None:
    """The cgroup (v2, then v1) memory limit of this process, else the machine's memory."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            text = Path(path).read_text().strip()
            if text != "max" and int(text) < 1 << 60:
                return int(text)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def directory_bytes(path: Path) -> int:
    """Bytes of the regular files under `path` (symlinks not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def record_resources(data_dir: Path) -> None:
    """Set the data-directory filesystem gauges and the memory limit."""
    with contextlib.suppress(OSError):
        usage = shutil.disk_usage(data_dir)
        DATA_DIR_FILESYSTEM_SIZE.set(usage.total)
        DATA_DIR_FILESYSTEM_AVAIL.set(usage.free)
        DATA_DIR_USED.set(directory_bytes(data_dir))
    limit = memory_limit_bytes()
    if limit is not None:
        MEMORY_LIMIT.set(limit)


async def probe_dependencies(runtime: Runtime) -> dict[str, bool]:
    """Ping the database and (when configured) Redis; set ``database_up`` and ``redis_up``."""
    results: dict[str, bool] = {}
    timeout = runtime.settings.external_probe_timeout_seconds
    try:
        await asyncio.wait_for(runtime.database.ping(), timeout)
        results["database"] = True
    except Exception:  # noqa: BLE001 - any failure means down
        results["database"] = False
    DATABASE_UP.set(1 if results["database"] else 0)
    if runtime.settings.redis_url is not None:
        try:
            await asyncio.wait_for(runtime.cache.ping(), timeout)
            results["redis"] = True
        except Exception:  # noqa: BLE001
            results["redis"] = False
        REDIS_UP.set(1 if results["redis"] else 0)
    return results


def configured_venues(runtime: Runtime) -> list[str]:
    """The venues this installation is configured to reach (``ccxt:<exchange id>``)."""
    settings = runtime.settings
    return [f"ccxt:{settings.ccxt_exchange}"] if "ccxt" in settings.marketdata_feeds else []


async def _probe_ccxt(runtime: Runtime, exchange_id: str) -> None:
    """One public request (the venue's clock, else its markets) through ccxt; raises when unreachable."""
    from tradestack.adapters.ccxt.feed import make_exchange  # imported by `probe_venue` beforehand

    settings = runtime.settings
    config: dict[str, Any] = {"timeout": int(settings.external_probe_timeout_seconds * 1000)}
    exchange = make_exchange(exchange_id, config)
    try:
        if settings.ccxt_api_urls:
            api = exchange.urls.get("api")
            exchange.urls["api"] = {**api, **settings.ccxt_api_urls} if isinstance(api, dict) else dict(settings.ccxt_api_urls)
        if exchange.has.get("fetchTime"):
            await exchange.fetch_time()
        else:
            await exchange.load_markets()
    finally:
        await exchange.close()


async def probe_venue(runtime: Runtime, venue: str) -> ExternalTarget:
    """Probe one venue and set ``broker_connected{venue}``."""
    kind, _, name = venue.partition(":")
    # ccxt takes seconds to import: once, off the event loop, and outside the probe's time budget.
    await asyncio.to_thread(importlib.import_module, "tradestack.adapters.ccxt.feed")
    started = time.perf_counter()
    error: str | None = None
    try:
        if kind != "ccxt":
            raise ValueError(f"unknown venue kind {kind!r}")
        await asyncio.wait_for(_probe_ccxt(runtime, name), runtime.settings.external_probe_timeout_seconds + 1)
    except TimeoutError:
        error = f"no answer within {runtime.settings.external_probe_timeout_seconds:g} s"
    except Exception as exc:  # noqa: BLE001 - any failure of the venue is reported, never raised
        error = f"{type(exc).__name__}: {exc}"[:300]
    latency = round((time.perf_counter() - started) * 1000, 3)
    now = runtime.clock.now()
    memory = _memory(runtime)
    if error is None:
        memory.last_success[venue] = now
    BROKER_CONNECTED.labels(venue=venue).set(0 if error else 1)
    return ExternalTarget(
        name=venue,
        kind="venue",
        required=True,
        ok=error is None,
        latency_ms=latency if error is None else None,
        last_success=memory.last_success.get(venue),
        checked_at=now,
        error=error,
    )


async def _feed_target(runtime: Runtime) -> ExternalTarget:
    now = runtime.clock.now()
    limit = runtime.settings.marketdata_stale_seconds
    try:
        age = await MarketDataService(runtime).feed_age_seconds()
    except Exception as exc:  # noqa: BLE001
        return ExternalTarget(
            name="marketdata", kind="feed", required=False, ok=False, checked_at=now, error=f"{type(exc).__name__}: {exc}"[:300]
        )
    if age is not None and age <= limit:
        _memory(runtime).last_success["marketdata"] = now
    error = None
    if age is None:
        error = "no market data published yet"
    elif age > limit:
        error = f"last published {age:.1f} s ago (limit {limit:g} s)"
    return ExternalTarget(
        name="marketdata",
        kind="feed",
        required=False,
        ok=error is None,
        last_success=_memory(runtime).last_success.get("marketdata"),
        checked_at=now,
        error=error,
    )


async def external_health(runtime: Runtime) -> ExternalHealth:
    """Probe every configured venue now (concurrently) and report them with the feeds' state."""
    targets = list(await asyncio.gather(*(probe_venue(runtime, venue) for venue in configured_venues(runtime))))
    if runtime.settings.marketdata_feeds:
        targets.append(await _feed_target(runtime))
    ok = all(target.ok for target in targets if target.required)
    return ExternalHealth(status="ok" if ok else "degraded", targets=targets)


async def probe_once(runtime: Runtime) -> None:
    """One round of every background probe."""
    await probe_dependencies(runtime)
    await asyncio.to_thread(record_resources, runtime.settings.data_dir)
    for venue in configured_venues(runtime):
        await probe_venue(runtime, venue)


async def start_probes(runtime: Runtime) -> None:
    """Run `probe_once` now and then every `probe_interval_seconds` until the runtime closes."""
    interval = runtime.settings.probe_interval_seconds
    stopping = asyncio.Event()

    async def loop() -> None:
        while not stopping.is_set():
            try:
                await probe_once(runtime)
            except Exception:  # a probe must never kill the process
                log.exception("background probe failed")
            await wait_event(stopping, interval)

    task = asyncio.create_task(loop(), name="tradestack-probes")

    async def stop() -> None:
        # The event ends the loop even when a cancellation is swallowed inside a probe's Redis call (it was:
        # every such stop then waited out Runtime.close's 15 s step bound).
        stopping.set()
        await stop_tasks([task], "background probes")

    runtime.closers.append(stop)
