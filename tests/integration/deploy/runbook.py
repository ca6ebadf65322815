"""The release-and-rollback runbook's command lines, in order, as the release test runs them against its installation:
the runbook's example spec, edge and staging addresses replaced by the test's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
RELEASE_RUNBOOK = REPO / "docs/runbooks/release-and-rollback.md"
BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def runbook_commands(path: Path = RELEASE_RUNBOOK) -> list[list[str]]:
    """Every `tradestack ...` line of the runbook's bash blocks, split like a shell would, in order."""
    return [
        shlex.split(line)[1:]
        for block in BLOCK.findall(path.read_text())
        for line in block.splitlines()
        if line.startswith("tradestack ")
    ]


def localised(args: list[str], replacements: dict[str, str]) -> list[str]:
    return [replacements.get(arg, arg) for arg in args]
