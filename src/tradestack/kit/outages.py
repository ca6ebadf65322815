"""What counts as a backend outage, and the degraded mode each caller falls back to.

An outage is an expected situation, never a 500:

* Redis (cache, rate limits, streams, pub/sub) away: authentication reads the database
  (revocation included), rate limits count in process, an order already committed is answered
  as committed (the engine's reconciliation picks it up), the engine and feeds reconnect with
  backoff; readiness says the cache is degraded but stays ready. What needs the cache's live
  values (order entry's risk checks need quotes) answers 503 with ``Retry-After`` until it is back.
* The database away: requests are answered 503 with ``Retry-After`` (nothing can be promised
  without it); they work again as soon as it is back.

Every degraded answer counts in ``backend_unavailable_total{backend, operation}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal

import asyncpg  # type: ignore[import-untyped]
import redis.exceptions
import sqlalchemy.exc

from tradestack.kit.logging import get_logger
from tradestack.kit.metrics import BACKEND_UNAVAILABLE, BACKGROUND_TASK_FAILURES

log = get_logger(__name__)
Backend = Literal["database", "cache"]
RETRY_AFTER_SECONDS = 2
# Redis unreachable (refused, reset, timed out, pool exhausted).
CACHE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)
_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection within the pool timeout
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what caused it (``__cause__``, else ``__context__``), and so on, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def unavailable_backend(exc: BaseException) -> Backend | None:
    """Which backend `exc` (or what caused it) says is unreachable; None for anything else (a bug)."""
    for current in causes(exc):
        if isinstance(current, redis.exceptions.RedisError) and isinstance(current, CACHE_ERRORS):
            return "cache"
        if isinstance(current, _DATABASE_ERRORS):
            return "database"
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return "database"
        if isinstance(current, OSError):
            # redis-py wraps its socket errors; a bare one comes from connecting to the database.
            return "database"
    return None


def is_pool_exhausted(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is the connection pool's checkout timeout: every pooled connection
    stayed busy for the pool timeout. The database answers; this process is overloaded (503, not an outage)."""
    return any(isinstance(current, sqlalchemy.exc.TimeoutError) for current in causes(exc))


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is PostgreSQL's lock timeout (SQLSTATE 55P03): a statement waited longer
    than ``lock_timeout`` for a row another transaction holds. Expected under contention: the answer is 503."""
    for current in causes(exc):
        if getattr(current, "sqlstate", None) == "55P03":
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError) and (
            getattr(current.orig, "sqlstate", None) == "55P03" or "lock timeout" in str(current.orig).lower()
        ):
            return True
    return False


def count_outage(backend: Backend, operation: str, exc: BaseException) -> None:
    """Count (and log once per call) that `operation` ran degraded because `backend` is away."""
    BACKEND_UNAVAILABLE.labels(backend=backend, operation=operation).inc()
    log.warning("backend_unavailable", backend=backend, operation=operation, error=f"{type(exc).__name__}: {exc}"[:300])


def count_failure(task: str, exc: BaseException, event: str = "background_task_failed", **context: Any) -> Backend | None:
    """What a background task (a loop that must go on) does with a failure: an outage counts as one (`count_outage`,
    operation `task`); a lock timeout is contention, logged as a warning; anything else is a bug: counted in
    ``background_task_failures_total{task}`` (alert `TradestackBackgroundTaskFailing`) and `event` logged as an error
    with its traceback (and `context`). Returns the backend away."""
    backend = unavailable_backend(exc)
    if backend is not None:
        count_outage(backend, task, exc)
    elif is_lock_timeout(exc):  # contention (as the API answers it: 503, retry), neither an outage nor a bug
        log.warning(event, task=task, error=f"{type(exc).__name__}: {exc}"[:300], contention="lock timeout", **context)
    else:
        BACKGROUND_TASK_FAILURES.labels(task=task).inc()
        log.error(event, task=task, error=f"{type(exc).__name__}: {exc}"[:300], exc_info=exc, **context)
    return backend


async def forever(name: str, work: Callable[[], Awaitable[None]], *, initial: float = 0.2, cap: float = 10.0) -> None:
    """Run `work` again after every failure, waiting `initial` doubling up to `cap` seconds; never returns.

    A task that ends normally is restarted too (a subscription ended by a lost connection); one that fails is counted
    (`count_failure`: an outage as an outage, anything else as a bug) and retried all the same.
    """
    delay = initial
    while True:
        try:
            await work()
            delay = initial
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a lost connection, or a bug (count_failure logs it), must not stop it
            count_failure(name, exc)
        await asyncio.sleep(delay)
        delay = min(cap, delay * 2)
