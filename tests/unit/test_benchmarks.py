"""Every runnable benchmark prints the ``RESULT name=<benchmark> <figure>=<value> ... ratio=<value>`` line."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_every_runnable_benchmark_prints_its_result_line_with_a_ratio() -> None:
    scripts = {path.stem: path.read_text() for path in sorted(BENCHMARKS.glob("*.py"))}
    runnable = {name: source for name, source in scripts.items() if 'if __name__ == "__main__":' in source}
    assert {"api_baseline", "predict_api", "quotes_api"} <= set(runnable)  # the libraries and bare apps are not run
    missing = sorted(
        name
        for name, source in runnable.items()
        if not re.search(rf'f"RESULT name={re.escape(name)} ', source) or " ratio=" not in source
    )
    assert not missing, f"benchmarks without a RESULT name=<their name> ... ratio=... line: {missing}"


def test_the_order_path_profile_finds_every_step_and_statement_hook_it_times_in_this_tree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `order_path.py --profile` wraps methods by name; one renamed in src/ would leave its step out of the report.
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the benchmark imports its `harness` next to it
    spec = importlib.util.spec_from_file_location("order_path_under_test", BENCHMARKS / "order_path.py")
    assert spec is not None
    assert spec.loader is not None
    order_path = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, order_path)  # its dataclasses look their module up there
    spec.loader.exec_module(order_path)
    assert order_path.missing_hooks() == set()
    assert len(order_path.profile_steps()) >= 20
    assert len(order_path.statement_hooks()) == 2
