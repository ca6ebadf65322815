"""User administration over the API and the CLI; first-start seeding; audit of security actions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tradestack.audit.service import AuditService
from tradestack.books.flows import seed_first_users
from tradestack.cli import app as cli
from tradestack.identity.permissions import Role
from tradestack.identity.service import ADMIN_EMAIL, DEMO_TRADER_EMAIL
from tradestack.kit.runtime import Runtime

from .conftest import PASSWORD, MakeUser  # type: ignore[import-not-found]

runner = CliRunner()


async def test_admin_creates_lists_and_changes_roles(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    admin = await make_user(Role.ADMIN)
    created = await client.post(
        "/api/users", json={"email": "New.Person@Example.com", "password": PASSWORD, "role": "risk"}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["email"] == "new.person@example.com"
    duplicate = await client.post(
        "/api/users", json={"email": "new.person@example.com", "password": PASSWORD}, headers=admin.headers
    )
    assert duplicate.status_code == 409
    weak = await client.post("/api/users", json={"email": "weak@example.com", "password": "short"}, headers=admin.headers)
    assert weak.status_code == 422
    bad_role = await client.post(
        "/api/users", json={"email": "r@example.com", "password": PASSWORD, "role": "god"}, headers=admin.headers
    )
    assert bad_role.status_code == 422
    user_id = created.json()["id"]
    changed = await client.patch(f"/api/users/{user_id}", json={"role": "viewer"}, headers=admin.headers)
    assert changed.json()["role"] == "viewer"
    listed = await client.get("/api/users", headers=admin.headers)
    assert "new.person@example.com" in [u["email"] for u in listed.json()]
    assert (await client.get("/api/users/not-a-user", headers=admin.headers)).status_code == 404


async def test_last_admin_cannot_be_removed_and_admins_cannot_lock_themselves_out(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    admin = await make_user(Role.ADMIN)
    myself = await client.patch(f"/api/users/{admin.id}", json={"is_active": False}, headers=admin.headers)
    assert myself.status_code == 409


async def test_audit_log_records_and_is_readable_by_admin_and_risk_only(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    admin = await make_user(Role.ADMIN)
    risk = await make_user(Role.RISK)
    trader = await make_user(Role.TRADER)
    await client.post("/api/auth/login", json={"email": trader.email, "password": "wrong password!!"})
    for reader in (admin, risk):
        response = await client.get("/api/audit", params={"action": "auth.login"}, headers=reader.headers)
        assert response.status_code == 200
        rows = response.json()
        failure = next(r for r in rows if r["outcome"] == "failure" and r["actor_email"] == trader.email)
        assert failure["ip"]
        assert failure["detail"]["reason"] == "wrong password"
    assert (await client.get("/api/audit", headers=trader.headers)).status_code == 403


async def test_audit_verify_fails_after_a_row_is_edited(make_user: MakeUser, runtime: Runtime) -> None:
    await make_user(Role.TRADER)  # writes user.created and auth.login entries
    assert await AuditService(runtime.database, runtime.clock).settle()  # chained off the request path
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTACK_")}
    env["TRADESTACK_DATABASE_URL"] = runtime.settings.effective_database_url

    def verify() -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).parent / "tradestack"), "audit", "verify"]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    ok = verify()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "intact" in ok.stdout
    async with runtime.database.session() as session:
        first = (await session.execute(text("SELECT min(id) FROM audit_entries"))).scalar_one()
        await session.execute(text("UPDATE audit_entries SET outcome = 'failure' WHERE id = :id"), {"id": first})
    broken = verify()
    assert broken.returncode == 1
    assert f"row {first}" in broken.stdout + broken.stderr


async def test_seed_creates_admin_and_demo_trader_once(runtime: Runtime, client: httpx.AsyncClient) -> None:
    seeded = await seed_first_users(runtime)
    assert [(s.email, s.role) for s in seeded] == [(ADMIN_EMAIL, Role.ADMIN), (DEMO_TRADER_EMAIL, Role.TRADER)]
    trader = seeded[1]
    assert trader.password is not None
    login = await client.post("/api/auth/login", json={"email": DEMO_TRADER_EMAIL, "password": trader.password})
    me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    assert [a["kind"] for a in me.json()["accounts"]] == ["paper"]
    accounts = await client.get("/api/accounts", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    assert [a["cash"] for a in accounts.json()] == [{"AUD": "100000"}]  # the demo can trade at once
    assert await seed_first_users(runtime) == []


def test_cli_user_create_and_list(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTACK_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("TRADESTACK_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("TRADESTACK_ARGON2_MEMORY_KIB", "8192")
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    created = runner.invoke(
        cli, ["user", "create", "Ops@Example.com", "--role", "risk", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert created.exit_code == 0, created.output
    again = runner.invoke(cli, ["user", "create", "ops@example.com", "--password-stdin"], input=PASSWORD + "\n")
    assert again.exit_code == 2
    assert "already exists" in again.output
    short = runner.invoke(cli, ["user", "create", "x@example.com", "--password-stdin"], input="short\n")
    assert short.exit_code == 2
    assert "at least 12" in short.output
    bad_role = runner.invoke(cli, ["user", "create", "y@example.com", "--role", "root", "--password-stdin"], input=PASSWORD)
    assert bad_role.exit_code == 2
    listed = runner.invoke(cli, ["user", "list"])
    assert "ops@example.com" in listed.output
    assert "risk" in listed.output
