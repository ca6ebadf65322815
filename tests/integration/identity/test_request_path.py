"""The authenticated request path: one Redis round trip in production, no limiter or cache awaits in process."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime

from .conftest import MakeUser  # type: ignore[import-not-found]


class Calls:
    def __init__(self) -> None:
        self.names: list[str] = []

    def wrap(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        original = getattr(owner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.names.append(name)
            return await original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


async def test_a_remembered_bearer_costs_one_round_trip_or_none(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    trader = await make_user(Role.TRADER)
    first = await client.get("/api/auth/me", headers=trader.headers)  # resolves the token, remembers the principal
    assert first.status_code == 200
    calls = Calls()
    for name in ("hit", "hit_many", "clear"):
        calls.wrap(monkeypatch, runtime.rate_limiter, name)
    for name in ("get", "get_many", "set"):
        calls.wrap(monkeypatch, runtime.cache, name)
    again = await client.get("/api/auth/me", headers=trader.headers)
    assert again.status_code == 200
    assert again.headers["ratelimit-limit"]  # the principal limit still applies
    if runtime.rate_limiter.counts_in_process:
        assert calls.names == []  # embedded: limits and auth state without awaiting anything
    else:
        assert calls.names == ["hit_many"]  # production: IP + principal limits in one script


async def test_a_new_bearer_reads_its_auth_state_in_the_same_round_trip(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    trader = await make_user(Role.TRADER)
    calls = Calls()
    calls.wrap(monkeypatch, runtime.rate_limiter, "hit_many")
    calls.wrap(monkeypatch, runtime.rate_limiter, "hit")
    calls.wrap(monkeypatch, runtime.cache, "get_many")
    calls.wrap(monkeypatch, runtime.cache, "get")
    response = await client.get("/api/auth/me", headers=trader.headers)
    assert response.status_code == 200
    if runtime.rate_limiter.counts_in_process:
        assert calls.names == []
    else:
        assert calls.names == ["hit_many"]


async def test_a_remembered_api_key_reads_neither_database_nor_cache(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tradestack.identity.repository import ApiKeyRepository

    trader = await make_user(Role.TRADER)
    created = await client.post("/api/keys", json={"name": "bot", "scopes": ["read"]}, headers=trader.headers)
    key = {"X-API-Key": created.json()["key"]}
    assert (await client.get("/api/auth/me", headers=key)).status_code == 200  # resolves the key, remembers it
    calls = Calls()
    calls.wrap(monkeypatch, ApiKeyRepository, "by_prefix")
    for name in ("get", "get_many"):
        calls.wrap(monkeypatch, runtime.cache, name)
    for name in ("hit", "hit_many"):
        calls.wrap(monkeypatch, runtime.rate_limiter, name)
    again = await client.get("/api/auth/me", headers=key)
    assert again.status_code == 200
    assert again.json()["via_api_key"] is True
    assert again.headers["ratelimit-limit"]  # the principal limit still applies
    # No database or cache read; production: IP + the key's principal limits in one script.
    assert calls.names == ([] if runtime.rate_limiter.counts_in_process else ["hit_many"])
    # Revoked here: refused at once, not remembered.
    assert (await client.delete(f"/api/keys/{created.json()['id']}", headers=trader.headers)).status_code == 200
    assert (await client.get("/api/auth/me", headers=key)).status_code == 401
