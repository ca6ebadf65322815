"""`tradestack loadtest`'s wait option and the traders handed to the locustfile."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

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
