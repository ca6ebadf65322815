"""GET /api/market/quotes?symbols=AAPL,MSFT on `tradestack up` (one process) against a minimal FastAPI + JWT route.

    .venv/bin/python benchmarks/quotes_embedded.py [--seconds 6] [--rounds 3] [--connections 64] [--log-level info]

The embedded layout as a user runs it: a fresh data directory, ``tradestack db upgrade``, a trader
from ``tradestack user create``, then ``tradestack up`` (SQLite, in-process cache and rate
limiter, the demo history imported and replayed by the in-process feeds, the engine and the
audit chainer running). Only the rate limits are raised so that the load generator (one IP,
one user) is not refused; every request signs in with its bearer token, gets a request id, an
access-log line (at --log-level info), metrics and security headers.

The baseline, benchmarks/bare_jwt_app.py, is one uvicorn process serving a minimal FastAPI route
behind an ``HTTPBearer`` + PyJWT HS256 dependency, answering the bytes Tradestack answered.
Both stay up; load rounds alternate; medians. Goal (issue 15): >= 0.8 of the baseline.
Last line: ``RESULT name=quotes_embedded rps=... p99_ms=... baseline_rps=... baseline_p99_ms=... ratio=...``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import jwt
from harness import BIN, LoadResult, clean_env, free_port, load, median_result, server
from quotes_api import QUOTES_PATH, SYMBOLS, UNLIMITED, cli, sign_in

GOAL_RATIO = 0.8


def start_tradestack(stack: ExitStack, data_dir: Path, log_level: str) -> tuple[str, dict[str, str], bytes]:
    env = clean_env(
        TRADESTACK_DATA_DIR=str(data_dir), TRADESTACK_LOG_LEVEL=log_level,
        TRADESTACK_RATE_LIMIT_PER_IP=UNLIMITED, TRADESTACK_RATE_LIMIT_PER_PRINCIPAL=UNLIMITED,
        TRADESTACK_ACCESS_TOKEN_TTL_SECONDS="3600",  # noqa: S106 - a lifetime, not a password
    )  # fmt: skip
    cli(env, "db", "upgrade")
    email, password = "bench-embedded@example.com", secrets.token_urlsafe(18)
    cli(env, "user", "create", email, "--role", "trader", "--password-stdin", stdin=password + "\n")
    port = free_port()
    command = [str(BIN / "tradestack"), "up", "--port", str(port), "--data-dir", str(data_dir)]
    base = f"http://127.0.0.1:{port}"
    # The first start imports the shipped history: minutes on a loaded machine.
    stack.enter_context(server(command, env, f"{base}/api/ready", ready_timeout=600))
    headers = {"Authorization": f"Bearer {sign_in(base, email, password)}"}
    deadline = time.monotonic() + 120
    while True:
        response = httpx.get(base + QUOTES_PATH, headers=headers, timeout=5)
        body = response.json() if response.status_code == 200 else {}
        if sorted(q["symbol"] for q in body.get("quotes", [])) == sorted(SYMBOLS):
            return base + QUOTES_PATH, headers, response.content
        if time.monotonic() > deadline:
            raise RuntimeError(f"no quotes for {', '.join(SYMBOLS)}: {response.status_code} {response.text[:300]}")
        time.sleep(0.5)


def bare_token(secret: str) -> str:
    """An access token the bare JWT app (bare_jwt_app.py, started with BENCH_JWT_SECRET=`secret`) accepts."""
    now = int(time.time())
    claims = {
        "iss": "bench",
        "aud": "bench",
        "sub": "u1",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": "j1",
        "typ": "access",
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def start_bare(stack: ExitStack, body: bytes) -> tuple[str, dict[str, str]]:
    secret = secrets.token_urlsafe(48)
    token = bare_token(secret)
    port = free_port()
    command = [
        str(BIN / "uvicorn"), "bare_jwt_app:app", "--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1",
        "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    env = clean_env(BENCH_JWT_SECRET=secret, BENCH_QUOTES_BODY=body.decode())
    stack.enter_context(server(command, env, f"http://127.0.0.1:{port}/docs"))
    url, headers = f"http://127.0.0.1:{port}{QUOTES_PATH}", {"Authorization": f"Bearer {token}"}
    if httpx.get(url, headers=headers, timeout=5).status_code != 200:
        raise RuntimeError("the bare JWT app refuses its own token")
    return url, headers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    results: dict[str, list[LoadResult]] = {"tradestack": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="tradestack-bench-") as tmp, ExitStack() as stack:
        ours_url, ours_headers, body = start_tradestack(stack, Path(tmp), args.log_level)
        targets = {"tradestack": (ours_url, ours_headers), "bare": start_bare(stack, body)}
        load_average = os.getloadavg()[0]
        for url, headers in targets.values():
            load(url, seconds=2, connections=args.connections, headers=headers)  # warm-up
        for _ in range(args.rounds):
            for name, (url, headers) in targets.items():
                results[name].append(load(url, seconds=args.seconds, connections=args.connections, headers=headers))
    ours, bare = median_result(results["tradestack"]), median_result(results["bare"])
    print(
        f"GET {QUOTES_PATH}: `tradestack up` (one process, log level {args.log_level}) vs bare FastAPI + JWT (one process); "
        f"{args.connections} connections, {args.rounds} x {args.seconds} s alternating, load by {ours.tool}; "
        f"1-minute load average before the rounds {load_average:.2f}"
    )
    for name, rounds in results.items():
        print(f"  {name} rounds req/s: " + ", ".join(f"{r.requests_per_second:.0f}" for r in rounds))
    ratio = ours.requests_per_second / bare.requests_per_second
    print(
        f"RESULT name=quotes_embedded rps={ours.requests_per_second:.0f} p50_ms={ours.p50_ms:.2f} p99_ms={ours.p99_ms:.2f} "
        f"errors={ours.errors} baseline_rps={bare.requests_per_second:.0f} baseline_p99_ms={bare.p99_ms:.2f} "
        f"baseline_errors={bare.errors} ratio={ratio:.2f} goal_ratio={GOAL_RATIO}"
    )


if __name__ == "__main__":
    main()
