"""Who is calling: bearer token or X-API-Key, and per-endpoint permission checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from tradestack.core.errors import AuthenticationError, PermissionDeniedError
from tradestack.identity.permissions import Permission
from tradestack.identity.service import (
    Caller,
    IdentityService,
    Principal,
    components,
    remembered_api_key,
    revoked_key,
    user_state_key,
)
from tradestack.identity.tokens import InvalidTokenError, TokenClaims
from tradestack.kit.cache import MemoryCache
from tradestack.kit.metrics import AUTH_FAILURES
from tradestack.kit.ratelimit import check_limit, headers_or_refusal
from tradestack.kit.runtime import Runtime
from tradestack.kit.web import CallerLimit

BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tradestack"'}
"""The challenge of a request without bearer credentials (RFC 6750 section 3.1: no error code)."""

_DESCRIPTION_CHARACTERS = frozenset(chr(code) for code in range(0x20, 0x7F)) - {'"', "\\"}


def invalid_token_challenge(description: str) -> dict[str, str]:
    """The challenge of a refused bearer token (invalid, expired, revoked, its user gone): RFC 6750's
    ``error="invalid_token"`` with ``description`` as ``error_description`` (reduced to the characters it allows)."""
    shown = _quotable(description)
    return {"WWW-Authenticate": f'Bearer realm="tradestack", error="invalid_token", error_description="{shown}"'}


def _quotable(description: str) -> str:
    """``description`` reduced to the characters a challenge's quoted string allows (others become ``?``)."""
    return "".join(character if character in _DESCRIPTION_CHARACTERS else "?" for character in description)


def invalid_key_challenge(description: str) -> dict[str, str]:
    """The challenge of a refused X-API-Key (invalid, revoked, expired, its owner disabled): the ``ApiKey`` scheme
    naming the header, its error and why, then the bearer scheme the API also accepts."""
    shown = _quotable(description)
    return {
        "WWW-Authenticate": f'ApiKey realm="tradestack", header="X-API-Key", error="invalid_key", '
        f'error_description="{shown}", {BEARER_CHALLENGE["WWW-Authenticate"]}'
    }


def caller_of(request: Request) -> Caller:
    """Client address (after trusted proxy headers) and user agent, for audit and limits."""
    agent = request.headers.get("user-agent")
    return Caller(ip=request.client.host if request.client else None, user_agent=agent[:300] if agent else None)


@dataclass(slots=True)
class AuthPrefetch:
    """What the rate-limit middleware already did for a bearer request (or one with an API key it remembers), in its
    one round trip; ``token`` is the bearer token or the API key.

    ``principal_limit`` holds the ``RateLimit-*`` headers of the per-principal hit it counted
    (None if it did not count one, e.g. because a route override applies); ``reads`` the
    [revoked marker, cached user state] it read (None if it did not read them);
    ``caller_limit`` the identity it counted the route's `CallerLimit` for and the headers of
    that hit (None if it did not count it); ``claims`` the token's claims as it verified them for
    this request (None if the token did not verify), so that the token is verified once per request.
    """

    token: str
    principal_limit: dict[str, str] | None
    reads: list[bytes | None] | None
    caller_limit: tuple[str, dict[str, str]] | None = None
    claims: TokenClaims | None = None


PREFETCH_STATE = "auth_prefetch"
"""Key in the request state (``scope["state"]``) under which the middleware leaves an `AuthPrefetch`."""


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def principal_limit_of(runtime: Runtime, method: str, route_path: str) -> str:
    """The per-principal limit of a route: its override in ``rate_limit_routes``, else the default."""
    settings = runtime.settings
    if settings.rate_limit_routes:
        override = settings.rate_limit_routes.get(f"{method} {route_path}")
        if override:
            return override
    return settings.rate_limit_per_principal


def limit_identity(principal: Principal) -> str:
    """Whose requests a per-caller limit counts: ``key:<id>`` for an API key, else ``user:<id>``."""
    return f"key:{principal.api_key_id}" if principal.api_key_id else f"user:{principal.user_id}"


async def _count_principal(runtime: Runtime, limit: str, identity: str) -> dict[str, str]:
    limiter = runtime.rate_limiter
    if limiter.counts_in_process:
        return headers_or_refusal(limiter.hit_now(limit, "principal", identity), limit, label="principal", description=identity)
    return await check_limit(limiter, limit, "principal", identity, label="principal", description=identity)


