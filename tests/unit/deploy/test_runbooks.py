"""The runbooks' `tradestack` command lines exist: each parses (`--help` of the same command path succeeds)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from tradestack.cli import app

RUNBOOKS = sorted((Path(__file__).resolve().parents[3] / "docs/runbooks").glob("*.md"))
BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in RUNBOOKS:
        for block in BLOCK.findall(path.read_text()):
            for line in block.splitlines():
                if line.startswith("tradestack "):
                    found.append((path.name, shlex.split(line)[1:]))
    return found


def test_every_runbook_has_commands() -> None:
    assert {p.name for p in RUNBOOKS} == {"go-live.md", "release-and-rollback.md", "incident.md", "disaster-recovery.md"}
    assert len(_commands()) >= 15


@pytest.mark.parametrize(("runbook", "args"), _commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_runbook_command_exists(runbook: str, args: list[str]) -> None:
    command = typer.main.get_command(app)
    words = iter(args)
    while hasattr(command, "commands"):
        word = next(words, None)
        assert word is not None, f"{runbook}: tradestack {' '.join(args)} names no command"
        assert word in command.commands, f"{runbook}: tradestack {' '.join(args)}: no command {word!r}"
        command = command.commands[word]
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for option in (a.split("=")[0] for a in args if a.startswith("--")):
        assert option in known, f"{runbook}: tradestack {' '.join(args)}: {option} is not an option of {command.name}"
