"""Passwords: change your own, an admin's one-time reset, the CLI reset; logout needs no body."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from typer.testing import CliRunner

from tradestack.cli import app as cli
from tradestack.cli import load_settings
from tradestack.identity.permissions import Role
from tradestack.identity.service import Caller, identity_session
from tradestack.kit.runtime import Runtime

from .conftest import PASSWORD, MakeUser  # type: ignore[import-not-found]

NEW_PASSWORD = "a much longer new passphrase"
runner = CliRunner()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def audit_actions(client: httpx.AsyncClient, admin_headers: dict[str, str], action: str) -> list[dict[str, object]]:
    response = await client.get("/api/audit", params={"action": action}, headers=admin_headers)
    assert response.status_code == 200, response.text
    rows: list[dict[str, object]] = response.json()
    return rows


async def test_logout_needs_no_body(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    trader = await make_user(Role.TRADER)
    response = await client.post("/api/auth/logout", headers=trader.headers)
    assert response.status_code == 204, response.text
    assert (await client.get("/api/auth/me", headers=trader.headers)).status_code == 401


async def test_changing_a_password_signs_out_other_sessions(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    trader = await make_user(Role.TRADER)
    admin = await make_user(Role.ADMIN)
    elsewhere = await client.post("/api/auth/login", json={"email": trader.email, "password": PASSWORD})
    assert elsewhere.status_code == 200, elsewhere.text
    other_session = bearer(elsewhere.json()["access_token"])
    assert (await client.get("/api/auth/me", headers=other_session)).status_code == 200  # resolved, so remembered
    wrong = await client.post(
        "/api/auth/password",
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        headers=trader.headers,
    )
    assert wrong.status_code == 422, wrong.text
    assert "current_password" in wrong.json()["detail"]
    weak = await client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": "short"}, headers=trader.headers
    )
    assert weak.status_code == 422
    assert "at least" in weak.json()["detail"]
    changed = await client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=trader.headers
    )
    assert changed.status_code == 200, changed.text
    assert (await client.get("/api/auth/me", headers=bearer(changed.json()["access_token"]))).status_code == 200
    # Every access token issued before the change is refused at once, the one that made it included.
    for old_token in (trader.headers, other_session):
        refused = await client.get("/api/auth/me", headers=old_token)
        assert refused.status_code == 401, refused.text
        assert "password change" in refused.json()["detail"]
    # The other session (the sign-in made by make_user) can no longer refresh.
    assert (await client.post("/api/auth/refresh", json={"refresh_token": trader.refresh_token})).status_code == 401
    old = await client.post("/api/auth/login", json={"email": trader.email, "password": PASSWORD})
    assert old.status_code == 401
    new = await client.post("/api/auth/login", json={"email": trader.email, "password": NEW_PASSWORD})
    assert new.status_code == 200
    outcomes = {r["outcome"] for r in await audit_actions(client, admin.headers, "auth.password_change")}
    assert outcomes == {"success", "failure"}


async def test_an_admin_reset_gives_a_temporary_password_that_must_be_changed(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    trader = await make_user(Role.TRADER)
    admin = await make_user(Role.ADMIN)
    assert (await client.post(f"/api/users/{trader.id}/password/reset", headers=trader.headers)).status_code == 403
    reset = await client.post(f"/api/users/{trader.id}/password/reset", headers=admin.headers)
    assert reset.status_code == 200, reset.text
    temporary = reset.json()["temporary_password"]
    assert (await client.get("/api/auth/me", headers=trader.headers)).status_code == 401  # its access token too
    assert (await client.post("/api/auth/refresh", json={"refresh_token": trader.refresh_token})).status_code == 401
    assert (await client.post("/api/auth/login", json={"email": trader.email, "password": PASSWORD})).status_code == 401

    login = await client.post("/api/auth/login", json={"email": trader.email, "password": temporary})
    assert login.status_code == 200, login.text
    limited = bearer(login.json()["access_token"])
    me = await client.get("/api/auth/me", headers=limited)
    assert me.status_code == 200
    assert me.json()["must_change_password"] is True
    refused = await client.get("/api/accounts", headers=limited)
    assert refused.status_code == 403
    assert "POST /api/auth/password" in refused.json()["detail"]

    changed = await client.post(
        "/api/auth/password", json={"current_password": temporary, "new_password": NEW_PASSWORD}, headers=limited
    )
    assert changed.status_code == 200, changed.text
    assert (await client.get("/api/accounts", headers=bearer(changed.json()["access_token"]))).status_code == 200
    assert (await client.get("/api/auth/me", headers=limited)).status_code == 401
    assert (await client.post("/api/auth/login", json={"email": trader.email, "password": temporary})).status_code == 401
    rows = await audit_actions(client, admin.headers, "auth.password_reset")
    assert [(r["target"], r["actor_email"]) for r in rows] == [(f"user:{trader.id}", admin.email)]


def test_cli_reset_password_prints_a_temporary_password(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTACK_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("TRADESTACK_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("TRADESTACK_ARGON2_MEMORY_KIB", "8192")
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    created = runner.invoke(cli, ["user", "create", "lost@example.com", "--password-stdin"], input=PASSWORD + "\n")
    assert created.exit_code == 0, created.output
    unknown = runner.invoke(cli, ["user", "reset-password", "nobody@example.com"])
    assert unknown.exit_code == 2
    assert "no user" in unknown.output
    reset = runner.invoke(cli, ["user", "reset-password", "Lost@Example.com"])
    assert reset.exit_code == 0, reset.output
    found = re.search(r"temporary password for lost@example.com: (\S+)", reset.output)
    assert found is not None, reset.output

    async def sign_in(password: str) -> bool:
        runtime = Runtime.open(load_settings())
        try:
            async with identity_session(runtime, Caller()) as service:
                user = await service.user_by_email("lost@example.com")
                return await service.passwords.verify(user.password_hash, password) and user.must_change_password
        finally:
            await runtime.close()

    assert asyncio.run(sign_in(found.group(1)))
    assert not asyncio.run(sign_in(PASSWORD))
