"""GET /api/market/quotes?symbols=AAPL,MSFT on Tradestack (2 workers) against a bare FastAPI + Redis MGET.

    .venv/bin/python benchmarks/quotes_api.py [--seconds 8] [--rounds 3] [--connections 64]
                                              [--log-level info] [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]
                                              [--redis-db 13]

Production layout on loopback: a throwaway PostgreSQL database ``bench_<random>`` (created
through --admin-url, dropped at the end), Redis logical database --redis-db (default 13, so the
tests' database 0 is not touched) with a key namespace of its own (TRADESTACK_REDIS_NAMESPACE
``bench<random>``, whose keys are deleted at the end),
``tradestack db upgrade``, ``tradestack serve marketdata`` publishing quotes into the Redis
cache, ``tradestack serve api --workers 2``. A trader user is created with ``tradestack user
create`` and signs in through POST /api/auth/login; every request carries its bearer token.

Tradestack keeps everything it does in production: authentication, request id, access log line
per request (at --log-level info), Prometheus metrics, security headers and rate limiting; only
the limits are raised (TRADESTACK_RATE_LIMIT_PER_IP and _PER_PRINCIPAL = 100000000/minute) so
that the load generator, one IP and one user, is not refused. The access token lives long
enough for the run (TRADESTACK_ACCESS_TOKEN_TTL_SECONDS).

The baseline, benchmarks/bare_quotes_app.py, is a bare FastAPI app (2 uvicorn workers, no
auth, no middleware) doing the same Redis MGET of the two keys and returning the same bytes.
Both stay up for the whole run; load rounds alternate between them (like api_baseline.py) and
the medians are reported with the ratio and the goals (>= 10,000 req/s, p99 < 10 ms, >= 70 %
of the baseline's throughput). Load generator and servers share the machine's cores. Last line:
``RESULT name=quotes_api rps=... p99_ms=... baseline_rps=... ... ratio=<rps / baseline rps>``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
import redis
from harness import BIN, ROOT, LoadResult, clean_env, free_port, load, median_result, server
from sqlalchemy.engine import make_url

WORKERS = 2
SYMBOLS = ("AAPL", "MSFT")
QUOTES_PATH = "/api/market/quotes?symbols=" + ",".join(SYMBOLS)
UNLIMITED = "100000000/minute"
GOALS_RPS = 10_000
GOALS_P99_MS = 10.0
GOALS_RATIO = 0.70


@contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """Create ``bench_<random>`` on the server of `admin_url`; yield its asyncpg URL; drop it afterwards."""
    admin = make_url(admin_url)
    name = f"bench_{secrets.token_hex(6)}"

    async def execute(sql: str) -> None:
        connection = await asyncpg.connect(
            host=admin.host or "127.0.0.1", port=admin.port or 5432, user=admin.username or "postgres",
            password=admin.password, database=admin.database or "postgres",
        )  # fmt: skip
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def delete_keys(redis_url: str, namespace: str) -> int:
    """Delete every key of `namespace` (cache, rate limits) in the benchmark's Redis database."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        return len(keys)
    finally:
        client.close()


