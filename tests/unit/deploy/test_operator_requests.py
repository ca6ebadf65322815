"""`tradestack deploy promote [--full]` / `abort` handed to a running deploy command through the state directory:
what is refused before anything is written (the engine's own behaviour runs in tests/integration/deploy)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tradestack.deploy.engine import DeployError, Engine
from tradestack.deploy.spec import parse_spec
from tradestack.deploy.state import DeployState


def _engine(tmp_path: Path, phase: str) -> Engine:
    spec = parse_spec(
        {
            "release": {"version": "1.2.3"},
            "target": {
                "haproxySocket": str(tmp_path / "haproxy.sock"),
                "colours": {"blue": {"port": 8101}, "green": {"port": 8102}},
                "stateDir": str(tmp_path / "state"),
            },
        }
    )
    engine = Engine(spec, "spec.yaml")
    # The deploy command: alive, and not this process (the parent of the test process stands in for it).
    engine.store.save(DeployState(id="d1", version="1.2.3", spec="spec.yaml", old="blue", new="green", phase=phase,
                                  step=3, engine_pid=os.getppid()))  # fmt: skip
    return engine


def test_promote_while_a_step_runs_is_refused_without_a_request(tmp_path: Path) -> None:
    engine = _engine(tmp_path, "running")
    with pytest.raises(DeployError, match="`promote` resumes a pause or a hold; `promote --full` skips") as caught:
        engine.request("promote")
    assert caught.value.reason == "not_paused"
    assert not engine.store.request_path.exists()


def test_promote_at_a_pause_and_full_promote_are_handed_to_the_deploy_command(tmp_path: Path) -> None:
    engine = _engine(tmp_path, "paused")
    assert engine.request("promote", wait=0.3).phase == "paused"  # the (stand-in) command did not act on it
    assert engine.store.take_request() == "promote"
    engine = _engine(tmp_path, "running")
    engine.request("promote-full", wait=0.3)
    assert engine.store.take_request() == "promote-full"


@pytest.mark.parametrize(("phase", "message"), [("baking", "already promoted"), ("completed", "nothing to promote")])
def test_promote_after_promotion_is_refused(tmp_path: Path, phase: str, message: str) -> None:
    with pytest.raises(DeployError, match=message):
        _engine(tmp_path, phase).request("promote-full" if phase == "baking" else "promote")
