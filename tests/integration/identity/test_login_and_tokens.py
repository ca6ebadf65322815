"""Login, lockout, refresh rotation with reuse detection, logout, disabled users."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tradestack.identity.permissions import Role
from tradestack.identity.service import IdentityService
from tradestack.kit.runtime import Runtime

from .conftest import PASSWORD, MakeUser  # type: ignore[import-not-found]


async def test_login_returns_a_token_pair_and_me_works(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user(Role.TRADER, login=False)
    response = await client.post("/api/auth/login", json={"email": user.email.upper(), "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["email"] == user.email
    assert me.json()["role"] == "trader"
    assert [a["base_currency"] for a in me.json()["accounts"]] == ["AUD"]
    assert "trade:own" in me.json()["permissions"]


async def test_wrong_password_and_unknown_email_look_the_same(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user(login=False)
    wrong = await client.post("/api/auth/login", json={"email": user.email, "password": "not the password at all"})
    unknown = await client.post("/api/auth/login", json={"email": "nobody-" + user.email, "password": "whatever12345"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "AuthenticationError", "detail": "email or password is wrong"}


async def test_repeated_failures_lock_the_account_with_retry_after(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    user = await make_user(login=False)
    statuses = []
    for _ in range(6):
        response = await client.post("/api/auth/login", json={"email": user.email, "password": "wrong password here"})
        statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429]
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"] == "RateLimitedError"
    # Locked means locked: even the right password is refused until the window passes.
    right = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert right.status_code == 429


async def test_unknown_emails_are_locked_too(client: httpx.AsyncClient) -> None:
    email = f"ghost-{uuid.uuid4().hex[:12]}@example.com"
    codes = [
        (await client.post("/api/auth/login", json={"email": email, "password": "guess number x"})).status_code for _ in range(6)
    ]
    assert codes[-1] == 429


async def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    first = await client.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert first.status_code == 200
    rotated = first.json()["refresh_token"]
    assert rotated != user.refresh_token

    reuse = await client.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert reuse.status_code == 401
    assert "already used" in reuse.json()["detail"]
    # The thief's reuse killed the legitimate newer token as well.
    after = await client.post("/api/auth/refresh", json={"refresh_token": rotated})
    assert after.status_code == 401
    assert "revoked" in after.json()["detail"]


async def test_refresh_with_garbage_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/refresh", json={"refresh_token": "nope"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="tradestack"'  # every 401 names how to authenticate


async def test_wrong_credentials_are_a_401_with_a_challenge(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    response = await client.post("/api/auth/login", json={"email": user.email, "password": "not the password"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="tradestack"'


async def test_logout_revokes_access_and_refresh(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    out = await client.post("/api/auth/logout", json={"refresh_token": user.refresh_token}, headers=user.headers)
    assert out.status_code == 204
    assert (await client.get("/api/auth/me", headers=user.headers)).status_code == 401
    assert (await client.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})).status_code == 401


async def test_every_refused_bearer_token_gets_the_invalid_token_challenge(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    """RFC 6750 section 3.1: a 401 for a token that was sent names it invalid_token, and why; none without a token."""
    user = await make_user()
    assert (await client.get("/api/auth/me", headers=user.headers)).status_code == 200  # remembered by this process
    assert (await client.post("/api/auth/logout", headers=user.headers)).status_code == 204
    revoked = await client.get("/api/auth/me", headers=user.headers)
    assert revoked.status_code == 401
    detail = revoked.json()["detail"]
    assert "revoked" in detail
    challenge = f'Bearer realm="tradestack", error="invalid_token", error_description="{detail}"'
    assert revoked.headers["www-authenticate"] == challenge
    garbage = await client.get("/api/auth/me", headers={"Authorization": "Bearer not.a.token"})
    assert garbage.status_code == 401
    assert 'error="invalid_token"' in garbage.headers["www-authenticate"]
    admin = await make_user(Role.ADMIN)
    other = await make_user()
    assert (await client.patch(f"/api/users/{other.id}", json={"is_active": False}, headers=admin.headers)).status_code == 200
    disabled = await client.get("/api/auth/me", headers=other.headers)
    assert disabled.status_code == 401
    assert 'error="invalid_token"' in disabled.headers["www-authenticate"]
    missing = await client.get("/api/auth/me")
    assert missing.headers["www-authenticate"] == 'Bearer realm="tradestack"'


async def test_disabled_user_loses_access_at_once(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    admin = await make_user(Role.ADMIN)
    user = await make_user()
    assert (await client.get("/api/auth/me", headers=user.headers)).status_code == 200
    disable = await client.patch(f"/api/users/{user.id}", json={"is_active": False}, headers=admin.headers)
    assert disable.status_code == 200
    assert (await client.get("/api/auth/me", headers=user.headers)).status_code == 401
    login = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert login.status_code == 401
    assert (await client.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})).status_code == 401
    enable = await client.patch(f"/api/users/{user.id}", json={"is_active": True}, headers=admin.headers)
    assert enable.status_code == 200
    assert (await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})).status_code == 200


async def test_password_is_rehashed_when_parameters_change(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    from argon2 import PasswordHasher

    from tradestack.identity.service import components
    from tradestack.models.identity import User

    user = await make_user(login=False)
    parts = components(runtime)
    old_hasher = parts.passwords.hasher
    parts.passwords.hasher = PasswordHasher(time_cost=2, memory_cost=8192, parallelism=1)
    try:
        assert (await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})).status_code == 200
        async with runtime.database.read_session() as session:
            stored = await session.get(User, user.id)
            assert stored is not None
            assert "t=2" in stored.password_hash
    finally:
        parts.passwords.hasher = old_hasher


async def test_burst_of_failed_logins_is_refused_before_hashing(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tradestack.identity.service import components

    user = await make_user(login=False)
    passwords = components(runtime).passwords
    verified = 0
    original = passwords.verify

    async def counting_verify(stored_hash: str | None, password: str) -> bool:
        nonlocal verified
        verified += 1
        return await original(stored_hash, password)

    monkeypatch.setattr(passwords, "verify", counting_verify)
    responses = await asyncio.gather(
        *(client.post("/api/auth/login", json={"email": user.email, "password": f"wrong guess {i:04d}"}) for i in range(60))
    )
    codes = [r.status_code for r in responses]
    assert set(codes) <= {401, 429}
    assert codes.count(429) >= 55
    # Attempts are counted before argon2 runs, so at most the account's window (5) paid for it.
    assert verified <= 5
    assert (await client.get("/api/health")).status_code == 200


async def test_service_refuses_short_passwords_and_duplicates(runtime: Runtime, make_user: MakeUser) -> None:
    from tradestack.core.errors import ConflictError, ValidationFailedError
    from tradestack.identity.service import Caller

    existing = await make_user(login=False)
    async with runtime.database.session() as session:
        service = IdentityService(session, runtime, Caller())
        with pytest.raises(ValidationFailedError, match="at least 12"):
            await service.create_user("short@example.com", "short", Role.VIEWER)
        with pytest.raises(ConflictError, match="already exists"):
            await service.create_user(existing.email.upper(), PASSWORD, Role.VIEWER)
        assert service.pending_audit == []  # nothing happened, nothing to record
