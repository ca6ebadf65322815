"""The deploy state file, the history, operator requests and the deploy metrics (textfile for Prometheus).

``<stateDir>/state.json`` is rewritten atomically after every step, so a deploy whose command died (even by
``kill -9``) can be inspected with ``tradestack deploy status`` and finished with ``promote`` or ``rollback``.
Finished deploys are appended to ``history.jsonl``. ``promote``/``abort`` given while a deploy command runs are
written to ``request`` and picked up by that command between steps and measurements.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

ACTIVE_PHASES = frozenset({"starting", "running", "paused", "baking"})
FINAL_PHASES = frozenset({"completed", "rolled_back"})


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class DeployState:
    id: str
    version: str
    spec: str
    old: str  # the colour serving before the deploy
    new: str  # the colour being deployed
    phase: str = "starting"
    step: int = -1
    weight: int = 0  # new colour's weight as read back from HAProxy
    engine_pid: int | None = None
    new_pid: int | None = None
    old_pid: int | None = None
    started_at: str = field(default_factory=now_iso)
    started_monotonic: float = 0.0
    finished_at: str | None = None
    duration_seconds: float | None = None
    reason: str | None = None
    first_bad_at: float | None = None  # monotonic time of the first failed measurement or failed gate
    rollback_seconds: float | None = None  # from first_bad_at to the new colour's weight 0
    weight_set_at: float | None = None  # monotonic time of the last weight change
    bad_step_seconds: float | None = None  # from the weight change that exposed the bad release to its weight 0
    bad_step_at: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    def event(self, kind: str, **detail: Any) -> None:
        self.events.append({"at": now_iso(), "event": kind, **detail})


class StateStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "state.json"
        self.history_path = directory / "history.jsonl"
        self.request_path = directory / "request"
        self.metrics_path = directory / "deploy.prom"

    def load(self) -> DeployState | None:
        try:
            return DeployState(**json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None

    def save(self, state: DeployState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_whole(self.path, json.dumps(asdict(state), indent=2))

    def append_history(self, state: DeployState) -> None:
        summary = {k: v for k, v in asdict(state).items() if k not in {"events", "started_monotonic"}}
        with self.history_path.open("a") as handle:
            handle.write(json.dumps(summary) + "\n")

    def history(self) -> list[dict[str, Any]]:
        if not self.history_path.exists():
            return []
        return [json.loads(line) for line in self.history_path.read_text().splitlines() if line.strip()]

    def request(self, what: str) -> None:
        """Leave `what` for the running deploy command (a request left before and not taken yet is replaced).

        Written aside, then renamed into place: `take_request` finds the whole request or none. Written in place, a
        reader between the file's truncation and its write read nothing and removed the file, and the request was lost
        (the deploy stayed paused while `promote` had said nothing wrong)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_whole(self.request_path, what)

    def has_request(self) -> bool:
        """Whether a request is left that the deploy command has not taken yet."""
        return self.request_path.exists()

    def take_request(self) -> str | None:
        """The request left for the deploy command, taken (None: none). Renamed away before it is read, so a request
        left meanwhile is a file of its own, for the next look, not removed unread."""
        taken = self.request_path.with_name(f"{self.request_path.name}.taken.{os.getpid()}")
        try:
            os.replace(self.request_path, taken)
        except FileNotFoundError:
            return None
        try:
            return taken.read_text().strip() or None
        finally:
            taken.unlink(missing_ok=True)

    def write_metrics(self, state: DeployState | None) -> None:
        """``deploy_step``, ``deploy_aborted_total{reason}`` and ``deploy_duration_seconds`` in the textfile format."""
        registry = CollectorRegistry()
        step = Gauge("deploy_step", "Index of the release step the current deploy is at (-1: none).", registry=registry)
        weight = Gauge("deploy_weight", "Traffic weight of the colour being deployed, read back from HAProxy.", registry=registry)
        aborted = Gauge("deploy_aborted_total", "Deploys rolled back, by reason.", ["reason"], registry=registry)
        duration = Gauge(
            "deploy_duration_seconds", "Duration of the last finished deploy, by outcome.", ["outcome"], registry=registry
        )
        step.set(state.step if state is not None and state.active else -1)
        weight.set(state.weight if state is not None else 0)
        history = self.history()
        for reason, count in Counter(h["reason"] or "unknown" for h in history if h["phase"] == "rolled_back").items():
            aborted.labels(reason=reason).set(count)
        for outcome in ("completed", "rolled_back"):
            last = next((h for h in reversed(history) if h["phase"] == outcome), None)
            if last is not None and last["duration_seconds"] is not None:
                duration.labels(outcome=outcome).set(last["duration_seconds"])
        self.directory.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(self.metrics_path), registry)


def _write_whole(path: Path, text: str) -> None:
    """Write `text` to `path` aside, then rename it into place: a reader finds the old file or the new one, whole."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
