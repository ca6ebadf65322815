"""TOTP MFA: setup, enable, sign-in challenge, one use per time step, recovery codes, disable."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import httpx

from tradestack.identity import totp
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime

from .conftest import PASSWORD, MakeUser, TestUser  # type: ignore[import-not-found]


async def _enable_mfa(client: httpx.AsyncClient, runtime: Runtime, user: TestUser) -> tuple[str, list[str]]:
    setup = await client.post("/api/auth/mfa/setup", headers=user.headers)
    assert setup.status_code == 200, setup.text
    body = setup.json()
    assert body["qr_png"].startswith("data:image/png;base64,")
    uri = urlparse(body["otpauth_uri"])
    assert uri.scheme == "otpauth"
    secret = parse_qs(uri.query)["secret"][0]
    enable = await client.post(
        "/api/auth/mfa/enable", json={"code": totp.code_at(secret, runtime.clock.now())}, headers=user.headers
    )
    assert enable.status_code == 200, enable.text
    codes = enable.json()["recovery_codes"]
    assert len(codes) == 10
    return secret, codes


async def test_enable_needs_a_correct_code(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user(Role.VIEWER)
    assert (await client.post("/api/auth/mfa/setup", headers=user.headers)).status_code == 200
    wrong = await client.post("/api/auth/mfa/enable", json={"code": "000000"}, headers=user.headers)
    assert wrong.status_code == 422
    me = await client.get("/api/auth/me", headers=user.headers)
    assert me.json()["mfa_enabled"] is False


async def test_login_with_mfa_and_each_step_is_accepted_once(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    user = await make_user(Role.TRADER)
    secret, _ = await _enable_mfa(client, runtime, user)

    login = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert login.status_code == 200
    challenge = login.json()
    assert challenge["mfa_required"] is True
    assert "access_token" not in challenge

    # The code that enabled MFA belongs to the current step, which is now spent.
    current = totp.code_at(secret, runtime.clock.now())
    replay = await client.post("/api/auth/mfa/verify", json={"mfa_token": challenge["mfa_token"], "code": current})
    assert replay.status_code == 401

    next_step = totp.code_at(secret, runtime.clock.now() + timedelta(seconds=totp.STEP_SECONDS))
    ok = await client.post("/api/auth/mfa/verify", json={"mfa_token": challenge["mfa_token"], "code": next_step})
    assert ok.status_code == 200, ok.text
    assert ok.json()["access_token"]

    second = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    again = await client.post("/api/auth/mfa/verify", json={"mfa_token": second.json()["mfa_token"], "code": next_step})
    assert again.status_code == 401
    assert "already used" in again.json()["detail"]


async def test_recovery_code_works_once(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    user = await make_user(Role.VIEWER)
    _, codes = await _enable_mfa(client, runtime, user)
    for expected in (200, 401):
        login = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
        verify = await client.post("/api/auth/mfa/verify", json={"mfa_token": login.json()["mfa_token"], "code": codes[0]})
        assert verify.status_code == expected


async def test_mfa_token_cannot_be_used_as_access_token(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    user = await make_user(Role.VIEWER)
    await _enable_mfa(client, runtime, user)
    login = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {login.json()['mfa_token']}"})
    assert me.status_code == 401


async def test_disable_needs_a_code_and_admin_can_reset(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    admin = await make_user(Role.ADMIN)
    user = await make_user(Role.VIEWER)
    _, codes = await _enable_mfa(client, runtime, user)
    assert (await client.post("/api/auth/mfa/disable", json={"code": "123456"}, headers=user.headers)).status_code == 401
    assert (await client.post("/api/auth/mfa/disable", json={"code": codes[1]}, headers=user.headers)).status_code == 204
    assert (await client.get("/api/auth/me", headers=user.headers)).json()["mfa_enabled"] is False

    await _enable_mfa(client, runtime, user)
    reset = await client.post(f"/api/users/{user.id}/mfa/reset", headers=admin.headers)
    assert reset.status_code == 200
    assert reset.json()["mfa_enabled"] is False
    login = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert "access_token" in login.json()


async def test_mfa_secret_is_encrypted_at_rest(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    from sqlalchemy import text

    user = await make_user(Role.VIEWER)
    secret, _ = await _enable_mfa(client, runtime, user)
    async with runtime.database.read_session() as session:
        stored = (await session.execute(text("SELECT mfa_secret FROM users WHERE id = :id"), {"id": user.id})).scalar_one()
    assert secret not in stored
    assert stored.startswith("v1.")
