"""The first served alpha signals after `tradestack up`'s first start, and the event-loop stall beside them.

    .venv/bin/python benchmarks/signals_first.py [--rounds 3] [--window 8] [--before DIR]

Each round, per tree (this one, and the source tree DIR when `--before` is given: PYTHONPATH=DIR/src,
e.g. a ``git archive`` of an older commit), alternating: `tradestack up` on a fresh SQLite data
directory with the shipped demo data. Its first start trains and promotes a first alpha model in the
background; the benchmark signs in as the admin and polls GET /api/models?kind=alpha every 0.2 s until
a model is promoted. From that moment, for `--window` seconds, GET /api/health is polled every 10 ms
on a connection of its own (the loop stall: its max and p99 latency), while the first GET
/api/trading/signals and POST /api/trading/signals {"symbol": "MSFT"} (in the universe on the latest day) are sent together (their
latency: the first served answer, 409s retried every 0.1 s until a 200). Then the same server is
restarted on its data directory (a promoted model there) and measured likewise from its readiness.
Medians over the rounds; the last line is ``RESULT name=signals_first ...`` with this tree's (new_) and
the before tree's (before_) figures, first start and restart (restart_), and ``ratio=`` this tree's
first answer after the promotion over the before tree's (nan without `--before`).
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness import BIN, clean_env, free_port, server

from tradestack.identity.service import ADMIN_EMAIL


@dataclass
class Round:
    first_answer_s: float
    post_answer_s: float
    health_max_ms: float
    health_p99_ms: float
    health_polls: int


def first_signals(base: str, window: float, password: str) -> Round:
    token = httpx.post(f"{base}/api/auth/login", json={"email": ADMIN_EMAIL, "password": password}, timeout=30)
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    deadline = time.monotonic() + 300
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        while not any(m["promoted"] for m in client.get("/api/models", params={"kind": "alpha"}).json()["models"]):
            if time.monotonic() > deadline:
                raise RuntimeError("no alpha model promoted within 300 s")
            time.sleep(0.2)
    health: list[float] = []
    stop = threading.Event()

    def poll_health() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                client.get("/api/health")
                health.append((time.perf_counter() - started) * 1000)
                time.sleep(0.01)

    answers: dict[str, float] = {}

    def ask(name: str, method: str, body: dict[str, str] | None) -> None:
        started = time.perf_counter()
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            while True:
                response = client.request(method, "/api/trading/signals", json=body)
                if response.status_code == 200:
                    break
                if response.status_code != 409 or time.perf_counter() - started > 60:
                    raise RuntimeError(f"{method} /api/trading/signals answered {response.status_code}: {response.text}")
                time.sleep(0.1)
        answers[name] = time.perf_counter() - started

    poller = threading.Thread(target=poll_health)
    poller.start()
    asks = [
        threading.Thread(target=ask, args=("get", "GET", None)),
        threading.Thread(target=ask, args=("post", "POST", {"symbol": "MSFT", "model": "lightgbm"})),
    ]
    for thread in asks:
        thread.start()
    time.sleep(window)
    for thread in asks:
        thread.join()
    stop.set()
    poller.join()
    ordered = sorted(health)
    return Round(answers["get"], answers["post"], ordered[-1], ordered[int(0.99 * (len(ordered) - 1))], len(ordered))


def one_round(name: str, source: Path | None, window: float) -> tuple[Round, Round]:
    """The first start's figures, then those of a restart on the same data directory (a promoted model there)."""
    password = secrets.token_urlsafe(18)
    with tempfile.TemporaryDirectory(prefix=f"bench-signals-{name}-") as tmp:
        env = clean_env(TRADESTACK_ADMIN_PASSWORD=password, TRADESTACK_LOG_LEVEL="warning")
        if source is not None:
            env["PYTHONPATH"] = str(source / "src")
        figures = []
        for _ in ("first start", "restart"):
            port = free_port()
            command = [str(BIN / "tradestack"), "up", "--port", str(port), "--data-dir", str(Path(tmp) / "var")]
            base = f"http://127.0.0.1:{port}"
            with server(command, env, f"{base}/api/ready", ready_timeout=300):
                figures.append(first_signals(base, window, password))
        return figures[0], figures[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=8.0, help="seconds /api/health is polled after the promotion")
    parser.add_argument("--before", type=Path, help="also run `tradestack up` from this source tree (PYTHONPATH=DIR/src)")
    args = parser.parse_args()
    trees: list[tuple[str, Path | None]] = [("new", None)]
    if args.before is not None:
        trees.append(("before", args.before))
    rounds: dict[str, list[Round]] = {}
    for number in range(1, args.rounds + 1):
        for name, source in trees if number % 2 else reversed(trees):
            for kind, result in zip(("", "restart_"), one_round(name, source, args.window), strict=True):
                rounds.setdefault(f"{name}_{kind}", []).append(result)
                print(
                    f"round {number} {name} {'restart' if kind else 'first start'}: first GET {result.first_answer_s:.2f} s, "
                    f"first POST {result.post_answer_s:.2f} s; /api/health max {result.health_max_ms:.0f} ms, "
                    f"p99 {result.health_p99_ms:.0f} ms ({result.health_polls} polls); load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    parts = []
    for key, done in rounds.items():
        parts += [
            f"{key}first_get_s={statistics.median(r.first_answer_s for r in done):.2f}",
            f"{key}first_post_s={statistics.median(r.post_answer_s for r in done):.2f}",
            f"{key}health_max_ms={statistics.median(r.health_max_ms for r in done):.0f}",
            f"{key}health_p99_ms={statistics.median(r.health_p99_ms for r in done):.0f}",
        ]
    # The change against what it replaces: this tree's first answer after the promotion over the before tree's.
    ratio = (
        statistics.median(r.first_answer_s for r in rounds["new_"])
        / statistics.median(r.first_answer_s for r in rounds["before_"])
        if "before_" in rounds
        else math.nan
    )
    print(f"RESULT name=signals_first {' '.join(parts)} load={os.getloadavg()[0]:.2f} ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
