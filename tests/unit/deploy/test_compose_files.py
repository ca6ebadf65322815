"""deploy/compose: both stacks valid against the Compose Specification schema and this project's rules, and the
validator (scripts/validate_compose.py, run by `make lint`) failing on each kind of broken field."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "deploy/compose"


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("validate_compose", ROOT / "scripts/validate_compose.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("validate_compose", module)
    spec.loader.exec_module(module)
    return module


vc = _module()
PRODUCTION = vc.load(COMPOSE / "compose.production.yaml", {})


def _problems(document: dict[str, Any]) -> list[str]:
    problems: list[str] = vc.schema_problems(document) + vc.rule_problems(document, COMPOSE)
    return problems


@pytest.mark.parametrize("name", ["compose.yaml", "compose.production.yaml"])
def test_shipped_compose_files_are_valid(name: str) -> None:
    assert vc.validate(COMPOSE / name, {}) == []


def test_production_stack_has_every_service_of_the_issue() -> None:
    assert set(PRODUCTION["services"]) == {
        "nginx", "haproxy", "api-blue", "api-green", "engine", "marketdata", "migrate", "postgres-primary",
        "postgres-replica", "redis-primary", "redis-replica", "prometheus", "alertmanager", "grafana",
    }  # fmt: skip
    services = PRODUCTION["services"]
    assert "--replicaof" in services["redis-replica"]["command"][-1]
    assert services["postgres-replica"]["depends_on"] == {"postgres-primary": {"condition": "service_healthy"}}
    assert services["api-blue"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    # Tradestack reads every secret from a file; none is in the environment.
    environment = services["api-blue"]["environment"]
    assert environment["TRADESTACK_SECRET_KEY_FILE"] == "/run/secrets/secret_key"
    assert not {"TRADESTACK_SECRET_KEY", "TRADESTACK_DATABASE_URL", "TRADESTACK_REDIS_URL"} & set(environment)


def _broken(change: Any) -> list[str]:
    document = copy.deepcopy(PRODUCTION)
    change(document["services"], document)
    return _problems(document)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda s, d: s["api-blue"]["depends_on"]["engine"].update(condition="service_up"),
            "services.api-blue.depends_on.engine.condition: 'service_up' is not one of",
        ),
        (
            lambda s, d: s["engine"]["deploy"]["resources"]["limits"].update(memroy="1G"),
            "services.engine.deploy.resources.limits: 'memroy' does not match",
        ),
        (lambda s, d: s["nginx"].update(ports="443:443"), "services.nginx.ports: '443:443' is not of type 'array'"),
        (lambda s, d: s["haproxy"].pop("healthcheck"), "services.haproxy.healthcheck: every long-running service needs one"),
        (lambda s, d: s["haproxy"].update(healthcheck={"disable": True}), "services.haproxy.healthcheck: every long-running"),
        (
            lambda s, d: s["marketdata"]["deploy"]["resources"]["limits"].pop("cpus"),
            "services.marketdata.deploy.resources.limits.cpus: missing",
        ),
        (
            lambda s, d: s["engine"].update(depends_on=["postgres-primary"]),
            "services.engine.depends_on: use the long form with condition: service_healthy",
        ),
        (
            lambda s, d: s["api-blue"]["depends_on"]["engine"].update(condition="service_started"),
            "services.api-blue.depends_on.engine.condition: 'service_started', expected service_healthy",
        ),
        (
            lambda s, d: s["api-blue"]["depends_on"].update(nginx={"condition": "service_completed_successfully"}),
            "services.api-blue.depends_on.nginx: nginx is long-running",
        ),
        (
            lambda s, d: s["api-blue"]["environment"].update(TRADESTACK_SECRET_KEY="hunter2" * 6),
            "services.api-blue.environment.TRADESTACK_SECRET_KEY: a secret in clear",
        ),
        (
            lambda s, d: s["grafana"]["environment"].update(GF_SECURITY_ADMIN_PASSWORD="admin"),
            "services.grafana.environment.GF_SECURITY_ADMIN_PASSWORD: a secret in clear",
        ),
        (lambda s, d: s["engine"]["secrets"].append("api_token"), "services.engine.secrets: 'api_token' is not declared"),
        (
            lambda s, d: d["secrets"]["secret_key"].update(file="/etc/tradestack/secret_key"),
            "secrets.secret_key: file '/etc/tradestack/secret_key' is not ./secrets/secret_key",
        ),
        (
            lambda s, d: d["secrets"].update(secret_key={"environment": "SECRET_KEY"}),
            "secrets.secret_key: must be a file",
        ),
        (
            lambda s, d: s["prometheus"]["volumes"].append("./prometheus-rules.yml:/etc/prometheus/extra.yml:ro"),
            "services.prometheus.volumes: ./prometheus-rules.yml does not exist",
        ),
        (
            lambda s, d: s["migrate"].update(healthcheck=s["engine"]["healthcheck"]),
            "services.migrate.healthcheck: a one-shot job",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_broken_field_is_named(change: Any, expected: str) -> None:
    problems = _broken(change)
    assert any(p.startswith(expected) for p in problems), problems


def test_interpolation_follows_compose() -> None:
    assert vc.interpolate("${A:-x} ${B-y} $$HOME ${C}", {"A": "", "B": "", "C": "c"}) == "x  $HOME c"
    assert vc.interpolate({"k": ["${A}"]}, {"A": "a"}) == {"k": ["a"]}
    with pytest.raises(vc.InterpolationError, match="image: required variable IMAGE is not set: say which"):
        vc.interpolate({"image": "${IMAGE:?say which}"}, {})
    # The image names default, and an operator's variable wins.
    assert PRODUCTION["services"]["api-green"]["image"] == "tradestack:latest"
    document = vc.load(COMPOSE / "compose.production.yaml", {"TRADESTACK_GREEN_IMAGE": "tradestack:1.5.0"})
    assert document["services"]["api-green"]["image"] == "tradestack:1.5.0"


def test_command_line_exits_1_naming_the_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    document["services"]["tradestack"]["healthcheck"]["interval"] = ["10s"]
    broken = tmp_path / "compose.yaml"  # outside deploy/compose: a concurrent `make lint` must not see it
    broken.write_text(yaml.safe_dump(document))
    assert vc.main([str(broken)]) == 1
    err = capsys.readouterr().err
    assert f"{broken.name}: services.tradestack.healthcheck.interval: ['10s'] is not of type 'string'" in err
    assert vc.main([str(COMPOSE / "compose.yaml")]) == 0
