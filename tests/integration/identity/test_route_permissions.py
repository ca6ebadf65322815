"""Every route is closed to anonymous callers and to roles without its permission.

The expected role → permission table below is written out independently of the code's
table, so widening a role in the code makes this test fail.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, _IncludedRouter
from starlette.routing import Route

from tradestack.identity.deps import permission_of
from tradestack.identity.permissions import Permission, Role
from tradestack.identity.service import components
from tradestack.kit.runtime import Runtime

from .conftest import MakeUser  # type: ignore[import-not-found]

# Open by design: probes and metrics (acceptance of issue 3), the sign-in entry points (they
# are how a caller gets credentials), and the API description.
PUBLIC = {
    ("GET", "/api/health"),
    ("GET", "/api/ready"),
    ("GET", "/api/health/database"),
    ("GET", "/api/health/external"),
    ("GET", "/api/db/health"),
    ("GET", "/api/version"),
    ("GET", "/metrics"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/refresh"),
    ("POST", "/api/auth/mfa/verify"),
    ("POST", "/api/auth/browser/login"),
    ("POST", "/api/auth/browser/refresh"),
    ("POST", "/api/auth/browser/mfa/verify"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}

EXPECTED = {
    Role.ADMIN: set(Permission),
    Role.TRADER: {"profile", "security:manage:own", "accounts:read:own", "marketdata:read", "trade:own"},
    Role.VIEWER: {"profile", "security:manage:own", "accounts:read:own", "marketdata:read"},
    Role.RISK: {
        "profile",
        "security:manage:own",
        "accounts:read:own",
        "accounts:read:all",
        "marketdata:read",
        "audit:read",
        "risk:halt",
        "risk:limits",
    },
}


def _flatten(routes: list[Any]) -> list[Any]:
    # FastAPI 0.165 keeps included routers as wrappers (a private API): unwrap to the effective
    # routes, which carry the full path and the original APIRoute.
    flat = []
    for route in routes:
        if isinstance(route, _IncludedRouter):
            flat.extend(_flatten(route.effective_candidates()))
        else:
            flat.append(route)
    return flat


def _routes(app: FastAPI) -> list[tuple[str, str, Permission | None]]:
    found = []
    for route in _flatten(list(app.routes)):
        original = getattr(route, "original_route", route)
        if not isinstance(original, Route | APIRoute):
            continue
        permission = None
        if isinstance(original, APIRoute):
            declared = [permission_of(dep.call) for dep in original.dependant.dependencies if dep.call is not None]
            permissions = [p for p in declared if p is not None]
            assert len(permissions) <= 1, f"{route.path} declares several permissions"
            permission = permissions[0] if permissions else None
        for method in sorted((original.methods or set()) - {"HEAD"}):
            found.append((method, route.path, permission))
    return found


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


async def test_every_route_needs_authentication(app: FastAPI, client: httpx.AsyncClient) -> None:
    checked = 0
    for method, path, permission in _routes(app):
        if (method, path) in PUBLIC:
            continue
        assert permission is not None, f"{method} {path} declares no permission: add require(Permission.…)"
        response = await client.request(method, _concrete(path), json={})
        assert response.status_code == 401, f"{method} {path} answered {response.status_code} to an anonymous call"
        assert response.json()["error"] == "AuthenticationError"
        checked += 1
    assert checked >= 12


@pytest.mark.parametrize("role", list(Role))
async def test_role_matrix(app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, role: Role) -> None:
    user = await make_user(role, login=False)
    signer = components(runtime).signer
    for method, path, permission in _routes(app):
        if (method, path) in PUBLIC or permission is None:
            continue
        token, _ = signer.issue(user.id, "access", runtime.clock.now(), 600)  # fresh: logout revokes its token
        response = await client.request(method, _concrete(path), json={}, headers={"Authorization": f"Bearer {token}"})
        if permission.value in EXPECTED[role]:
            assert response.status_code not in (401, 403), f"{role} should reach {method} {path}: {response.text}"
        else:
            assert response.status_code == 403, f"{role} must not reach {method} {path}: got {response.status_code}"
            assert response.json()["error"] == "PermissionDeniedError"
