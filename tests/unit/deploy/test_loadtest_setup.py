"""`tradestack loadtest`'s wait option and the traders handed to the locustfile."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from tradestack.deploy import loadtest
from tradestack.deploy.loadtest import DEFAULT_WAIT, LoadTestError, Preparation, Trader, locust_env, parse_wait


def test_wait_is_min_dash_max_seconds_and_defaults_to_the_seeds_locust_user() -> None:
    assert parse_wait("1-3") == (1.0, 3.0) == DEFAULT_WAIT
    assert parse_wait("0.2-1") == (0.2, 1.0)
    assert parse_wait("2") == (2.0, 2.0)


@pytest.mark.parametrize("text", ["", "a-b", "3-1", "-1-2", "1-"])
def test_an_unreadable_wait_is_refused_naming_it(text: str) -> None:
    with pytest.raises(LoadTestError, match="--wait"):
        parse_wait(text)


def test_each_trader_goes_to_the_locustfile_in_an_owner_only_file(tmp_path: Path) -> None:
    traders = [Trader(f"token-{n}", False, f"account-{n}", user_id=f"user-{n}") for n in range(3)]
    preparation = Preparation({"Authorization": "Bearer admin"}, traders, "BTC-USD", "0.01", "0.0001", "run")
    env = locust_env(preparation, tmp_path / "traders.json", (1.0, 3.0))
    written = json.loads((tmp_path / "traders.json").read_text())
    assert written == [{"token": f"token-{n}", "api_key": False, "account": f"account-{n}"} for n in range(3)]
    assert stat.S_IMODE((tmp_path / "traders.json").stat().st_mode) == 0o600
    assert env["TRADESTACK_LOADTEST_TRADERS"] == str(tmp_path / "traders.json")
    assert env["TRADESTACK_LOADTEST_WAIT"] == "1.0-3.0"
    assert (env["TRADESTACK_LOADTEST_TICK"], env["TRADESTACK_LOADTEST_LOT"]) == ("0.01", "0.0001")


def _answers(*answers: httpx.Response) -> tuple[httpx.Client, list[str]]:
    queue, seen = list(answers), []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return queue.pop(0)

    return httpx.Client(transport=httpx.MockTransport(handler), base_url="http://target"), seen


def test_the_setup_waits_out_its_own_user_limit_but_not_a_per_ip_one() -> None:
    own = httpx.Response(429, headers={"Retry-After": "0"}, json={"detail": "more than 600 requests per 60 s for user:u1"})
    http, seen = _answers(own, own, httpx.Response(201, json={"id": "u2"}))
    assert loadtest._patient(http, "POST", "/api/users").status_code == 201
    assert len(seen) == 3

    detail = {"detail": "more than 5 requests per 60 s for client 1.2.3.4"}
    per_ip = httpx.Response(429, headers={"Retry-After": "0"}, json=detail)
    http, seen = _answers(per_ip)
    refused = loadtest._patient(http, "POST", "/api/users")
    assert (refused.status_code, len(seen)) == (429, 1)
    assert "TRADESTACK_RATE_LIMIT_EXEMPT_IPS" in str(loadtest._refusal("creating the load-test trader x", refused))


def test_the_setup_gives_up_on_a_limit_longer_than_its_patience() -> None:
    too_long = str(int(loadtest.PATIENCE_SECONDS) + 1)
    long_wait = httpx.Response(429, headers={"Retry-After": too_long}, json={"detail": "for user:u1"})
    http, seen = _answers(long_wait)
    assert loadtest._patient(http, "PATCH", "/api/users/u1").status_code == 429
    assert len(seen) == 1


def test_429_failures_are_counted_from_locusts_failure_report(tmp_path: Path) -> None:
    report = tmp_path / "loadtest_failures.csv"
    report.write_text(
        "Method,Name,Error,Occurrences\n"
        "GET,candles,\"HTTPError('429 Client Error: Too Many Requests for url: /api/market/candles')\",7\n"
        "POST,order place,\"CatchResponseError('HTTP 429: more than 1200 requests')\",2\n"
        "GET,quotes,\"ConnectionResetError(104, 'Connection reset by peer')\",1\n"
    )
    assert loadtest.rate_limited_failures(report) == 9
    assert loadtest.rate_limited_failures(tmp_path / "absent.csv") == 0
