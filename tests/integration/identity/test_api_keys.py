"""API keys: shown once, stored hashed, scoped, never stronger than their owner, revocable."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
from sqlalchemy import text, update

from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.models.identity import ApiKey

from .conftest import MakeUser  # type: ignore[import-not-found]


async def test_create_use_list_revoke(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    user = await make_user(Role.TRADER)
    created = await client.post("/api/keys", json={"name": "bot", "scopes": ["read", "trade"]}, headers=user.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["key"]
    assert secret.startswith("tsk_")

    async with runtime.database.read_session() as session:
        stored = (await session.execute(text("SELECT secret_hash FROM api_keys WHERE id = :id"), {"id": body["id"]})).scalar_one()
    assert secret not in stored

    me = await client.get("/api/auth/me", headers={"X-API-Key": secret})
    assert me.status_code == 200
    assert me.json()["via_api_key"] is True
    assert "trade:own" in me.json()["permissions"]

    listed = await client.get("/api/keys", headers=user.headers)
    assert [k["name"] for k in listed.json()] == ["bot"]
    assert "key" not in listed.json()[0]
    assert listed.json()[0]["last_used_at"] is not None

    revoked = await client.delete(f"/api/keys/{body['id']}", headers=user.headers)
    assert revoked.status_code == 200
    assert (await client.get("/api/auth/me", headers={"X-API-Key": secret})).status_code == 401


async def test_a_refused_key_is_answered_with_a_challenge_naming_the_header_and_why(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    """RFC 9110 section 15.5.2: a 401 names how to authenticate; for a key that was sent, also what was wrong with it."""
    user = await make_user(Role.TRADER)
    created = await client.post("/api/keys", json={"name": "bot", "scopes": ["read"]}, headers=user.headers)
    assert (await client.delete(f"/api/keys/{created.json()['id']}", headers=user.headers)).status_code == 200
    revoked = await client.get("/api/auth/me", headers={"X-API-Key": created.json()["key"]})
    assert revoked.status_code == 401
    assert revoked.headers["www-authenticate"] == (
        'ApiKey realm="tradestack", header="X-API-Key", error="invalid_key", '
        f'error_description="{revoked.json()["detail"]}", Bearer realm="tradestack"'
    )
    bogus = await client.get("/api/auth/me", headers={"X-API-Key": "tsk_not-a-key"})
    assert bogus.status_code == 401
    assert 'error="invalid_key"' in bogus.headers["www-authenticate"]


async def test_key_never_exceeds_its_owner(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    viewer = await make_user(Role.VIEWER)
    refused = await client.post("/api/keys", json={"name": "x", "scopes": ["trade"]}, headers=viewer.headers)
    assert refused.status_code == 403
    assert "cannot grant" in refused.json()["detail"]

    read_key = await client.post("/api/keys", json={"name": "r", "scopes": ["read"]}, headers=viewer.headers)
    me = await client.get("/api/auth/me", headers={"X-API-Key": read_key.json()["key"]})
    assert "trade:own" not in me.json()["permissions"]


async def test_read_scope_cannot_reach_admin_even_for_an_admin(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    admin = await make_user(Role.ADMIN)
    key = (await client.post("/api/keys", json={"name": "r", "scopes": ["read"]}, headers=admin.headers)).json()["key"]
    assert (await client.get("/api/users", headers={"X-API-Key": key})).status_code == 403
    assert (await client.get("/api/users", headers=admin.headers)).status_code == 200


async def test_a_key_cannot_mint_keys(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    admin = await make_user(Role.ADMIN)
    key = (
        await client.post("/api/keys", json={"name": "all", "scopes": ["read", "trade", "admin"]}, headers=admin.headers)
    ).json()
    response = await client.post("/api/keys", json={"name": "child", "scopes": ["read"]}, headers={"X-API-Key": key["key"]})
    assert response.status_code == 403


async def test_expired_and_malformed_keys_are_refused(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user(Role.VIEWER)
    past = await client.post(
        "/api/keys", json={"name": "old", "scopes": ["read"], "expires_at": "2020-01-01T00:00:00Z"}, headers=user.headers
    )
    assert past.status_code == 422
    naive = await client.post(
        "/api/keys", json={"name": "tz", "scopes": ["read"], "expires_at": "2030-01-01T00:00:00"}, headers=user.headers
    )
    assert naive.status_code == 422
    for bogus in ("tsk_nothere_abc", "not-a-key", "tsk_aaaaaaaaaaaa_" + "x" * 43):
        assert (await client.get("/api/auth/me", headers={"X-API-Key": bogus})).status_code == 401


async def test_owner_role_downgrade_shrinks_the_key(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    admin = await make_user(Role.ADMIN)
    trader = await make_user(Role.TRADER)
    body = {"name": "t", "scopes": ["read", "trade"]}
    key = (await client.post("/api/keys", json=body, headers=trader.headers)).json()["key"]
    assert "trade:own" in (await client.get("/api/auth/me", headers={"X-API-Key": key})).json()["permissions"]
    await client.patch(f"/api/users/{trader.id}", json={"role": "viewer"}, headers=admin.headers)
    me = await client.get("/api/auth/me", headers={"X-API-Key": key})
    assert me.status_code == 200
    assert "trade:own" not in me.json()["permissions"]


async def test_keys_per_user_are_capped_and_revoked_ones_do_not_count(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    runtime.settings = runtime.settings.model_copy(update={"max_api_keys_per_user": 2})
    user = await make_user(Role.TRADER)
    first = await client.post("/api/keys", json={"name": "a", "scopes": ["read"]}, headers=user.headers)
    assert (await client.post("/api/keys", json={"name": "b", "scopes": ["read"]}, headers=user.headers)).status_code == 201
    refused = await client.post("/api/keys", json={"name": "c", "scopes": ["read"]}, headers=user.headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "ConflictError"
    detail = refused.json()["detail"]
    assert "you have 2 API keys" in detail
    assert "TRADESTACK_MAX_API_KEYS_PER_USER=2" in detail
    assert "DELETE /api/keys/{id}" in detail
    other = await make_user(Role.TRADER)  # the cap is per user
    assert (await client.post("/api/keys", json={"name": "x", "scopes": ["read"]}, headers=other.headers)).status_code == 201
    assert (await client.delete(f"/api/keys/{first.json()['id']}", headers=user.headers)).status_code == 200
    again = await client.post("/api/keys", json={"name": "c", "scopes": ["read"]}, headers=user.headers)
    assert again.status_code == 201, again.text
    assert (await client.post("/api/keys", json={"name": "d", "scopes": ["read"]}, headers=user.headers)).status_code == 409
    async with runtime.database.session() as session:  # an expired key does not count either
        expired = datetime(2020, 1, 1, tzinfo=UTC)
        await session.execute(update(ApiKey).where(ApiKey.id == again.json()["id"]).values(expires_at=expired))
    assert (await client.post("/api/keys", json={"name": "d", "scopes": ["read"]}, headers=user.headers)).status_code == 201


async def test_simultaneous_creations_do_not_exceed_the_cap(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    runtime.settings = runtime.settings.model_copy(update={"max_api_keys_per_user": 2})
    user = await make_user(Role.TRADER)
    answers = await asyncio.gather(
        *(client.post("/api/keys", json={"name": f"k{n}", "scopes": ["read"]}, headers=user.headers) for n in range(6))
    )
    assert sorted(answer.status_code for answer in answers) == [201, 201, 409, 409, 409, 409], [a.text for a in answers]
    assert len(await _live_keys(client, user.headers)) == 2


async def _live_keys(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, object]]:
    listed = await client.get("/api/keys", headers=headers)
    assert listed.status_code == 200, listed.text
    keys: list[dict[str, object]] = [key for key in listed.json() if key["revoked_at"] is None]
    return keys
