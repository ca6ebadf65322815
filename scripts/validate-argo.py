"""Render deploy/release/release.yaml (canary and blue-green) with `tradestack deploy render-argo` and validate every
object against the Rollout / AnalysisTemplate schemas in deploy/k8s/argo (exit 1 naming each bad field)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
TRADESTACK = Path(sys.executable).parent / "tradestack"
SCHEMAS = {
    "Rollout": json.loads((ROOT / "deploy/k8s/argo/rollout.schema.json").read_text()),
    "AnalysisTemplate": json.loads((ROOT / "deploy/k8s/argo/analysistemplate.schema.json").read_text()),
}


def validate(spec: Path) -> int:
    rendered = subprocess.run([TRADESTACK, "deploy", "render-argo", str(spec)], capture_output=True, text=True, check=False)
    if rendered.returncode != 0:
        print(rendered.stderr, file=sys.stderr)
        return 1
    problems = 0
    for document in yaml.safe_load_all(rendered.stdout):
        validator = jsonschema.Draft202012Validator(SCHEMAS[document["kind"]])
        for error in validator.iter_errors(document):
            where = ".".join(str(p) for p in error.absolute_path) or "(root)"
            print(f"{spec.name}: {document['kind']} {document['metadata']['name']}: {where}: {error.message}", file=sys.stderr)
            problems += 1
    print(f"render-argo {spec.name}: {'ok' if not problems else f'{problems} problem(s)'}")
    return 1 if problems else 0


def main() -> int:
    spec = ROOT / "deploy/release/release.yaml"
    status = validate(spec)
    data = yaml.safe_load(spec.read_text())
    data["strategy"] = "blueGreen"
    with tempfile.TemporaryDirectory() as directory:
        blue_green = Path(directory) / "release-blue-green.yaml"
        blue_green.write_text(yaml.safe_dump(data))
        status |= validate(blue_green)
    return status


if __name__ == "__main__":
    sys.exit(main())
