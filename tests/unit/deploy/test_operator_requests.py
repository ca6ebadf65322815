"""`tradestack deploy promote [--full]` / `abort` handed to a running deploy command through the state directory:
what is refused before anything is written (the engine's own behaviour runs in tests/integration/deploy)."""

from __future__ import annotations

import os
import threading
import time
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
    """The (stand-in) command never takes them: each call says so (exit 1 from the CLI), and leaves the request for it."""
    engine = _engine(tmp_path, "paused")
    with pytest.raises(DeployError, match=r"has not taken `promote` within 0.3s; it is paused at step 3") as caught:
        engine.request("promote", wait=0.3)
    assert caught.value.reason == "not_taken"
    assert engine.store.take_request() == "promote"
    engine = _engine(tmp_path, "running")
    with pytest.raises(DeployError, match="has not taken `promote-full`"):
        engine.request("promote-full", wait=0.3)
    assert engine.store.take_request() == "promote-full"


def test_a_request_taken_by_the_deploy_command_is_answered_with_its_state(tmp_path: Path) -> None:
    """The command takes the request and moves on: the call returns the state it moved to, with no error."""
    engine = _engine(tmp_path, "paused")

    def deploy_command() -> None:  # what the running command does at its next look
        while engine.store.take_request() is None:
            time.sleep(0.01)
        state = engine.store.load()
        assert state is not None
        state.phase, state.step = "running", 4
        engine.store.save(state)

    command = threading.Thread(target=deploy_command)
    command.start()
    try:
        assert (engine.request("promote", wait=10).phase, engine.store.load().step) == ("running", 4)  # type: ignore[union-attr]
    finally:
        command.join(15)
    assert not engine.store.request_path.exists()


def test_no_request_is_lost_or_read_half_written_while_the_deploy_command_looks(tmp_path: Path) -> None:
    """The command looks for requests in a tight loop while an operator leaves 500, each once the last is taken: every
    one arrives, whole. (Written in place, a look between the file's truncation and its write removed it unread.)"""
    store = _engine(tmp_path, "paused").store
    taken: list[str] = []
    done = threading.Event()

    def deploy_command() -> None:
        while not done.is_set():
            what = store.take_request()
            if what is not None:
                taken.append(what)

    command = threading.Thread(target=deploy_command)
    command.start()
    try:
        for number in range(500):
            store.request(f"promote-{number}")
            deadline = time.monotonic() + 5
            while len(taken) <= number and time.monotonic() < deadline:
                time.sleep(0)
            assert len(taken) == number + 1, f"request {number} was lost"
    finally:
        done.set()
        command.join(15)
    assert taken == [f"promote-{number}" for number in range(500)]


@pytest.mark.parametrize(("phase", "message"), [("baking", "already promoted"), ("completed", "nothing to promote")])
def test_promote_after_promotion_is_refused(tmp_path: Path, phase: str, message: str) -> None:
    with pytest.raises(DeployError, match=message):
        _engine(tmp_path, phase).request("promote-full" if phase == "baking" else "promote")
