"""Market data through real processes: `tradestack up` on the shipped history, and two API replicas fed by
`tradestack serve marketdata` through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gzip
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from importlib.metadata import distribution
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from websockets.asyncio.client import connect

pytestmark = pytest.mark.slow
TRADESTACK = str(Path(sys.executable).parent / "tradestack")
ADMIN_EMAIL = "admin@tradestack.local"
PASSWORD = "correct horse battery staple"
REDIS_DB = 11  # away from the database other tests use (pub/sub channels are server-wide: a namespace of its own too)
SYMBOLS = '["AAPL","MSFT"]'  # feeds restricted to these, to keep the processes light


class Spawn(Protocol):
    def __call__(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]: ...


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTACK_") or k.startswith("TRADESTACK_TEST_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        TRADESTACK_DATA_DIR=str(tmp_path / "var"),
        TRADESTACK_LOG_LEVEL="info",
        TRADESTACK_ARGON2_TIME_COST="1",
        TRADESTACK_ARGON2_MEMORY_KIB="8192",
        TRADESTACK_MARKETDATA_SYMBOLS=SYMBOLS,
        # These test the replay's mechanics at any time of day; market hours hold a closed venue's quote.
        TRADESTACK_MARKET_HOURS_ALWAYS_OPEN="true",
        COLUMNS="200",
    )
    env.update(extra)
    return env


def _log(process: subprocess.Popen[bytes]) -> str:
    path = getattr(process, "log_path", None)
    return Path(path).read_text(errors="replace")[-3000:] if path else ""


def _exit_code(process: subprocess.Popen[bytes], seconds: float) -> int:
    """The process's exit code once it ends within `seconds`; a failure showing its log if it does not."""
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{process.args} still running {seconds} s after being told to stop:\n{_log(process)}")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start a process in a session of its own, output to a log file (a pipe nobody reads would fill up)."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log_path = tmp_path / f"{name}-{len(processes)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        process.log_path = log_path  # type: ignore[attr-defined]
        processes.append(process)
        return process

    yield start
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _get_ready(base: str) -> httpx.Response | None:
    try:
        return httpx.get(f"{base}/api/ready", timeout=2)
    except httpx.HTTPError:
        return None


def _wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    started = time.monotonic()
    last: httpx.Response | None = None
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{_log(process)}")
        last = _get_ready(base) or last
        if last is not None and last.status_code == 200:
            return time.monotonic() - started
        time.sleep(0.1)
    answer = "no answer" if last is None else f"{last.status_code} {last.text}"
    raise AssertionError(f"{base} not ready within {timeout} s ({answer}):\n{_log(process)}")


def _wait_answering(base: str, process: subprocess.Popen[bytes], timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{_log(process)}")
        response = _get_ready(base)
        if response is not None:
            return response
        time.sleep(0.1)
    raise AssertionError(f"{base} did not answer within {timeout} s:\n{_log(process)}")


def _login(base: str, email: str, password: str) -> str:
    response = httpx.post(f"{base}/api/auth/login", json={"email": email, "password": password}, timeout=10)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def _quote_frames(
    base: str, token: str, channel: str, *, seconds: float, enough: int | None = None
) -> list[dict[str, Any]]:
    """Authenticate with a first message, subscribe to `channel`, collect its quote frames for `seconds` (or until `enough`)."""
    loop = asyncio.get_running_loop()
    quotes: list[dict[str, Any]] = []
    async with connect(base.replace("http://", "ws://") + "/ws", proxy=None, open_timeout=10) as ws:
        await ws.send(json.dumps({"op": "auth", "token": token}))
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["type"] == "welcome", welcome
        await ws.send(json.dumps({"op": "subscribe", "channels": [channel]}))
        subscribed = False
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0 and (enough is None or len(quotes) < enough):
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), remaining))
            except TimeoutError:
                break
            if frame["type"] == "subscribed":
                assert frame["channels"] == [channel], frame
                subscribed = True
            elif frame["type"] == "quote":
                assert frame["channel"] == channel, frame
                quotes.append(frame["data"])
            else:
                assert frame["type"] == "heartbeat", frame
        assert subscribed
    return quotes


