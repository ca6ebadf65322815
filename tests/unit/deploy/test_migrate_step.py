"""The deploy's migration step: a migrate command still running at `migrateTimeout` is stopped, and the failure says
what it had printed (what it was doing, or waiting for), kept in the step's log too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tradestack.deploy.engine import DeployError, Engine
from tradestack.deploy.spec import parse_spec
from tradestack.deploy.state import DeployState

STUCK = (
    "import sys, time;"
    "print('upgrading h28rec_a', flush=True);"
    "print('waiting (0 s) for the migration lock, held by backend pid 4242 (release-blue)', file=sys.stderr, flush=True);"
    "time.sleep(60)"
)


def test_a_migration_past_its_timeout_is_stopped_and_the_failure_says_what_it_printed(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "release": {"version": "1.2.3", "migrate": [sys.executable, "-c", STUCK]},
            "target": {
                "haproxySocket": str(tmp_path / "haproxy.sock"),
                "colours": {"blue": {"port": 8101}, "green": {"port": 8102}},
                "stateDir": str(tmp_path / "deploy-state"),
                "migrateTimeout": "2s",
            },
        }
    )
    engine = Engine(spec, str(tmp_path / "release.yaml"))
    state = DeployState(id="d-1", version="1.2.3", spec="release.yaml", old="blue", new="green")
    engine._save(state)  # as the deploy has by then
    with pytest.raises(DeployError) as failed:
        engine._migrate(state)
    assert failed.value.reason == "migration_failed"
    message = str(failed.value)
    assert message.startswith("migrations still running after 2s, stopped: ")
    assert "upgrading h28rec_a" in message
    assert "held by backend pid 4242 (release-blue)" in message
    log = (tmp_path / "deploy-state" / "migrate-d-1.log").read_text()
    assert "held by backend pid 4242" in log
    assert f"(log {tmp_path / 'deploy-state' / 'migrate-d-1.log'})" in message
