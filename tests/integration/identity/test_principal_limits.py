"""Per-user/per-key limits and per-route overrides, with RateLimit-* headers and 429 + Retry-After."""

from __future__ import annotations

import uuid

import httpx

from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime

from .conftest import MakeUser  # type: ignore[import-not-found]


def _window() -> str:
    return f"{uuid.uuid4().int % 50 + 10} minutes"  # a window no other test uses in the shared Redis


async def test_per_principal_limit(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    user = await make_user(Role.VIEWER)
    runtime.settings = runtime.settings.model_copy(update={"rate_limit_per_principal": f"2/{_window()}"})
    first = await client.get("/api/auth/me", headers=user.headers)
    assert first.status_code == 200
    assert (await client.get("/api/auth/me", headers=user.headers)).status_code == 200
    refused = await client.get("/api/auth/me", headers=user.headers)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert f"user:{user.id}" in refused.json()["detail"]
    other = await make_user(Role.VIEWER)
    assert (await client.get("/api/auth/me", headers=other.headers)).status_code == 200


async def test_route_override_applies_to_that_route_only(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    user = await make_user(Role.VIEWER)
    runtime.settings = runtime.settings.model_copy(update={"rate_limit_routes": {"GET /api/keys": f"1/{_window()}"}})
    assert (await client.get("/api/keys", headers=user.headers)).status_code == 200
    assert (await client.get("/api/keys", headers=user.headers)).status_code == 429
    assert (await client.get("/api/auth/me", headers=user.headers)).status_code == 200
