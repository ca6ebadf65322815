"""Helpers for trading tests that run real processes: spawning and killing them, quotes, clients, the books in SQL."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from tradestack.domain.marketdata import Quote
from tradestack.kit.aio import stop_tasks
from tradestack.kit.config import Settings
from tradestack.kit.db import Database
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.runner import Publisher
from tradestack.models.books import BalanceRow, FillRow, JournalEntryRow
from tradestack.models.trading import OrderRow

TRADESTACK = str(Path(sys.executable).parent / "tradestack")
PASSWORD = "correct horse battery staple"
OPEN_STATUSES = {"submitted", "accepted", "triggered", "partially_filled"}
FINAL_STATUSES = {"denied", "filled", "canceled", "expired", "rejected"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's environment without TRADESTACK_* settings, plus fast hashing, generous limits and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTACK_") or k.startswith("TRADESTACK_TEST_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        TRADESTACK_DATA_DIR=str(tmp_path / "var"),
        TRADESTACK_LOG_LEVEL="info",
        TRADESTACK_ARGON2_TIME_COST="1",
        TRADESTACK_ARGON2_MEMORY_KIB="8192",
        TRADESTACK_RATE_LIMIT_AUTH="100000/minute",
        TRADESTACK_LOGIN_IP_LIMITS="100000/minute",
        TRADESTACK_RATE_LIMIT_PER_IP="1000000/minute",
        TRADESTACK_RATE_LIMIT_PER_PRINCIPAL="1000000/minute",
        TRADESTACK_RISK_MAX_ORDERS_PER_MINUTE="1000000",
        TRADESTACK_ENGINE_RECONCILE_SECONDS="0.5",
        COLUMNS="200",
    )
    env.update(extra)
    return env


class Processes:
    """Starts processes in sessions of their own (output to a log file) and kills whatever is left at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log_path = self.directory / f"{name}-{len(self.started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [TRADESTACK, *args], env=env, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        process.log_path = log_path  # type: ignore[attr-defined]
        self.started.append(process)
        return process

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        """kill -9 the process and everything it started (uvicorn's workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    @staticmethod
    def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
        """SIGTERM, then wait for a clean exit; the exit code."""
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            Processes.kill(process)
            raise AssertionError(f"{process.args} did not stop within {timeout} s:\n{log_tail(process)}") from None

    def errors(self, limit: int = 5) -> list[str]:
        """The first error lines any of the processes logged (a failed engine step, a 500, a traceback)."""
        found: list[str] = []
        for process in self.started:
            for line in log_tail(process, 100_000_000).splitlines():
                if '"level":"error"' in line or '"level":"critical"' in line or line.startswith("Traceback"):
                    found.append(f"{Path(process.log_path).name}: {line[:600]}")  # type: ignore[attr-defined]
        return found[:limit]

    def close(self) -> None:
        for process in self.started:
            self.kill(process)


def log_tail(process: subprocess.Popen[bytes], size: int = 4000) -> str:
    path = getattr(process, "log_path", None)
    return Path(path).read_text(errors="replace")[-size:] if path else ""


def run_cli(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRADESTACK, *args], env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120)


def cli_ok(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> str:
    done = run_cli(env, cwd, *args, stdin=stdin)
    assert done.returncode == 0, f"tradestack {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


async def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until GET /api/ready answers 200 (fails when the process exits or time runs out)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{process.args} exited with {process.returncode}:\n{log_tail(process)}")
            try:
                response = await http.get(f"{base}/api/ready")
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            await asyncio.sleep(0.1)
    raise AssertionError(f"{base} not ready within {timeout} s ({last}):\n{log_tail(process)}")


async def wait_logged(process: subprocess.Popen[bytes], text: str, timeout: float = 30) -> None:
    """Until the process's log contains `text`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited with {process.returncode}:\n{log_tail(process)}")
        if text in log_tail(process, 1_000_000):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{process.args} did not log {text!r} within {timeout} s:\n{log_tail(process)}")


async def trader_session(base: str, env: dict[str, str], cwd: Path, deposit: str) -> tuple[dict[str, str], str]:
    """Create a trader with the CLI, sign in and open a USD paper account: (auth headers, account id)."""
    email = f"trader-{uuid.uuid4().hex[:8]}@example.com"
    cli_ok(env, cwd, "user", "create", email, "--role", "trader", "--password-stdin", stdin=PASSWORD + "\n")
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        login = await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        body = {"name": "stress", "base_currency": "USD", "deposit": {"currency": "USD", "amount": deposit}}
        opened = await http.post("/api/accounts", json=body, headers=headers)
        assert opened.status_code == 201, opened.text
        return headers, str(opened.json()["id"])


