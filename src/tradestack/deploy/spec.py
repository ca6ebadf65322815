"""The release spec: what to run as the new colour, how to shift traffic, and how to judge it (YAML, validated).

Follows Argo Rollouts' vocabulary so one spec renders to a Kubernetes Rollout too (`tradestack deploy render-argo`):

* ``strategy: canary`` with ``steps`` of ``setWeight: N``, ``pause: {duration: 30s}`` (no duration: wait for
  ``tradestack deploy promote``) and ``analysis: {}`` (an inline analysis run, blocking the step);
* ``strategy: blueGreen``: the same loop with the steps ``[setWeight: 100, analysis]`` (a post-promotion analysis);
* ``analysis``: ``interval``, ``count``, ``failureLimit``, ``consecutiveErrorLimit``, ``inconclusive: hold|abort``
  and ``metrics`` (``error_ratio``, ``latency`` at a quantile from the ``api_request_duration_seconds`` buckets),
  each with ``minRequests`` below which a measurement is inconclusive.

Every bad field is reported with its path (``strategy.steps[2].setWeight: ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tradestack.deploy.slo import SloError, parse_duration

DEFAULT_STEPS: list[dict[str, Any]] = [
    {"setWeight": 10},
    {"analysis": {}},
    {"setWeight": 50},
    {"analysis": {}},
    {"setWeight": 100},
    {"analysis": {}},
]
# The documented alternative: smaller first steps for risky releases.
GRADUAL_STEPS: list[dict[str, Any]] = [
    {"setWeight": 10},
    {"analysis": {}},
    {"setWeight": 25},
    {"analysis": {}},
    {"setWeight": 50},
    {"analysis": {}},
    {"setWeight": 100},
    {"analysis": {}},
]
BLUE_GREEN_STEPS: list[dict[str, Any]] = [{"setWeight": 100}, {"analysis": {}}]


class SpecError(ValueError):
    """A release spec that cannot be used; `problems` lists each bad field as ``path: what to fix``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _seconds(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except SloError as exc:
            raise ValueError(str(exc)) from None
    raise ValueError("a duration such as 10s, 500ms or 2m")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Metric(_Strict):
    """One analysis metric measured on the new colour's own requests (Prometheus label ``track``)."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    kind: Literal["error_ratio", "latency"]
    max: float = Field(gt=0, description="error_ratio: largest share of 5xx; latency: largest seconds at the quantile.")
    quantile: float = Field(default=0.95, gt=0, lt=1)
    min_requests: int = Field(default=20, ge=0, alias="minRequests")

    @field_validator("max", mode="before")
    @classmethod
    def _max(cls, value: Any, info: Any) -> float:
        if isinstance(value, str) and value.endswith("%"):
            return float(value[:-1]) / 100
        return _seconds(value) if isinstance(value, str) else float(value)


class Analysis(_Strict):
    """How a step is judged: `count` measurements, `interval` apart, over the last `window` of traffic."""

    interval: float = 10.0
    window: float | None = Field(default=None, description="Range of each query; default: the interval (at least 2 s).")
    count: int = Field(default=3, ge=1)
    failure_limit: int = Field(default=0, ge=0, alias="failureLimit")
    consecutive_error_limit: int = Field(default=4, ge=0, alias="consecutiveErrorLimit")
    inconclusive: Literal["hold", "abort"] = "hold"
    metrics: tuple[Metric, ...] = (
        Metric(name="error-ratio", kind="error_ratio", max=0.01),
        Metric(name="p95-latency", kind="latency", quantile=0.95, max=0.5),
    )

    @field_validator("interval", "window", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float | None:
        return None if value is None else _seconds(value)

    @field_validator("metrics")
    @classmethod
    def _unique(cls, value: tuple[Metric, ...]) -> tuple[Metric, ...]:
        names = [m.name for m in value]
        if len(set(names)) != len(names):
            raise ValueError(f"metric names must be unique: {names}")
        if not value:
            raise ValueError("at least one metric")
        return value

    @property
    def query_window(self) -> float:
        return max(2.0, self.window or self.interval)


class Pause(_Strict):
    duration: float | None = None

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else _seconds(value)


class Step(_Strict):
    """Exactly one of setWeight, pause, analysis."""

    set_weight: int | None = Field(default=None, ge=0, le=100, alias="setWeight")
    pause: Pause | None = None
    analysis: Analysis | None = None

    @model_validator(mode="after")
    def _one(self) -> Step:
        given = [name for name in ("set_weight", "pause", "analysis") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("each step is exactly one of setWeight, pause, analysis")
        return self


class Release(_Strict):
    """What the new colour runs: the command (its port is appended as ``--port N``) and extra environment.

    ``migrate`` runs first, with the same environment, while the old colour still serves: by default the new version's
    ``tradestack db upgrade --expand-only``, which refuses a migration that drops, renames or retypes what the old
    version reads. ``allowContract`` names revisions whose contract steps the operator checked no running version
    needs (passed as ``--allow-contract``); ``migrate: null`` leaves migrations to the operator.
    """

    version: str = Field(min_length=1, max_length=64)
    command: tuple[str, ...] = Field(default=("tradestack", "serve", "api"), min_length=1)
    migrate: tuple[str, ...] | None = Field(default=("tradestack", "db", "upgrade", "--expand-only"), min_length=1)
    allow_contract: tuple[str, ...] = Field(default=(), alias="allowContract")
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None

    @model_validator(mode="after")
    def _allow_needs_migrate(self) -> Release:
        if self.allow_contract and self.migrate is None:
            raise ValueError("allowContract needs the migrate step (migrate is null)")
        return self


class Colour(_Strict):
    port: int = Field(ge=1, le=65535)
    host: str = "127.0.0.1"


class Smoke(_Strict):
    enabled: bool = True
    symbol: str = "BTC-USD"
    email_env: str = Field(default="TRADESTACK_SMOKE_EMAIL", alias="emailEnv")
    password_env: str = Field(default="TRADESTACK_SMOKE_PASSWORD", alias="passwordEnv")


class OneHost(_Strict):
    """The one-host target: HAProxy's runtime API, the backend whose servers are named after the colours, Prometheus."""

    haproxy_socket: str = Field(alias="haproxySocket")
    backend: str = "api"
    colours: dict[Literal["blue", "green"], Colour]
    prometheus: str = "http://127.0.0.1:9090"
    state_dir: str = Field(default="var/deploy", alias="stateDir")
    ready_timeout: float = Field(default=120.0, alias="readyTimeout")
    migrate_timeout: float = Field(default=600.0, alias="migrateTimeout")
    drain_timeout: float = Field(default=30.0, alias="drainTimeout")
    bake: float = Field(default=300.0, description="Old colour kept warm (weight 0) after promotion, for a one-flip rollback.")
    smoke: Smoke = Smoke()

    @field_validator("ready_timeout", "migrate_timeout", "drain_timeout", "bake", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float:
        return _seconds(value)

    @field_validator("colours")
    @classmethod
    def _both(cls, value: dict[str, Colour]) -> dict[str, Colour]:
        if set(value) != {"blue", "green"}:
            raise ValueError("name both colours: blue and green")
        if value["blue"].port == value["green"].port:
            raise ValueError("blue and green need different ports")
        return value


class ReleaseSpec(_Strict):
    release: Release
    strategy: Literal["canary", "blueGreen"] = "canary"
    steps: tuple[Step, ...] | None = None
    analysis: Analysis = Analysis()
    target: OneHost

    @model_validator(mode="after")
    def _steps(self) -> ReleaseSpec:
        steps = self.effective_steps
        weights = [s.set_weight for s in steps if s.set_weight is not None]
        if not weights or weights[-1] != 100:
            raise ValueError("steps must end with setWeight: 100 (then the release is promoted)")
        if weights != sorted(weights):
            raise ValueError(f"setWeight steps must not decrease: {weights}")
        return self

    @property
    def effective_steps(self) -> tuple[Step, ...]:
        if self.steps is not None:
            return self.steps
        raw = BLUE_GREEN_STEPS if self.strategy == "blueGreen" else DEFAULT_STEPS
        return tuple(Step.model_validate(step) for step in raw)

    def analysis_of(self, step: Step) -> Analysis:
        """The analysis a step runs: its own fields over the spec's defaults."""
        assert step.analysis is not None  # noqa: S101 - called for analysis steps only
        given = step.analysis.model_dump(exclude_unset=True, by_alias=False)
        return self.analysis.model_copy(update=given)


def _location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(spec)"


def parse_spec(data: Any, source: str = "spec") -> ReleaseSpec:
    """Validate a loaded YAML document; SpecError names every bad field."""
    if not isinstance(data, dict):
        raise SpecError(source, ["the spec must be a mapping with release, target and optionally strategy, steps, analysis"])
    try:
        return ReleaseSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-")))
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{_location(loc)}: {message}")
        raise SpecError(source, problems) from None


def load_spec(path: Path) -> ReleaseSpec:
    """Read and validate a spec file."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(str(path), [f"cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError(str(path), [f"not YAML: {exc}"]) from None
    return parse_spec(data, str(path))
