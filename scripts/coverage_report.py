"""Report the combined coverage of the last `make test` run and gate it on the share of lines covered.

Reads the combined data file named in pyproject.toml ([tool.coverage.run] data_file), writes the
HTML report ([tool.coverage.html] directory) and var/coverage/coverage.json, prints one row per
package of src/tradestack (lines and branches) plus the server-side modules, and exits 1 when the
line coverage of src/ is under --fail-under or when no server process recorded coverage.

The gate is on lines, not on coverage.py's own total (which mixes lines and branches); the branch
figure is printed next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "tradestack"
JSON_REPORT = ROOT / "var" / "coverage" / "coverage.json"
# Server-side modules, which the process tests (`tradestack up`, `serve ...`) run: shown on their own.
SERVER_SIDE = ["api/server.py", "api/lifecycle.py", "trading/engine.py", "marketdata/runner.py", "kit/runtime.py"]
# The tests call the app in-process through ASGI; only a server process reaches this line, so if it
# did not run, no subprocess recorded coverage and the figure is not what it claims to be.
SUBPROCESS_PROBE = ("api/server.py", "uvicorn.run(")


@dataclass
class Tally:
    statements: int = 0
    covered: int = 0
    branches: int = 0
    covered_branches: int = 0

    def add(self, summary: dict[str, int]) -> None:
        self.statements += summary["num_statements"]
        self.covered += summary["covered_lines"]
        self.branches += summary["num_branches"]
        self.covered_branches += summary["covered_branches"]

    @property
    def lines_percent(self) -> float:
        return 100.0 * self.covered / self.statements if self.statements else 100.0

    @property
    def branches_percent(self) -> float:
        return 100.0 * self.covered_branches / self.branches if self.branches else 100.0

    def row(self, name: str) -> str:
        return (
            f"{name:<28} {self.statements:>6} {self.statements - self.covered:>6} {self.lines_percent:>6.1f}%"
            f" {self.branches:>7} {self.branches - self.covered_branches:>6} {self.branches_percent:>6.1f}%"
        )


def package_of(relative: str) -> str:
    """`trading/engine.py` -> `trading/`; top-level modules (`cli.py`) stand alone."""
    head, _, rest = relative.partition("/")
    return f"{head}/" if rest else head


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fail-under", type=float, required=True, help="minimum line coverage of src/, in percent")
    args = parser.parse_args()

    os.chdir(ROOT)  # pyproject.toml's paths (data file, HTML directory) are relative to the project
    cov = coverage.Coverage(config_file=str(ROOT / "pyproject.toml"))
    cov.load()
    if not cov.get_data().measured_files():
        print("coverage: no data; run `make test` first", file=sys.stderr)
        return 1
    JSON_REPORT.parent.mkdir(parents=True, exist_ok=True)
    cov.json_report(outfile=str(JSON_REPORT))
    html_directory = cov.config.html_dir
    cov.html_report()
    reported: dict[str, dict[str, object]] = json.loads(JSON_REPORT.read_text())["files"]
    # Keys are as coverage names the files (relative to the current directory): make them relative to the package.
    files = {(ROOT / path).resolve().relative_to(PACKAGE).as_posix(): report for path, report in reported.items()}

    packages: dict[str, Tally] = defaultdict(Tally)
    per_file: dict[str, Tally] = {}
    total = Tally()
    for relative, report in files.items():
        summary: dict[str, int] = report["summary"]  # type: ignore[assignment]
        packages[package_of(relative)].add(summary)
        per_file[relative] = Tally()
        per_file[relative].add(summary)
        total.add(summary)

    header = f"{'src/tradestack':<28} {'lines':>6} {'miss':>6} {'cover':>7} {'branches':>7} {'miss':>6} {'cover':>7}"
    print()
    print(header)
    print("-" * len(header))
    for name in sorted(packages):
        print(packages[name].row(name))
    print("-" * len(header))
    print(total.row("TOTAL"))
    print()
    print("server-side modules:")
    for relative in SERVER_SIDE:
        print(per_file[relative].row(f"  {relative}") if relative in per_file else f"  {relative:<26} not measured")
    print()
    print(f"HTML report: {Path(html_directory).resolve().relative_to(ROOT)}/index.html")
    probe_file, probe_text = SUBPROCESS_PROBE
    probe_lines = [n for n, line in enumerate((PACKAGE / probe_file).read_text().splitlines(), 1) if probe_text in line]
    executed: list[int] = files[probe_file]["executed_lines"] if probe_file in files else []  # type: ignore[assignment]
    if not set(probe_lines) & set(executed):
        print(f"coverage FAILED: `{probe_text}` in {probe_file} never ran, so no server process recorded coverage")
        return 1
    verdict = "ok" if total.lines_percent >= args.fail_under else "FAILED"
    print(
        f"coverage {verdict}: lines {total.lines_percent:.2f}% (gate {args.fail_under:g}%), "
        f"branches {total.branches_percent:.2f}% ({total.covered}/{total.statements} lines, "
        f"{total.covered_branches}/{total.branches} branches)"
    )
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