class QuotePump:
    """Publishes a quote of `symbol` every `every` seconds, as `tradestack serve marketdata` would (Redis cache and bus).

    The mid walks randomly, in whole dollars, within [low, high]; the spread is one dollar.
    """

    def __init__(self, settings: Settings, symbol: str, low: int, high: int, size: str = "10", every: float = 0.1) -> None:
        self.settings = settings
        self.symbol = symbol
        self.low, self.high = low, high
        self.size = Decimal(size)
        self.every = every
        self.mid = (low + high) // 2
        self.published = 0
        self._rng = random.Random(7)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._runtime: Runtime | None = None

    async def publish_one(self) -> Quote:
        assert self._runtime is not None
        self.mid = min(self.high, max(self.low, self.mid + self._rng.choice((-1, 0, 1))))
        bid = Decimal(self.mid)
        quote = Quote(self.symbol, bid, bid + 1, self.size, self.size, bid, Decimal(1), datetime.now(UTC))
        await Publisher(self._runtime).publish("test", quote)
        self.published += 1
        return quote

    async def _run(self) -> None:
        while not self._stopping:
            await self.publish_one()
            await asyncio.sleep(self.every)

    async def __aenter__(self) -> QuotePump:
        self._runtime = Runtime.open(self.settings)
        await self.publish_one()
        self._task = asyncio.create_task(self._run(), name="quote-pump")
        return self

    async def stop(self) -> None:
        # The flag ends the loop even when the cancellation is swallowed inside a Redis call (it was, on CI:
        # the pump then published on and the test hung in its exit for pytest-timeout's 300 s).
        self._stopping = True
        await stop_tasks([self._task], "quote pump")
        self._task = None

    async def __aexit__(self, *_: object) -> None:
        await self.stop()
        if self._runtime is not None:
            await self._runtime.close()


# -- a client that keeps trading through crashes ----------------------------------------------------


