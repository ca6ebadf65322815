"""What endpoints of every module share: dependencies, the error body, orjson responses, drain state.

Endpoints import from here, never from `tradestack.api` (which sits above the modules).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import Scope

from tradestack.core.money import plain
from tradestack.kit.logging import get_logger
from tradestack.kit.runtime import Runtime

log = get_logger(__name__)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class OrjsonResponse(JSONResponse):
    """A JSON response serialised by orjson (Decimal as string, datetimes as ISO 8601)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default)


def error_body(error: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The error shape every endpoint uses: ``{"error": "<ErrorClass>", "detail": "<what to fix>", …}``."""
    return {"error": error, "detail": detail, **extra}


class DrainState:
    """Whether this process is shutting down (readiness answers 503 while it is)."""

    def __init__(self) -> None:
        self.draining = False

    def begin(self) -> None:
        """Mark the process as draining (idempotent)."""
        if not self.draining:
            self.draining = True
            log.info("drain_started")


async def get_runtime(request: Request) -> Runtime:
    """The process's runtime (async: FastAPI would run a plain function in its threadpool, per request)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_drain(request: Request) -> DrainState:
    """The process's drain state (async, like `get_runtime`)."""
    drain: DrainState = request.app.state.drain
    return drain


async def get_session(runtime: Annotated[Runtime, Depends(get_runtime)]) -> AsyncIterator[AsyncSession]:
    """A read-write session; the request owns the transaction and it commits before the response is sent."""
    async with runtime.database.session() as session:
        yield session


async def get_read_session(runtime: Annotated[Runtime, Depends(get_runtime)]) -> AsyncIterator[AsyncSession]:
    """A read-only session, on the replica when one is configured."""
    async with runtime.database.read_session() as session:
        yield session


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
DrainDep = Annotated[DrainState, Depends(get_drain)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]


def routes_of(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, with included routers flattened (FastAPI keeps an included router as one entry)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from routes_of(inner.routes)
        else:
            yield route


HotHandler = Callable[[Request], Awaitable[Response | None]]
"""The hot path of a route: its answer to a request, or None to let the route itself (FastAPI) answer."""

HOT_PATH_ATTRIBUTE = "__tradestack_hot_path__"
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def hot_path(handler: HotHandler) -> Callable[[_Endpoint], _Endpoint]:
    """Give a route a hot path: ``handler`` answers its requests without FastAPI's routing and dependency solving.

    Put it under the route decorator. The route stays declared as it is (OpenAPI, the full path).
    ``handler`` must answer exactly as the route would, errors included (it raises the same
    `TradestackError`s), or return None to hand the request to the route (before it has done
    anything the route would do again, except reading the body, which is replayed): a request
    that is in any way unusual (another query parameter, a body that does not validate) is
    best handed over. `tradestack.api.hot` installs the dispatcher.
    """

    def mark(endpoint: _Endpoint) -> _Endpoint:
        setattr(endpoint, HOT_PATH_ATTRIBUTE, handler)
        return endpoint

    return mark


def hot_path_of(endpoint: Callable[..., Any]) -> HotHandler | None:
    """The hot path `hot_path` gave an endpoint, if any."""
    handler = getattr(endpoint, HOT_PATH_ATTRIBUTE, None)
    return handler if callable(handler) else None


_Body = TypeVar("_Body", bound=BaseModel)


async def hot_body(request: Request, model: type[_Body]) -> _Body | None:
    """A hot path's request body: plain JSON (``Content-Type: application/json``) of a valid `model`, else None.

    FastAPI reads and parses the body first, then authenticates, then validates it: a hot path hands
    anything else to the route (return None), which refuses it in its own words."""
    if request.headers.get("content-type") != "application/json":
        return None
    try:
        return model.model_validate(orjson.loads(await request.body()))
    except (orjson.JSONDecodeError, ValidationError):
        return None


@dataclass(frozen=True, slots=True)
class CallerLimit:
    """A route's own limit per caller (API key or user), on top of the per-principal limit every route has.

    Counted under the identifiers ``(label, "<key|user>:<id>")``; refused with 429
    ``RateLimitedError`` and ``Retry-After``; labelled ``label`` in ``rate_limited_requests_total``.
    A ``rate_limit_routes`` entry for the route replaces it (and the per-principal limit).
    """

    label: str
    limit: str


CALLER_LIMIT_ATTRIBUTE = "__tradestack_caller_limit__"


def caller_limit(label: str, limit: str) -> Callable[[_Endpoint], _Endpoint]:
    """Give a route a `CallerLimit` (put it under the route decorator; the route counts it with
    `tradestack.identity.deps.count_caller_limit`). The rate-limit middleware counts a bearer
    request's in its one round trip with the IP and principal limits, so the route does no I/O for it."""

    def mark(endpoint: _Endpoint) -> _Endpoint:
        setattr(endpoint, CALLER_LIMIT_ATTRIBUTE, CallerLimit(label, limit))
        return endpoint

    return mark


def caller_limits_of(routes: Iterable[BaseRoute]) -> dict[tuple[str, str], CallerLimit]:
    """The `CallerLimit` of every route that has one, by (method, path); routes with path parameters left out."""
    return _marks_of(routes, CALLER_LIMIT_ATTRIBUTE, CallerLimit)


CacheKeysOf = Callable[[Scope], "list[str] | None"]
"""The cache keys a request will read (unprefixed), worked out from its scope alone; None when unusual."""

CACHE_PREFETCH_ATTRIBUTE = "__tradestack_cache_prefetch__"
PREFETCHED_STATE = "cache_prefetched"
"""Key in the request state (``scope["state"]``) of the values `cache_prefetch` read: {key: value or None}."""


@dataclass(frozen=True, slots=True)
class CachePrefetch:
    keys_of: CacheKeysOf


def cache_prefetch(keys_of: CacheKeysOf) -> Callable[[_Endpoint], _Endpoint]:
    """Have the rate-limit middleware read the cache keys ``keys_of(scope)`` in its one Redis round trip.

    For a read-only route whose answer is cache values (quotes): on Redis the request then costs
    one round trip, not two; the route finds the values with `prefetched`. Nothing is read in
    process (the in-process cache costs no I/O). The values are read before the caller is
    authenticated; the route answers with them only once it has checked the caller, as always.
    """

    def mark(endpoint: _Endpoint) -> _Endpoint:
        setattr(endpoint, CACHE_PREFETCH_ATTRIBUTE, CachePrefetch(keys_of))
        return endpoint

    return mark


def cache_prefetches_of(routes: Iterable[BaseRoute]) -> dict[tuple[str, str], CachePrefetch]:
    """The `cache_prefetch` of every route that has one, by (method, path); routes with path parameters left out."""
    return _marks_of(routes, CACHE_PREFETCH_ATTRIBUTE, CachePrefetch)


def prefetched(scope: Scope, keys: Iterable[str]) -> list[bytes | None] | None:
    """The values of ``keys`` the middleware read for this request, in order; None unless it read every one."""
    found: dict[str, bytes | None] | None = scope.get("state", {}).get(PREFETCHED_STATE)
    if not found:
        return None
    values = []
    for key in keys:
        if key not in found:
            return None
        values.append(found[key])
    return values


_Mark = TypeVar("_Mark")


def _marks_of(routes: Iterable[BaseRoute], attribute: str, kind: type[_Mark]) -> dict[tuple[str, str], _Mark]:
    found: dict[tuple[str, str], _Mark] = {}
    for route in routes_of(routes):
        mark = getattr(getattr(route, "endpoint", None), attribute, None)
        path = getattr(route, "path", "{")
        if isinstance(mark, kind) and "{" not in path:
            for method in getattr(route, "methods", None) or ():
                found[(method, path)] = mark
    return found
