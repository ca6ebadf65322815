"""Who is calling: bearer token or X-API-Key, and per-endpoint permission checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from tradestack.core.errors import AuthenticationError, PermissionDeniedError
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Caller, IdentityService, Principal
from tradestack.kit.metrics import AUTH_FAILURES
from tradestack.kit.ratelimit import check_limit
from tradestack.kit.web import RuntimeDep

BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tradestack"'}


def caller_of(request: Request) -> Caller:
    """Client address (after trusted proxy headers) and user agent, for audit and limits."""
    agent = request.headers.get("user-agent")
    return Caller(ip=request.client.host if request.client else None, user_agent=agent[:300] if agent else None)


async def get_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """The authenticated caller; 401 without valid credentials. Applies the per-principal rate limit."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    authorization = request.headers.get("authorization")
    api_key = request.headers.get("x-api-key")
    if not authorization and not api_key:
        AUTH_FAILURES.labels(reason="missing").inc()
        raise AuthenticationError("sign in: send Authorization: Bearer <token> or X-API-Key", headers=BEARER_CHALLENGE)
    async with runtime.database.read_session() as session:
        service = IdentityService(session, runtime, caller_of(request))
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationError("Authorization must be 'Bearer <token>'", headers=BEARER_CHALLENGE)
            principal = await service.authenticate_bearer(token.strip())
        else:
            principal = await service.authenticate_api_key(str(api_key))
    identity = f"key:{principal.api_key_id}" if principal.api_key_id else f"user:{principal.user_id}"
    limit = runtime.settings.rate_limit_per_principal
    route = request.scope.get("route")
    override = runtime.settings.rate_limit_routes.get(f"{request.method} {getattr(route, 'path', '')}")
    request.state.rate_limit_headers = await check_limit(
        runtime.rate_limiter, override or limit, "principal", identity, label="principal", description=identity
    )
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(permission: Permission) -> Any:
    """A dependency that lets the call through only with `permission` (403 otherwise)."""

    async def check(principal: PrincipalDep) -> Principal:
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

    check.permission = permission  # type: ignore[attr-defined]  # read by the route-permission tests
    return Depends(check)


def permission_of(dependency: Callable[..., Awaitable[Any]]) -> Permission | None:
    """The permission a `require` dependency checks (for tests and docs)."""
    value = getattr(dependency, "permission", None)
    return value if isinstance(value, Permission) else None