def _tick(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    at: datetime  # when it arrived


@dataclass
class Trader:
    """Submits orders without pause from several tasks; every request is resent with the same client_order_id until
    it gets an HTTP answer (the server may be down), so each order's fate is known in the end."""

    base: str
    headers: dict[str, str]
    account_id: str
    symbol: str = "BTC-USD"
    quantity: str = "0.001"
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # client_order_id -> body
    answers: dict[str, Answer] = field(default_factory=dict)  # client_order_id -> first HTTP answer
    canceled: dict[str, Answer] = field(default_factory=dict)  # order id -> answer to DELETE
    transport_errors: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _resting: list[str] = field(default_factory=list)
    _quote: tuple[Decimal, Decimal] | None = None
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    KINDS = ("market_buy", "rest_buy", "market_sell", "marketable_buy", "rest_sell", "market_sell")

    async def run(self, tasks: int = 4) -> None:
        async with httpx.AsyncClient(base_url=self.base, headers=self.headers, timeout=5) as http:
            await asyncio.gather(*(self._loop(http, n) for n in range(tasks)))

    def stop(self) -> None:
        self._stop.set()

    @contextlib.asynccontextmanager
    async def trading(self) -> AsyncIterator[None]:
        """Trade in the background for the duration of the block; leaving it waits for the last answers."""
        task = asyncio.create_task(self.run(), name="trader")
        try:
            yield
        except BaseException:
            task.cancel()
            raise
        self.stop()
        await asyncio.wait_for(task, 30)

    async def _loop(self, http: httpx.AsyncClient, n: int) -> None:
        rng = random.Random(n)
        for i in itertools.count():
            if self._stop.is_set():
                return
            quote = await self._current_quote(http, refresh=i % 5 == 0)
            if quote is None:
                await asyncio.sleep(0.1)
                continue
            body = self._order(self.KINDS[(i + n) % len(self.KINDS)], *quote)
            answer = await self._submit(http, body)
            if answer.status == 201 and body["type"] == "limit" and body["client_order_id"].startswith("rest"):
                self._resting.append(answer.body["id"])
            if self._resting and rng.random() < 0.2:
                await self._cancel(http, self._resting.pop(rng.randrange(len(self._resting))))
            await asyncio.sleep(0.02)

    async def _current_quote(self, http: httpx.AsyncClient, *, refresh: bool) -> tuple[Decimal, Decimal] | None:
        if refresh or self._quote is None:
            try:
                response = await http.get("/api/market/quotes", params={"symbols": self.symbol})
            except httpx.TransportError:
                return self._quote
            if response.status_code == 200 and response.json()["quotes"]:
                quote = response.json()["quotes"][0]
                self._quote = (Decimal(quote["bid"]), Decimal(quote["ask"]))
        return self._quote

    def _order(self, kind: str, bid: Decimal, ask: Decimal) -> dict[str, Any]:
        side = "buy" if kind.endswith("buy") else "sell"
        body: dict[str, Any] = {
            "account_id": self.account_id,
            "client_order_id": f"{kind.split('_')[0]}-{next(self._counter)}-{uuid.uuid4().hex[:8]}",
            "symbol": self.symbol,
            "side": side,
            "quantity": self.quantity,
        }
        if kind.startswith("market"):
            body |= {"type": "market", "time_in_force": "ioc"}
        elif kind == "marketable_buy":
            body |= {"type": "limit", "limit_price": str(_tick(ask * Decimal("1.002"))), "time_in_force": "ioc"}
        elif kind == "rest_buy":
            body |= {"type": "limit", "limit_price": str(_tick(bid * Decimal("0.97"))), "time_in_force": "gtc"}
        else:
            body |= {"type": "limit", "limit_price": str(_tick(ask * Decimal("1.03"))), "time_in_force": "gtc"}
        return body

    async def _submit(self, http: httpx.AsyncClient, body: dict[str, Any]) -> Answer:
        """POST until an HTTP answer arrives (the same body each time: the client_order_id makes it safe)."""
        self.sent[body["client_order_id"]] = body
        while True:
            try:
                response = await http.post("/api/orders", json=body)
            except httpx.TransportError:
                self.transport_errors += 1
                await asyncio.sleep(0.1)
                continue
            try:
                data = response.json()
            except ValueError:
                data = {"text": response.text}
            answer = Answer(response.status_code, data, datetime.now(UTC))
            self.answers[body["client_order_id"]] = answer
            return answer

    async def _cancel(self, http: httpx.AsyncClient, order_id: str) -> None:
        try:
            response = await http.delete(f"/api/orders/{order_id}")
        except httpx.TransportError:
            self.transport_errors += 1
            return  # unknown outcome: nothing is claimed about this order
        self.canceled[order_id] = Answer(response.status_code, response.json(), datetime.now(UTC))


# -- the books, read with SQL ---------------------------------------------------------------------


@dataclass
class Books:
    orders: dict[str, OrderRow]
    fills: list[FillRow]
    fill_entries: list[tuple[str, str | None]]  # (journal entry id, reference) of kind "fill"
    balances: dict[tuple[str, str], BalanceRow]  # (account id, ledger account) -> row

    def fills_of(self, order_id: str) -> list[FillRow]:
        return [f for f in self.fills if f.order_id == order_id]


async def read_books(database_url: str, data_dir: Path) -> Books:
    database = Database(Settings(database_url=database_url, data_dir=data_dir))
    try:
        async with database.read_session() as session:
            orders = {row.id: row for row in await session.scalars(select(OrderRow))}
            fills = list(await session.scalars(select(FillRow)))
            entries = [
                (entry_id, reference)
                for entry_id, reference in await session.execute(
                    select(JournalEntryRow.id, JournalEntryRow.reference).where(JournalEntryRow.kind == "fill")
                )
            ]
            balances = {(row.account_id, row.ledger_account): row for row in await session.scalars(select(BalanceRow))}
            session.expunge_all()
    finally:
        await database.dispose()
    return Books(orders, fills, entries, balances)


def fill_problems(books: Books) -> list[str]:
    """What is wrong between orders, fills and the journal's fill entries (empty: nothing).

    Per order: the fills add up to its filled quantity, their ids are `{order id}-1` .. `-n` without a gap or a
    repeat, a filled order is filled completely. Per fill: exactly one journal entry of kind fill refers to it.
    """
    problems: list[str] = []
    by_order: dict[str, list[FillRow]] = defaultdict(list)
    for fill in books.fills:
        by_order[fill.order_id].append(fill)
    for fill_order in set(by_order) - set(books.orders):
        problems.append(f"fills of unknown order {fill_order}")
    for order_id, order in books.orders.items():
        fills = by_order.get(order_id, [])
        total = sum((Decimal(f.quantity) for f in fills), Decimal(0))
        if total != Decimal(order.filled_quantity):
            problems.append(f"order {order_id}: fills add up to {total}, filled_quantity is {order.filled_quantity}")
        expected_ids = {f"{order_id}-{n}" for n in range(1, len(fills) + 1)}
        if {f.id for f in fills} != expected_ids:
            problems.append(f"order {order_id}: fill ids {sorted(f.id for f in fills)} are not {sorted(expected_ids)}")
        if order.status == "filled" and Decimal(order.filled_quantity) != Decimal(order.quantity):
            problems.append(f"order {order_id} is filled with {order.filled_quantity} of {order.quantity}")
        if order.status == "submitted":
            problems.append(f"order {order_id} was stored as submitted (neither accepted nor denied)")
    references: dict[str | None, list[str]] = defaultdict(list)
    for entry_id, reference in books.fill_entries:
        references[reference].append(entry_id)
    fill_ids = {f.id for f in books.fills}
    for fill_id in sorted(fill_ids):
        if len(references.get(fill_id, [])) != 1:
            problems.append(f"fill {fill_id} has {len(references.get(fill_id, []))} journal fill entries")
    for reference in set(references) - fill_ids:
        problems.append(f"journal fill entries {references[reference]} refer to no fill ({reference})")
    return problems
