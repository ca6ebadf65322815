"""The compose files of deploy/compose as the tests read them: the `tradestack` services, their commands, healthchecks
and environment, so the tests start exactly what the compose files run (a container's paths mapped to the test's)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
COMPOSE_DIR = REPO / "deploy/compose"
DEVELOPMENT = COMPOSE_DIR / "compose.yaml"
PRODUCTION = COMPOSE_DIR / "compose.production.yaml"


def _validator() -> Any:
    spec = importlib.util.spec_from_file_location("validate_compose", REPO / "scripts/validate_compose.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("validate_compose", module)
    spec.loader.exec_module(module)
    return module


validate_compose = _validator()


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    environment: dict[str, str]
    healthcheck: list[str] | None

    def healthcheck_argv(self, tradestack: str, python: str) -> list[str]:
        """The healthcheck as this machine runs it: CMD → the argv, CMD-SHELL → sh -c; the image's programs mapped."""
        assert self.healthcheck is not None, f"{self.name} has no healthcheck"
        kind, *rest = self.healthcheck
        if kind == "CMD-SHELL":
            return ["sh", "-c", rest[0]]
        assert kind == "CMD", self.healthcheck
        program = {"tradestack": tradestack, "python": python}.get(rest[0], rest[0])
        return [program, *rest[1:]]


def tradestack_services(path: Path) -> dict[str, Service]:
    """Every service of `path` that runs the Tradestack image (built here, or named tradestack...)."""
    document = validate_compose.load(path, {})
    found = {}
    for name, service in document["services"].items():
        image = str(service.get("image", ""))
        if "build" not in service and not image.split("/")[-1].startswith("tradestack"):
            continue
        environment = service.get("environment") or {}
        test = (service.get("healthcheck") or {}).get("test")
        found[name] = Service(name, list(service["command"]), {k: str(v) for k, v in environment.items()}, test)
    return found


def map_paths(value: str, mapping: dict[str, str]) -> str:
    for container_path, local_path in mapping.items():
        value = value.replace(container_path, local_path)
    return value
