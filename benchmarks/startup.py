"""`tradestack up` from launch to ready, fresh (first start, demo import included) and warm, against a bare FastAPI app.

    .venv/bin/python benchmarks/startup.py [--rounds 3] [--timeout 300]

Each round: a fresh start in a new data directory (migrations, secrets, first users, the
shipped price history imported, then serving), then a warm start in the same directory;
then the baseline, benchmarks/bare_app.py under uvicorn. "Ready" is the first 200 from
/api/ready (/api/health for the bare app). Also reported: when "serving on" was printed, and
the resident memory (VmRSS) of the server process at ready (the bare app's uvicorn likewise;
a first-start model trainer started by `up` runs in a process of its own and is not counted).
Medians over the rounds; the last line is ``RESULT name=startup ... ratio=<warm / bare>``.
Goals (issue 15): warm <= 3 s, fresh <= 10 s, RSS <= 200 MB.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
from harness import BIN, clean_env, free_port

GOAL_WARM_SECONDS = 3.0
GOAL_FRESH_SECONDS = 10.0
GOAL_RSS_MB = 200.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(command: list[str], ready_url: str, timeout: float, env: dict[str, str]) -> tuple[float, float | None, float]:
    """Launch, wait for 200 at `ready_url`; (seconds to ready, seconds to "serving on" or None, RSS MB); then stop."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stdout = process.stdout
    if stdout is None:
        raise RuntimeError("no stdout pipe")
    announced: list[float] = []
    output: list[str] = []

    def read() -> None:
        for raw in stdout:
            line = raw.decode(errors="replace")
            output.append(line)
            if "serving on" in line and not announced:
                announced.append(time.perf_counter() - started)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = started + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{''.join(output[-20:])}")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{ready_url} not ready within {timeout} s:\n{''.join(output[-20:])}")
            time.sleep(0.05)
        ready = time.perf_counter() - started
        memory = rss_mb(process.pid)
        time.sleep(0.3)  # let the announcing thread print
        return ready, (announced[0] if announced else None), memory
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"fresh": [], "warm": [], "bare": [], "rss": [], "bare_rss": [], "announce": []}
    env = clean_env(TRADESTACK_ADMIN_PASSWORD=secrets.token_urlsafe(18))
    for round_number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            port = free_port()
            up = [str(BIN / "tradestack"), "up", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(Path(tmp) / "var")]
            ready_url = f"http://127.0.0.1:{port}/api/ready"
            fresh, _, _ = start(up, ready_url, args.timeout, env)
            warm, announce, memory = start(up, ready_url, args.timeout, env)
        bare_port = free_port()
        bare_command = [
            str(BIN / "uvicorn"), "bare_app:app", "--app-dir", str(Path(__file__).parent),
            "--host", "127.0.0.1", "--port", str(bare_port), "--log-level", "warning",
        ]  # fmt: skip
        bare, _, bare_memory = start(bare_command, f"http://127.0.0.1:{bare_port}/api/health", args.timeout, env)
        figures["fresh"].append(fresh)
        figures["warm"].append(warm)
        figures["bare"].append(bare)
        figures["rss"].append(memory)
        figures["bare_rss"].append(bare_memory)
        if announce is not None:
            figures["announce"].append(announce)
        print(
            f"round {round_number}: fresh {fresh:.2f} s, warm {warm:.2f} s (serving on printed at "
            f"{'-' if announce is None else f'{announce:.2f} s'}), RSS {memory:.0f} MB; bare {bare:.2f} s, {bare_memory:.0f} MB",
            flush=True,
        )
    median = {key: statistics.median(values) if values else float("nan") for key, values in figures.items()}
    print(
        f"medians: fresh {median['fresh']:.2f} s (goal <= {GOAL_FRESH_SECONDS:g}), warm {median['warm']:.2f} s "
        f"(goal <= {GOAL_WARM_SECONDS:g}), RSS {median['rss']:.0f} MB (goal <= {GOAL_RSS_MB:g}); "
        f"bare {median['bare']:.2f} s, {median['bare_rss']:.0f} MB"
    )
    print(
        f"RESULT name=startup warm_s={median['warm']:.2f} fresh_s={median['fresh']:.2f} rss_mb={median['rss']:.0f} "
        f"bare_s={median['bare']:.2f} ratio={median['warm'] / median['bare']:.2f}"
    )


if __name__ == "__main__":
    main()
