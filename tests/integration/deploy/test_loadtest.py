"""`tradestack loadtest` (Locust headless) against a real `tradestack up` on 127.0.0.1, for a few seconds."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import httpx
import pytest

from tradestack.deploy.loadtest import LOADTEST_ACCOUNT, prepare, retire
from tradestack.deploy.smoke import Credentials

from ..trading.processes import PASSWORD, cli_ok, run_cli  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def admin(installation: object) -> Credentials:
    """An admin of the installation: the set-up creates one trader per simulated user through the API."""
    email = f"loadtest-admin-{uuid.uuid4().hex[:8]}@example.com"
    inst = installation
    cli_ok(inst.env, inst.cwd, "user", "create", email, "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")  # type: ignore[attr-defined]
    return Credentials(email=email, password=PASSWORD)


def _loadtest(installation: object, out: Path, credentials: Credentials, *extra: str) -> object:
    inst = installation
    return run_cli(
        inst.env, inst.cwd, "loadtest", "--base-url", inst.base, "--email", str(credentials.email),  # type: ignore[attr-defined]
        "--password", str(credentials.password), "--users", "8", "--spawn-rate", "8", "--duration", "8s",
        "--wait", "0.2-1", "--out", str(out), *extra,
    )  # fmt: skip


def test_setup_gives_each_simulated_user_its_own_trader_and_paper_account(installation: object, admin: Credentials) -> None:
    with httpx.Client(base_url=installation.base, timeout=30) as http:  # type: ignore[attr-defined]
        made = prepare(http, admin, "BTC-USD", traders=3, run=uuid.uuid4().hex[:8])
        assert len(made.traders) == 3
        assert len({t.token for t in made.traders}) == len({t.account for t in made.traders}) == 3
        users = set()
        for trader in made.traders:
            own = {"Authorization": f"Bearer {trader.token}"}
            me = http.get("/api/auth/me", headers=own).json()
            assert me["role"] == "trader"
            assert me["email"].startswith(f"loadtest-{made.run}-")
            users.add(me["id"])
            accounts = http.get("/api/accounts", headers=own).json()
            assert [a["id"] for a in accounts if a["name"] == LOADTEST_ACCOUNT] == [trader.account]
        assert users == {t.user_id for t in made.traders}

        assert retire(http, made) == 0
        for trader in made.traders:
            assert http.get(f"/api/users/{trader.user_id}", headers=made.admin_headers).json()["is_active"] is False
            assert http.get("/api/accounts", headers={"Authorization": f"Bearer {trader.token}"}).status_code == 401


def test_one_trader_shares_the_signed_in_users_account(installation: object) -> None:
    inst = installation
    credentials = Credentials(email=inst.email, password=inst.password)  # type: ignore[attr-defined]
    with httpx.Client(base_url=inst.base, timeout=30) as http:  # type: ignore[attr-defined]
        made = prepare(http, credentials, "BTC-USD", traders=1, run="x")
        again = prepare(http, credentials, "BTC-USD", traders=1, run="y")
        assert [t.user_id for t in made.traders] == [None]  # nothing created, nothing to disable
        assert made.traders[0].account == again.traders[0].account  # the same `loadtest` account, opened once


def test_many_traders_need_an_admin_and_the_refusal_says_so(installation: object, tmp_path: Path) -> None:
    inst = installation
    done = _loadtest(inst, tmp_path / "report", Credentials(email=inst.email, password=inst.password))  # type: ignore[attr-defined]
    assert done.returncode == 2, done.stdout + done.stderr  # type: ignore[attr-defined]
    message = " ".join(done.stderr.split())  # type: ignore[attr-defined]
    assert "creating the load-test trader" in message
    assert "HTTP 403" in message
    assert "--traders 1" in message


def test_loadtest_default_mix_meets_default_slos_and_writes_report(
    installation: object, admin: Credentials, tmp_path: Path
) -> None:
    done = _loadtest(installation, tmp_path / "report", admin)
    assert done.returncode == 0, done.stdout + done.stderr  # type: ignore[attr-defined]
    rows = list(csv.DictReader((tmp_path / "report" / "loadtest_stats.csv").open()))
    names = {row["Name"] for row in rows}
    assert {"quotes", "candles", "accounts", "order place", "order cancel", "first quote", "Aggregated"} <= names, names
    total = next(row for row in rows if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0
    assert (tmp_path / "report" / "loadtest.html").stat().st_size > 0
    assert "error_rate=1%" in done.stdout  # type: ignore[attr-defined]
    assert "8 trader(s) with their own paper accounts" in done.stdout  # type: ignore[attr-defined]
    assert not (tmp_path / "report" / "traders.json").exists()  # the credentials file is removed after the run


def test_loadtest_impossible_slo_exits_1_naming_it(installation: object, admin: Credentials, tmp_path: Path) -> None:
    done = _loadtest(installation, tmp_path / "report", admin, "--slo", "error_rate=1%,rps=100000")
    assert done.returncode == 1, done.stdout + done.stderr  # type: ignore[attr-defined]
    assert "SLO missed: rps=100000" in " ".join(done.stderr.split())  # type: ignore[attr-defined]


def test_loadtest_unreadable_slo_is_refused_naming_it(installation: object, admin: Credentials, tmp_path: Path) -> None:
    done = _loadtest(installation, tmp_path / "report", admin, "--slo", "p97=1s")
    assert done.returncode == 2
    assert "unknown SLO 'p97'" in " ".join(done.stderr.split())  # type: ignore[attr-defined]