async def get_principal(request: Request) -> Principal:
    """The authenticated caller; 401 without valid credentials. Applies the per-principal rate limit.

    A bearer token or API key this process verified and resolved in the last `PRINCIPAL_REUSE_SECONDS`
    costs no database or cache read here; in the embedded mode nothing is awaited then, in production the
    middleware has counted the limit (and read the auth state when needed) in its one round trip.
    """
    state = request.scope.setdefault("state", {})
    cached = state.get("principal")
    if isinstance(cached, Principal):
        return cached
    runtime: Runtime = request.app.state.runtime
    authorization = request.headers.get("authorization")
    api_key = request.headers.get("x-api-key")
    if not authorization and not api_key:
        AUTH_FAILURES.labels(reason="missing").inc()
        raise AuthenticationError("sign in: send Authorization: Bearer <token> or X-API-Key", headers=BEARER_CHALLENGE)
    prefetch = state.get(PREFETCH_STATE)
    if authorization:
        token = bearer_token(authorization)
        if token is None:
            raise AuthenticationError("Authorization must be 'Bearer <token>'", headers=BEARER_CHALLENGE)
        if not isinstance(prefetch, AuthPrefetch) or prefetch.token != token:
            prefetch = None
        if prefetch is not None and prefetch.claims is not None:
            principal = components(runtime).principals.get(prefetch.claims.token_id)  # verified for this request
        else:
            principal = _recent_principal(runtime, token)
        if principal is None:
            try:
                principal = await _resolve_bearer(runtime, request, token, prefetch)
            except AuthenticationError as exc:
                exc.headers = {**invalid_token_challenge(exc.detail), **exc.headers}
                raise
    else:
        if not isinstance(prefetch, AuthPrefetch) or prefetch.token != api_key:
            prefetch = None  # the middleware counted no limit of this key
        principal = remembered_api_key(runtime, str(api_key), runtime.clock.now())
        if principal is None:
            try:
                async with runtime.database.read_session() as session:
                    principal = await IdentityService(session, runtime, caller_of(request)).authenticate_api_key(str(api_key))
            except AuthenticationError as exc:
                exc.headers = {**invalid_key_challenge(exc.detail), **exc.headers}
                raise
    if prefetch is not None and prefetch.principal_limit is not None:
        state["rate_limit_headers"] = prefetch.principal_limit
    else:
        identity = limit_identity(principal)
        route = request.scope.get("route")
        limit = principal_limit_of(runtime, request.method, getattr(route, "path", ""))
        state["rate_limit_headers"] = await _count_principal(runtime, limit, identity)
    state["principal"] = principal
    return principal


def _recent_principal(runtime: Runtime, token: str) -> Principal | None:
    """The principal this process resolved ``token`` to moments ago, if it is still valid; no I/O."""
    parts = components(runtime)
    try:
        claims = parts.tokens.verify(token, "access", runtime.clock.now())
    except InvalidTokenError:
        return None  # the full path refuses it with the reason logged
    return parts.principals.get(claims.token_id)


async def _resolve_bearer(runtime: Runtime, request: Request, token: str, prefetch: AuthPrefetch | None) -> Principal:
    reads = prefetch.reads if prefetch is not None else None
    cache = runtime.cache
    if reads is None and isinstance(cache, MemoryCache):
        reads = _memory_reads(runtime, cache, token)
    # The session connects only if the user's state has to come from the database.
    async with runtime.database.read_session() as session:
        return await IdentityService(session, runtime, caller_of(request)).authenticate_bearer(token, prefetched=reads)


def _memory_reads(runtime: Runtime, cache: MemoryCache, token: str) -> list[bytes | None] | None:
    parts = components(runtime)
    try:
        claims = parts.tokens.verify(token, "access", runtime.clock.now())
    except InvalidTokenError:
        return None
    return [cache.get_now(revoked_key(claims.token_id)), cache.get_now(user_state_key(claims.subject))]


async def count_caller_limit(request: Request, principal: Principal, limit: CallerLimit) -> dict[str, str]:
    """Count the route's own per-caller ``limit`` once for this request; its ``RateLimit-*`` headers, or 429.

    None counted (no headers) when ``rate_limit_routes`` configures the route: that limit,
    counted with authentication in place of the per-principal one, replaces this one too.

    Free when the rate-limit middleware has already counted it for this principal (bearer
    requests: in its one round trip, see `AuthPrefetch`); counted here otherwise (API keys, a
    token this process had not verified), without awaiting in process.
    """
    runtime: Runtime = request.app.state.runtime
    if f"{request.method} {getattr(request.scope.get('route'), 'path', '')}" in runtime.settings.rate_limit_routes:
        return {}  # the configured route limit, counted by authentication, replaces it
    identity = limit_identity(principal)
    prefetch = request.scope.get("state", {}).get(PREFETCH_STATE)
    if isinstance(prefetch, AuthPrefetch) and prefetch.caller_limit is not None and prefetch.caller_limit[0] == identity:
        return prefetch.caller_limit[1]
    return await check_limit(runtime.rate_limiter, limit.limit, limit.label, identity, label=limit.label, description=identity)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def authorize(request: Request, permission: Permission) -> Principal:
    """The authenticated caller if they have `permission`: 401 without valid credentials, 403 without it.

    What `require` checks, callable without FastAPI's dependency solving (hot paths).
    """
    principal = await get_principal(request)
    if not principal.can(permission):
        AUTH_FAILURES.labels(reason="forbidden").inc()
        if principal.password_change_required:
            raise PermissionDeniedError(
                "your password was reset: set a new one with POST /api/auth/password "
                "(current_password: the temporary one, new_password), then carry on with the tokens it returns"
            )
        via = " through this API key's scopes" if principal.api_key_id else ""
        raise PermissionDeniedError(f"role {principal.role.value}{via} does not have permission {permission.value}")
    return principal


def require(permission: Permission) -> Any:
    """A dependency that lets the call through only with `permission` (403 otherwise)."""

    # Takes the request itself rather than depending on `get_principal`: one level less of
    # dependency solving per request (the principal is resolved once per request either way).
    async def check(request: Request) -> Principal:
        return await authorize(request, permission)

    check.permission = permission  # type: ignore[attr-defined]  # read by the route-permission tests
    return Depends(check)


def permission_of(dependency: Callable[..., Awaitable[Any]]) -> Permission | None:
    """The permission a `require` dependency checks (for tests and docs)."""
    value = getattr(dependency, "permission", None)
    return value if isinstance(value, Permission) else None
