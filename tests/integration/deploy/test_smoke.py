"""`tradestack smoke` against a real `tradestack up`: every check passes, and a broken one is named with exit 1."""

from __future__ import annotations

import json

import pytest

from ..trading.processes import run_cli  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow


def test_smoke_against_up_passes_every_check(installation: object) -> None:
    inst = installation
    done = run_cli(
        inst.env,
        inst.cwd,
        "smoke",
        "--base-url",
        inst.base,
        "--email",
        inst.email,
        "--password",
        inst.password,
        "--json",  # type: ignore[attr-defined]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == [
        "health", "ready", "database", "version", "login", "quotes", "candles", "order", "websocket",
    ]  # fmt: skip
    assert {c["status"] for c in report["checks"]} == {"ok"}, report
    order = next(c for c in report["checks"] if c["name"] == "order")
    assert "placed and canceled" in order["detail"]


def test_smoke_with_wrong_password_exits_1_naming_login(installation: object) -> None:
    inst = installation
    done = run_cli(inst.env, inst.cwd, "smoke", "--base-url", inst.base, "--email", inst.email, "--password", "wrong")  # type: ignore[attr-defined]
    assert done.returncode == 1, done.stdout + done.stderr
    assert "smoke failed: login" in " ".join(done.stderr.split())
    assert "login" in done.stdout
    assert "failed" in done.stdout
    # Checks that need no credential still ran; the ones that do were skipped, not failed.
    assert "skipped" in done.stdout


def test_smoke_of_nothing_listening_names_health(installation: object) -> None:
    from ..trading.processes import free_port  # type: ignore[import-not-found]

    inst = installation
    done = run_cli(inst.env, inst.cwd, "smoke", "--base-url", f"http://127.0.0.1:{free_port()}", "--json", "--timeout", "2")  # type: ignore[attr-defined]
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["failed"][:4] == ["health", "ready", "database", "version"]
