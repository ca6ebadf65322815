"""`make mutation`: mutation testing of the money code with mutmut, one module at a time.

    python scripts/mutation.py [MODULE ...]      (default: all of them; MODULES=... through make)

For each module it runs `mutmut run` on that module's mutants (configured under [tool.mutmut] in
pyproject.toml: each mutant is judged by the fast tests that run its function), then prints how many
were killed, how long it took, and every mutant that survived; their diffs are written to
mutants/survivors-<module>.txt. Exits 1 when a module kills fewer than --goal percent of its mutants.
Not part of `make test` or CI: it takes minutes per module on a two-core machine.

After writing tests against a report, `--survivors` tests again only what did not die last time (and
the mutants of functions changed since, which mutmut resets): minutes instead of a full run. A
module's figure for a note comes from a full run (`--fresh`), since a new test could only add kills.
"""

# ruff: noqa: S603, T201 - a command-line tool that runs mutmut and prints its report

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

MODULES = {
    "risk": "tradestack.domain.risk",
    "ledger": "tradestack.domain.ledger",
    "matching": "tradestack.domain.matching",
    "orders": "tradestack.domain.orders",
    "integrity": "tradestack.ops.integrity",
    "executions": "tradestack.trading.executions",
}
ROOT = Path(__file__).resolve().parent.parent
MUTMUT = str(Path(sys.executable).parent / "mutmut")


def statuses(prefix: str) -> dict[str, str]:
    """Every mutant of the module `prefix` and its status (killed, survived, timeout, ...)."""
    out = subprocess.run([MUTMUT, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name.startswith(prefix + "."):
            found[name] = status
    return found


def batches(prefix: str, *, survivors_only: bool) -> Iterator[list[str]]:
    """The mutant names to hand to `mutmut run`, one list per run: the module, or what has not died yet.

    Rerunning survivors takes two passes: the first regenerates the mutants of a changed source file
    (resetting its changed functions), the second tests those reset mutants, whose names are only
    known then.
    """
    earlier = statuses(prefix) if survivors_only and (ROOT / "mutants").is_dir() else {}
    if not earlier:
        yield [f"{prefix}.*"]
        return
    yield sorted(name for name, status in earlier.items() if status != "killed") or [f"{prefix}.*"]
    reset = sorted(name for name, status in statuses(prefix).items() if status == "not checked")
    if reset:
        yield reset


def main() -> int:
    os.chdir(ROOT)  # mutmut reads its configuration and results from the working directory
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help=f"modules to mutate, of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--goal", type=float, default=90.0, help="least percentage of mutants to kill")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results (delete mutants/) first")
    parser.add_argument("--report-only", action="store_true", help="report the results of earlier runs, run nothing")
    parser.add_argument(
        "--survivors", action="store_true", help="test again only the mutants that were not killed in earlier runs"
    )
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    if args.fresh:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    failed = False
    for module in args.modules or list(MODULES):
        prefix = MODULES[module]
        source = Path("src", *prefix.split(".")).with_suffix(".py")
        log = ROOT / "mutants" / f"run-{module}.log"
        log.parent.mkdir(exist_ok=True)
        started = time.monotonic()
        if not args.report_only:
            with log.open("w") as output:
                for names in batches(prefix, survivors_only=args.survivors):
                    subprocess.run(
                        [MUTMUT, "run", "--max-children", str(args.jobs), *names],
                        cwd=ROOT,
                        stdout=output,
                        stderr=output,
                        check=True,
                    )
        elapsed = time.monotonic() - started
        found = statuses(prefix)
        counts = Counter(found.values())
        survivors = sorted(name for name, status in found.items() if status != "killed")
        rate = 100 * counts["killed"] / len(found) if found else 0.0
        detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        took = "" if args.report_only else f" in {elapsed:.0f} s"
        print(f"mutation {module}: {len(found)} mutants ({detail}); {rate:.1f} % killed{took}")
        with (ROOT / "mutants" / f"survivors-{module}.txt").open("w") as report:
            for name in survivors:
                diff = get_diff_for_mutant(name, path=source)
                changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
                report.write(f"{name}: {found[name]}\n" + "".join(f"    {line}\n" for line in changed))
                print(f"  {found[name]}: {name}  {' | '.join(line.strip() for line in changed)}")
        failed |= rate < args.goal
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