@contextmanager
def background(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process without an HTTP port (the market-data feeds), in its own session; SIGTERM it afterwards."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    result = subprocess.run([str(BIN / "tradestack"), *args], env=env, cwd=ROOT, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"tradestack {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def sign_in(base: str, email: str, password: str) -> str:
    response = httpx.post(f"{base}/api/auth/login", json={"email": email, "password": password}, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"POST /api/auth/login answered {response.status_code}: {response.text}")
    token: str = response.json()["access_token"]
    return token


def wait_for_quotes(url: str, headers: dict[str, str], timeout: float, feed: subprocess.Popen[bytes], feed_log: Path) -> bytes:
    """Poll `url` until it answers 200 with a quote for every symbol; return that body."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if feed.poll() is not None:
            raise RuntimeError(f"tradestack serve marketdata exited with {feed.returncode}:\n{tail(feed_log)}")
        try:
            response = httpx.get(url, headers=headers, timeout=5)
            last = f"{response.status_code} {response.text[:300]}"
            if response.status_code == 200:
                body = response.json()
                if sorted(q["symbol"] for q in body["quotes"]) == sorted(SYMBOLS) and not body["unavailable"]:
                    return response.content
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.25)
    raise RuntimeError(f"no quotes for {', '.join(SYMBOLS)} at {url} within {timeout:.0f} s; last answer: {last}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (nan when unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_tradestack(
    stack: ExitStack, args: argparse.Namespace, data_dir: Path, redis_url: str, namespace: str
) -> tuple[str, dict[str, str], int]:
    """Database, feeds and API; returns the quotes URL, the request headers (bearer token) and the feed's pid."""
    database_url = stack.enter_context(throwaway_database(args.admin_url))
    planned_seconds = (args.rounds + 1) * 2 * (args.seconds + 5) + 300
    env = clean_env(
        TRADESTACK_DATA_DIR=str(data_dir),
        TRADESTACK_DATABASE_URL=database_url,
        TRADESTACK_REDIS_URL=redis_url,
        TRADESTACK_REDIS_NAMESPACE=namespace,
        TRADESTACK_LOG_LEVEL=args.log_level,
        TRADESTACK_MARKETDATA_FEEDS='["replay","synthetic"]',
        TRADESTACK_RATE_LIMIT_PER_IP=UNLIMITED,
        TRADESTACK_RATE_LIMIT_PER_PRINCIPAL=UNLIMITED,
        TRADESTACK_ACCESS_TOKEN_TTL_SECONDS=str(min(86_400, max(900, planned_seconds))),
    )
    cli(env, "db", "upgrade")
    email, password = "bench-quotes@example.com", secrets.token_urlsafe(18)
    cli(env, "user", "create", email, "--role", "trader", "--password-stdin", stdin=password + "\n")

    feed_log = data_dir / "marketdata.log"
    feed = stack.enter_context(background([str(BIN / "tradestack"), "serve", "marketdata"], env, feed_log))
    port = free_port()
    command = [str(BIN / "tradestack"), "serve", "api", "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)]
    base = f"http://127.0.0.1:{port}"
    try:
        stack.enter_context(server(command, env, f"{base}/api/ready"))
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\nmarketdata log:\n{tail(feed_log)}") from exc
    headers = {"Authorization": f"Bearer {sign_in(base, email, password)}"}
    body = wait_for_quotes(base + QUOTES_PATH, headers, 60, feed, feed_log)
    print(f"tradestack answers {len(body)} bytes: {body[:160].decode()}...")
    return base + QUOTES_PATH, headers, feed.pid


def start_bare(stack: ExitStack, redis_url: str, namespace: str) -> str:
    port = free_port()
    command = [
        str(BIN / "uvicorn"), "bare_quotes_app:app", "--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(WORKERS), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}{QUOTES_PATH}"
    stack.enter_context(server(command, clean_env(BENCH_REDIS_URL=redis_url, BENCH_REDIS_NAMESPACE=namespace), url))
    body = httpx.get(url, timeout=5).json()
    if sorted(q["symbol"] for q in body["quotes"]) != sorted(SYMBOLS):
        raise RuntimeError(f"the bare app does not see the quotes: {body}")
    return url


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8, help="length of one load round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server, alternating")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--log-level", default="info", help="Tradestack log level (info logs every request)")
    parser.add_argument(
        "--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres", help="where to create the throwaway database"
    )
    parser.add_argument("--redis-db", type=int, default=13, help="Redis logical database on 127.0.0.1:6379")
    args = parser.parse_args()
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    namespace = f"bench{secrets.token_hex(4)}"

    results: dict[str, list[LoadResult]] = {"tradestack": [], "bare": []}
    load_average = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="tradestack-bench-") as tmp, ExitStack() as stack:
            ours_url, headers, feed_pid = start_tradestack(stack, args, Path(tmp), redis_url, namespace)
            urls = {"tradestack": ours_url, "bare": start_bare(stack, redis_url, namespace)}
            request_headers = {"tradestack": headers, "bare": {}}
            for name, url in urls.items():
                load(url, seconds=2, connections=args.connections, headers=request_headers[name])  # warm-up
            feed_cpu, started = cpu_seconds(feed_pid), time.monotonic()
            for _ in range(args.rounds):
                for name, url in urls.items():
                    results[name].append(
                        load(url, seconds=args.seconds, connections=args.connections, headers=request_headers[name])
                    )
            feed_percent = 100 * (cpu_seconds(feed_pid) - feed_cpu) / (time.monotonic() - started)
    finally:
        delete_keys(redis_url, namespace)

    ours, bare = median_result(results["tradestack"]), median_result(results["bare"])
    print(
        f"GET {QUOTES_PATH}, {WORKERS} uvicorn workers each, {args.connections} connections, "
        f"{args.rounds} x {args.seconds} s per server (alternating), load by {ours.tool} on the same {os.cpu_count()} cores, "
        f"Tradestack log level {args.log_level}, PostgreSQL + Redis db {args.redis_db} namespace {namespace}"
    )
    print(
        f"`tradestack serve marketdata` used {feed_percent:.0f} % of a core during the rounds (both servers' rounds); "
        f"1-minute load average before the run: {load_average:.2f}"
    )
    print(f"{'median of rounds':18}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, result in (("tradestack", ours), ("bare fastapi", bare)):
        print(f"{name:18}{result.requests_per_second:10.0f}{result.p50_ms:9.2f}{result.p99_ms:9.2f}{result.errors:8d}")
    for name, rounds in results.items():
        print(f"  {name} rounds req/s: " + ", ".join(f"{r.requests_per_second:.0f}" for r in rounds))
    ratio = ours.requests_per_second / bare.requests_per_second
    print(f"ratio tradestack/bare: throughput {ratio:.2f}, p99 {ours.p99_ms / bare.p99_ms:.2f}")
    clean = ours.errors == 0 and bare.errors == 0
    if not clean:
        print("WARNING: some requests failed (non-2xx or socket errors): no goal counts as met")
    print("goals:")
    rps_ok, p99_ok, ratio_ok = ours.requests_per_second >= GOALS_RPS, ours.p99_ms < GOALS_P99_MS, ratio >= GOALS_RATIO
    print(f"  throughput >= {GOALS_RPS:,} req/s: {ours.requests_per_second:,.0f}  {verdict(clean and rps_ok)}")
    print(f"  p99 < {GOALS_P99_MS:g} ms: {ours.p99_ms:.2f} ms  {verdict(clean and p99_ok)}")
    print(f"  >= {GOALS_RATIO:.0%} of the bare baseline: {ratio:.0%}  {verdict(clean and ratio_ok)}")
    print(
        f"RESULT name=quotes_api rps={ours.requests_per_second:.0f} p50_ms={ours.p50_ms:.2f} p99_ms={ours.p99_ms:.2f} "
        f"errors={ours.errors} baseline_rps={bare.requests_per_second:.0f} baseline_p50_ms={bare.p50_ms:.2f} "
        f"baseline_p99_ms={bare.p99_ms:.2f} baseline_errors={bare.errors} feed_cpu_percent={feed_percent:.0f} "
        f"connections={args.connections} ratio={ratio:.2f}"
    )


if __name__ == "__main__":
    main()
