"""The README describes what exists: every metric, every CLI command group, and nothing outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from tradestack import cli
from tradestack.kit import metrics

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_names_every_metric() -> None:
    names = {m._name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    assert names
    missing = sorted(name for name in names if name not in README)
    assert not missing, f"README does not mention: {missing}"


def test_readme_names_every_command_group_and_the_trading_api() -> None:
    groups = {info.name for info in cli.app.registered_groups if info.name}
    missing = sorted(group for group in groups if f"tradestack {group}" not in README)
    assert not missing, f"README does not show: {missing}"
    for endpoint in ("POST /api/orders", "/api/portfolio", "POST /api/auth/password", "/convert"):
        assert endpoint in README


def test_readme_points_at_nothing_outside_the_repository() -> None:
    assert not re.search(r"\.\./", README)
