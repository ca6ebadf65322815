"""Every runnable benchmark prints the ``RESULT name=<benchmark> <figure>=<value> ... ratio=<value>`` line."""

from __future__ import annotations

import re
from pathlib import Path

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