def _bokeh_rows(symbol: str, year: str) -> list[dict[str, str]]:
    """The rows of bokeh-sampledata's stocks file for `symbol` in `year`, as text."""
    path = Path(str(distribution("bokeh-sampledata").locate_file("bokeh_sampledata/_data/stocks.csv.gz")))
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = list(csv.DictReader(io.StringIO(handle.read())))
    return [row for row in rows if row["Ticker"] == symbol and row["Date"].startswith(year)]


def test_up_serves_real_history_and_live_quotes(tmp_path: Path, spawn: Spawn) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = _env(tmp_path, TRADESTACK_ADMIN_PASSWORD=PASSWORD)
    process = spawn("up", [TRADESTACK, "up", "--port", str(port), "--data-dir", str(tmp_path / "data")], env)
    _wait_ready(base, process, timeout=180)  # the first start imports the shipped history
    headers = {"Authorization": f"Bearer {_login(base, ADMIN_EMAIL, PASSWORD)}"}

    # Stored history: AAPL's 2005 daily bars exactly as bokeh-sampledata's file has them (unadjusted).
    params = {"symbol": "AAPL", "timeframe": "1d", "start": "2005-01-01", "end": "2006-01-01", "limit": 1000}
    response = httpx.get(f"{base}/api/market/candles", params=params, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    candles = response.json()["candles"]
    assert len(candles) == 252
    assert candles[0] == {
        "ts": "2005-01-03T00:00:00Z", "open": "64.78", "high": "65.11", "low": "62.6", "close": "63.29", "volume": "12357000"
    }  # fmt: skip
    rows = _bokeh_rows("AAPL", "2005")
    assert len(rows) == len(candles)
    for candle, row in zip(candles, rows, strict=True):
        assert candle["ts"] == f"{row['Date']}T00:00:00Z"
        for field in ("open", "high", "low", "close", "volume"):
            assert Decimal(candle[field]) == Decimal(row[field.capitalize()]), (candle, row)

    # Live quotes move.
    def quotes() -> dict[str, dict[str, str]]:
        answer = httpx.get(f"{base}/api/market/quotes", params={"symbols": "AAPL,MSFT"}, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["unavailable"] == []
        return {quote["symbol"]: quote for quote in body["quotes"]}

    first = quotes()
    second = quotes()
    deadline = time.monotonic() + 20  # the feed ticks every second; a loaded machine may take longer
    while second["AAPL"]["ts"] == first["AAPL"]["ts"] and time.monotonic() < deadline:
        time.sleep(0.2)
        second = quotes()
    assert set(first) == set(second) == {"AAPL", "MSFT"}
    assert _ts(second["AAPL"]["ts"]) > _ts(first["AAPL"]["ts"])
    prices = ("bid", "ask", "last")
    assert any([first[s][p] for p in prices] != [second[s][p] for p in prices] for s in first), (first, second)
    for quote in (*first.values(), *second.values()):
        assert Decimal(quote["bid"]) < Decimal(quote["ask"]), quote

    # And stream over the WebSocket.
    token = headers["Authorization"].removeprefix("Bearer ")
    streamed = asyncio.run(_quote_frames(base, token, "quotes:AAPL", seconds=5, enough=8))
    assert len(streamed) >= 3, streamed
    assert all(quote["symbol"] == "AAPL" for quote in streamed)
    times = [_ts(quote["ts"]) for quote in streamed]
    assert times == sorted(set(times)), times  # strictly increasing

    process.send_signal(signal.SIGTERM)
    assert _exit_code(process, 30) == 0, _log(process)


def _cli(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> None:
    done = subprocess.run([TRADESTACK, *args], env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _comparable(quotes: list[dict[str, Any]]) -> list[tuple[datetime, str, str, str]]:
    return [(_ts(q["ts"]), q["bid"], q["ask"], q["last"]) for q in quotes]


@pytest.mark.postgres
@pytest.mark.redis
def test_two_api_replicas_stream_the_same_quotes(tmp_path: Path, spawn: Spawn, postgres_url: str, redis_server: str) -> None:
    redis_url = urlsplit(redis_server)._replace(path=f"/{REDIS_DB}").geturl()
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()  # no heartbeat or quotes left by an earlier run
    env = _env(
        tmp_path,
        TRADESTACK_DATABASE_URL=postgres_url,
        TRADESTACK_REDIS_URL=redis_url,
        TRADESTACK_REDIS_NAMESPACE=f"test-{uuid.uuid4().hex[:12]}",
        TRADESTACK_MARKETDATA_STALE_SECONDS="2",
        TRADESTACK_REPLAY_TICK_SECONDS="0.1",
    )
    email = f"viewer-{uuid.uuid4().hex[:8]}@example.com"
    _cli(env, tmp_path, "db", "upgrade")
    _cli(env, tmp_path, "user", "create", email, "--role", "viewer", "--password-stdin", stdin=PASSWORD + "\n")

    replicas = []
    for index in range(2):
        port = free_port()
        replicas.append(
            (
                f"http://127.0.0.1:{port}",
                spawn(f"api{index}", [TRADESTACK, "serve", "api", "--workers", "1", "--port", str(port)], env),
            )
        )
    # Up, but not ready: nothing publishes market data yet.
    for base, process in replicas:
        waiting = _wait_answering(base, process)
        assert waiting.status_code == 503, waiting.text
        checks = waiting.json()["checks"]
        assert {name for name, check in checks.items() if not check["ok"]} == {"marketdata"}, checks
    marketdata = spawn("marketdata", [TRADESTACK, "serve", "marketdata"], env)
    for base, process in replicas:
        _wait_ready(base, process, timeout=60)

    base_a = replicas[0][0]
    token = _login(base_a, email, PASSWORD)  # one token, accepted by both replicas

    async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        a, b = await asyncio.gather(*(_quote_frames(base, token, "quotes:AAPL", seconds=4) for base, _ in replicas))
        return a, b

    stream_a, stream_b = (_comparable(s) for s in asyncio.run(both()))
    assert len(stream_a) >= 5, stream_a
    assert len(stream_b) >= 5, stream_b
    for stream in (stream_a, stream_b):
        times = [event[0] for event in stream]
        assert times == sorted(set(times)), times
        assert all(Decimal(bid) < Decimal(ask) for _, bid, ask, _ in stream), stream
    # Within the time both clients were subscribed, they saw the same events (conflation may drop a few).
    lo, hi = max(stream_a[0][0], stream_b[0][0]), min(stream_a[-1][0], stream_b[-1][0])
    window_a = [event for event in stream_a if lo <= event[0] <= hi]
    window_b = [event for event in stream_b if lo <= event[0] <= hi]
    common = {event[0] for event in window_a} & {event[0] for event in window_b}
    assert len(common) >= 0.8 * len(window_a), (window_a, window_b)
    assert len(common) >= 0.8 * len(window_b), (window_a, window_b)
    assert [e for e in window_a if e[0] in common] == [e for e in window_b if e[0] in common]

    # The feed process dies: within the staleness limit every replica stops being ready, naming market data.
    os.killpg(marketdata.pid, signal.SIGKILL)
    marketdata.wait(10)
    killed = time.monotonic()
    for base, _ in replicas:
        while (response := httpx.get(f"{base}/api/ready", timeout=5)).status_code == 200 and time.monotonic() - killed < 2 + 4:
            time.sleep(0.1)
        assert response.status_code == 503, response.text
        body = response.json()
        assert "marketdata" in body["detail"], body
        assert body["checks"]["marketdata"]["ok"] is False
        assert "stale" in body["checks"]["marketdata"]["detail"], body
        assert all(check["ok"] for name, check in body["checks"].items() if name != "marketdata"), body

    # Restarted, it publishes again and both replicas are ready.
    marketdata = spawn("marketdata", [TRADESTACK, "serve", "marketdata"], env)
    for base, process in replicas:
        _wait_ready(base, process, timeout=60)
    # SIGTERM stops the feed process cleanly (it had been reported to ignore it after a benchmark).
    marketdata.send_signal(signal.SIGTERM)
    assert _exit_code(marketdata, 15) == 0, _log(marketdata)
    for _, process in replicas:
        process.send_signal(signal.SIGTERM)
    for _, process in replicas:
        assert _exit_code(process, 30) == 0, _log(process)
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
