"""Everything a process needs at run time, opened once and closed once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from tradestack.core.clock import Clock, LiveClock
from tradestack.kit.bus import Bus, MemoryBus, create_bus
from tradestack.kit.cache import Cache, MemoryCache, create_cache
from tradestack.kit.config import Settings
from tradestack.kit.crypto import Keyring, configure_keyring
from tradestack.kit.db import Database
from tradestack.kit.logging import get_logger
from tradestack.kit.ratelimit import RateLimiter, create_rate_limiter
from tradestack.kit.secrets import with_generated_secrets

log = get_logger(__name__)
T = TypeVar("T")
CLOSE_STEP_SECONDS = 15.0
"""How long one step of `Runtime.close` may take before it is abandoned (named in a warning), so a
background task that does not stop can never hang the shutdown of the process (or a test)."""


async def _bounded(step: str, work: Awaitable[None]) -> None:
    try:
        await asyncio.wait_for(work, timeout=CLOSE_STEP_SECONDS)
    except TimeoutError:
        log.warning("runtime_close_step_abandoned", step=step, seconds=CLOSE_STEP_SECONDS)


class Slot(Generic[T]):
    """A typed key of `Runtime.components`: one per kind of long-lived per-process object.

    Each module declares its own (``DESK: Slot[OrderDesk] = Slot("trading.desk")``), so what a slot
    holds is known to the type checker and no caller casts or checks `isinstance`.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Slot({self.name!r})"


class Components:
    """Long-lived per-process objects of modules (identity's hasher, the desk, the hub…), by typed slot."""

    def __init__(self) -> None:
        self._items: dict[Slot[Any], object] = {}

    def get(self, slot: Slot[T]) -> T | None:
        """What `slot` holds, or None before it was first set."""
        return cast("T | None", self._items.get(slot))

    def put(self, slot: Slot[T], value: T) -> T:
        """Set (or replace) what `slot` holds; returns it."""
        self._items[slot] = value
        return value

    def pop(self, slot: Slot[T]) -> T | None:
        """Empty `slot`; returns what it held (None when it held nothing)."""
        return cast("T | None", self._items.pop(slot, None))

    def get_or_create(self, slot: Slot[T], create: Callable[[], T]) -> T:
        """What `slot` holds, created by `create` on first use."""
        if slot in self._items:
            return cast("T", self._items[slot])
        return self.put(slot, create())

    def __contains__(self, slot: Slot[Any]) -> bool:
        return slot in self._items


class OwnersClock:
    """A twin's clock: whichever clock its owner runtime has at the time (a test may replace it)."""

    def __init__(self, owner: Runtime) -> None:
        self._owner = owner

    def now(self) -> datetime:
        return self._owner.clock.now()

    def monotonic(self) -> float:
        return self._owner.clock.monotonic()


@dataclass
class Runtime:
    """Settings, clock, database, cache, bus and rate limiter of one process."""

    settings: Settings
    database: Database
    cache: Cache
    bus: Bus
    rate_limiter: RateLimiter
    clock: Clock = field(default_factory=LiveClock)
    # Long-lived per-process objects of modules (e.g. identity's password hasher), created on first use.
    components: Components = field(default_factory=Components)
    # Run by `close`, newest first, before the backends close (background tasks, hubs).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock | None = None) -> Runtime:
        """Create the backends the settings select (nothing connects until first use).

        Secrets left unset come from (or are first generated into) the data directory.
        """
        settings = with_generated_secrets(settings)
        configure_keyring(Keyring.from_settings(settings))
        return cls(
            settings=settings,
            database=Database(settings),
            cache=create_cache(settings.redis_url, prefix=f"{settings.redis_namespace}:cache:"),
            bus=create_bus(settings.redis_url, prefix=f"{settings.redis_namespace}:bus:"),
            rate_limiter=create_rate_limiter(settings.redis_url, key_prefix=f"{settings.redis_namespace}:ratelimit"),
            clock=clock or LiveClock(),
        )

    # The runtime this one is a `twin` of: its in-process bus and cache are borrowed, never closed here.
    owner: Runtime | None = None

    def twin(self) -> Runtime:
        """A runtime for a thread of this process that runs its own event loop (the embedded engine's).

        Connections belong to the loop that opened them, so the twin has its own database engines
        (sharing the SQLite writer lock, see `Database.twin`), Redis clients when the backends are
        Redis, and components of its own. The in-process bus and cache have no connections and are
        shared (the bus hands messages between loops; the cache's reads are thread-safe). Create it
        on the owner's loop; use and `close` it on the thread's loop only.
        """
        settings = self.settings
        memory_bus, memory_cache = isinstance(self.bus, MemoryBus), isinstance(self.cache, MemoryCache)
        if not (memory_bus and memory_cache) and settings.redis_url is None:
            raise RuntimeError("a runtime with Redis backends but no TRADESTACK_REDIS_URL cannot be twinned")
        namespace = settings.redis_namespace
        return Runtime(
            settings=settings,
            database=self.database.twin(),
            cache=self.cache if memory_cache else create_cache(settings.redis_url, prefix=f"{namespace}:cache:"),
            bus=self.bus if memory_bus else create_bus(settings.redis_url, prefix=f"{namespace}:bus:"),
            rate_limiter=create_rate_limiter(None),  # a twin serves no requests
            clock=OwnersClock(self),
            owner=self,
        )

    async def close(self) -> None:
        """Stop background work (newest first), then release every connection (not those borrowed from `owner`)."""
        while self.closers:
            closer = self.closers.pop()
            await _bounded(getattr(closer, "__qualname__", repr(closer)), closer())
        owner = self.owner
        if owner is None or self.bus is not owner.bus:
            await _bounded("bus", self.bus.close())
        if owner is None or self.cache is not owner.cache:
            await _bounded("cache", self.cache.close())
        await _bounded("rate_limiter", self.rate_limiter.close())
        await _bounded("database", self.database.dispose())
