"""Offline validation of the compose files in deploy/compose (no Docker engine, no compose plugin needed).

1. Interpolate ``${VAR:-default}`` / ``${VAR-default}`` / ``${VAR:?message}`` / ``$$`` like Compose does, then
   validate against the Compose Specification's JSON schema (deploy/compose/compose-spec.schema.json, vendored).
2. This project's rules: every long-running service has a healthcheck and CPU and memory limits; every
   ``depends_on`` is the long form waiting for ``service_healthy`` (a service with a healthcheck) or
   ``service_completed_successfully`` (a one-shot job with ``restart: "no"``); secrets are files under ``secrets/``,
   services use declared ones only, and no environment variable carries a password, key or token in clear;
   every bind-mounted path exists.

Usage: ``python scripts/validate_compose.py [FILE ...]`` (default: every deploy/compose/compose*.yaml); exit 1
printing ``file: service.field: problem`` for each problem.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_DIR = ROOT / "deploy/compose"
SCHEMA = COMPOSE_DIR / "compose-spec.schema.json"
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|(^|_)KEY$|_KEY_|API_KEY|PRIVATE)", re.IGNORECASE)
VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    pass


def interpolate(value: Any, env: dict[str, str], where: str = "") -> Any:
    """Substitute variables in every string of a loaded compose document, as `docker compose config` does."""
    if isinstance(value, dict):
        return {key: interpolate(item, env, f"{where}.{key}" if where else str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env, f"{where}[{index}]") for index, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        if op in {":-", "-"}:
            use_default = current is None or (op == ":-" and current == "")
            return arg if use_default else str(current)
        if op in {":?", "?"}:
            if current is None or (op == ":?" and current == ""):
                raise InterpolationError(f"{where}: required variable {name} is not set: {arg}")
            return current
        return current or ""

    return VARIABLE.sub(substitute, value)


def load(path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise InterpolationError("a compose file is a mapping")
    result: dict[str, Any] = interpolate(document, dict(os.environ) if env is None else env)
    return result


def schema_problems(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path))):
        while error.context:  # oneOf/anyOf: name the alternative that got deepest into the document
            error = max(error.context, key=lambda e: len(e.absolute_path))
        where = ".".join(str(part) for part in error.absolute_path) or "(root)"
        problems.append(f"{where}: {error.message}")
    return problems


def _one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "")).strip('"') == "no"


def rule_problems(document: dict[str, Any], base: Path) -> list[str]:
    problems: list[str] = []
    services: dict[str, dict[str, Any]] = document.get("services") or {}
    declared_secrets: dict[str, Any] = document.get("secrets") or {}
    for name, secret in declared_secrets.items():
        file = (secret or {}).get("file")
        if file is None:
            problems.append(f"secrets.{name}: must be a file (file: ./secrets/{name})")
        elif Path(file).parts[:2] != ("secrets", name) and Path(file).as_posix() != f"./secrets/{name}":
            problems.append(f"secrets.{name}: file {file!r} is not ./secrets/{name}")
    for name, service in services.items():
        at = f"services.{name}"
        healthcheck = service.get("healthcheck")
        if _one_shot(service):
            if healthcheck:
                problems.append(f"{at}.healthcheck: a one-shot job (restart: no) is waited for, not health-checked")
        elif not healthcheck or healthcheck.get("disable") or healthcheck.get("test") in (["NONE"], "NONE", None):
            problems.append(f"{at}.healthcheck: every long-running service needs one")
        limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        for limit in ("cpus", "memory"):
            if limit not in limits:
                problems.append(f"{at}.deploy.resources.limits.{limit}: missing")
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            problems.append(f"{at}.depends_on: use the long form with condition: service_healthy")
            depends = {}
        for other, how in depends.items():
            condition = (how or {}).get("condition")
            target = services.get(other)
            if target is None:
                problems.append(f"{at}.depends_on.{other}: no such service")
            elif condition == "service_healthy":
                if not target.get("healthcheck"):
                    problems.append(f"{at}.depends_on.{other}: waits for health, but {other} has no healthcheck")
            elif condition == "service_completed_successfully":
                if not _one_shot(target):
                    problems.append(f"{at}.depends_on.{other}: {other} is long-running: wait for service_healthy")
            else:
                problems.append(f"{at}.depends_on.{other}.condition: {condition!r}, expected service_healthy")
        for secret in service.get("secrets") or []:
            secret_name = secret if isinstance(secret, str) else secret.get("source")
            if secret_name not in declared_secrets:
                problems.append(f"{at}.secrets: {secret_name!r} is not declared under the top-level secrets")
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
        for key, value in environment.items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE") and value not in (None, ""):
                problems.append(f"{at}.environment.{key}: a secret in clear: mount it as a file ({key}_FILE)")
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else (volume.get("source") or "")
            if source.startswith((".", "/")) and not (base / source).exists():
                problems.append(f"{at}.volumes: {source} does not exist (relative to {base.name}/)")
    return problems


def validate(path: Path, env: dict[str, str] | None = None) -> list[str]:
    """Every problem of one compose file (empty: valid)."""
    try:
        document = load(path, env)
    except (InterpolationError, yaml.YAMLError) as exc:
        return [str(exc)]
    return schema_problems(document) + rule_problems(document, path.parent)


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or sorted(COMPOSE_DIR.glob("compose*.yaml"))
    status = 0
    for path in files:
        problems = validate(path)
        for problem in problems:
            print(f"{path.name}: {problem}", file=sys.stderr)
        print(f"compose {path.name}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        status |= bool(problems)
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
