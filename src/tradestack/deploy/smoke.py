"""Smoke test of a running installation over its public API: the checks an operator (or the deploy engine, before it
sends a new colour any traffic) runs to know the release serves.

Checks, in order: health, ready, database, version, login (or the given token/API key), quotes, candles, a paper
order placed and cancelled on a dedicated account named ``smoke``, and one WebSocket quote. A check that needs a
credential is skipped when sign-in failed; every other check still runs, so one report shows everything that is
wrong.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

SMOKE_ACCOUNT = "smoke"
SMOKE_DEPOSIT = "100000"


@dataclass(frozen=True)
class Credentials:
    """How smoke signs in: email and password (exercises login), an access token, or an API key."""

    email: str | None = None
    password: str | None = None
    token: str | None = None
    api_key: str | None = None

    def describe(self) -> str:
        if self.email:
            return f"login as {self.email}"
        return "API key" if self.api_key else "access token" if self.token else "anonymous"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "ok", "failed" or "skipped"
    detail: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass
class SmokeReport:
    base_url: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failed(self) -> list[str]:
        return [check.name for check in self.checks if check.status == "failed"]

    def to_json(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "ok": self.ok, "failed": self.failed, "checks": [asdict(c) for c in self.checks]}


class CheckFailedError(Exception):
    """A smoke check saw something wrong; the message says what."""


class _Skipped(Exception):  # noqa: N818 - a signal, not an error
    pass


def _expect(response: httpx.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        raise CheckFailedError(f"{what}: HTTP {response.status_code} (expected {status}): {response.text[:300]}")
    return response.json()


def _ws_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))


class Smoke:
    """One run of the checks against `base_url`."""

    def __init__(
        self, base_url: str, credentials: Credentials, *, symbol: str = "BTC-USD", timeout: float = 10, verify_tls: bool = True
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.symbol = symbol
        self.timeout = timeout
        self.verify_tls = verify_tls
        self.headers: dict[str, str] | None = None
        self.quote: dict[str, Any] | None = None

    async def run(self) -> SmokeReport:
        report = SmokeReport(self.base_url)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, verify=self.verify_tls) as http:
            steps: list[tuple[str, Callable[[httpx.AsyncClient], Awaitable[str]]]] = [
                ("health", self._health),
                ("ready", self._ready),
                ("database", self._database),
                ("version", self._version),
                ("login", self._login),
                ("quotes", self._quotes),
                ("candles", self._candles),
                ("order", self._order),
                ("websocket", self._websocket),
            ]
            for name, step in steps:
                report.checks.append(await self._check(name, step, http))
        return report

    async def _check(
        self, name: str, step: Callable[[httpx.AsyncClient], Awaitable[str]], http: httpx.AsyncClient
    ) -> CheckResult:
        started = time.monotonic()
        try:
            detail = await asyncio.wait_for(step(http), self.timeout * 2)
        except _Skipped as exc:
            return CheckResult(name, "skipped", str(exc), time.monotonic() - started)
        except CheckFailedError as exc:
            return CheckResult(name, "failed", str(exc), time.monotonic() - started)
        except (httpx.HTTPError, OSError, TimeoutError, ValueError, KeyError) as exc:
            return CheckResult(name, "failed", f"{type(exc).__name__}: {exc}", time.monotonic() - started)
        return CheckResult(name, "ok", detail, time.monotonic() - started)

    def _auth(self) -> dict[str, str]:
        if self.headers is None:
            raise _Skipped("needs a signed-in caller (login failed or no credentials given)")
        return self.headers

    async def _health(self, http: httpx.AsyncClient) -> str:
        body = _expect(await http.get("/api/health"), 200, "GET /api/health")
        return str(body["status"])

    async def _ready(self, http: httpx.AsyncClient) -> str:
        body = _expect(await http.get("/api/ready"), 200, "GET /api/ready")
        return str(body["status"])

    async def _database(self, http: httpx.AsyncClient) -> str:
        body = _expect(await http.get("/api/health/database"), 200, "GET /api/health/database")
        primary = body["primary"]
        return f"{body['status']}: {primary['dialect']} primary {primary.get('latency_ms')} ms"

    async def _version(self, http: httpx.AsyncClient) -> str:
        body = _expect(await http.get("/api/version"), 200, "GET /api/version")
        if body["schema_revision"] != body["schema_head"]:
            raise CheckFailedError(f"schema at {body['schema_revision']}, code expects {body['schema_head']}")
        return f"{body['version']} ({str(body.get('git_sha') or 'no git sha')[:12]}), schema {body['schema_revision']}"

    async def _login(self, http: httpx.AsyncClient) -> str:
        creds = self.credentials
        if creds.email and creds.password:
            body = _expect(
                await http.post("/api/auth/login", json={"email": creds.email, "password": creds.password}),
                200,
                "POST /api/auth/login",
            )
            if "access_token" not in body:
                raise CheckFailedError("login needs a second factor: give the smoke user no MFA, or pass --token/--api-key")
            self.headers = {"Authorization": f"Bearer {body['access_token']}"}
        elif creds.token:
            self.headers = {"Authorization": f"Bearer {creds.token}"}
        elif creds.api_key:
            self.headers = {"X-API-Key": creds.api_key}
        else:
            raise _Skipped("no credentials given (--email/--password, --token or --api-key)")
        me = _expect(await http.get("/api/auth/me", headers=self.headers), 200, "GET /api/auth/me")
        return f"{creds.describe()}: {me.get('email', '?')} ({me.get('role', '?')})"

    async def _quotes(self, http: httpx.AsyncClient) -> str:
        body = _expect(
            await http.get("/api/market/quotes", params={"symbols": self.symbol}, headers=self._auth()), 200, "GET quotes"
        )
        if not body["quotes"]:
            raise CheckFailedError(f"no quote for {self.symbol} (unavailable: {body.get('unavailable')})")
        self.quote = body["quotes"][0]
        return f"{self.symbol} bid {self.quote['bid']} ask {self.quote['ask']}"

    async def _candles(self, http: httpx.AsyncClient) -> str:
        body = _expect(
            await http.get(
                "/api/market/candles", params={"symbol": self.symbol, "timeframe": "1h", "limit": 5}, headers=self._auth()
            ),
            200,
            "GET candles",
        )
        if not body["candles"]:
            raise CheckFailedError(f"no candles for {self.symbol}")
        return f"{len(body['candles'])} candles of {self.symbol}"

    async def _order(self, http: httpx.AsyncClient) -> str:
        headers = self._auth()
        if self.quote is None:
            raise _Skipped("needs a quote (the quotes check failed)")
        account_id = await self._smoke_account(http, headers)
        instruments = _expect(await http.get("/api/market/instruments", headers=headers), 200, "GET instruments")
        instrument = next((i for i in instruments["instruments"] if i["symbol"] == self.symbol), None)
        if instrument is None:
            raise CheckFailedError(f"{self.symbol} is not a listed instrument")
        tick = Decimal(instrument["tick_size"])
        # Far enough below the market never to fill, close enough to pass any price-band check.
        price = (Decimal(self.quote["bid"]) * Decimal("0.95") / tick).quantize(Decimal(1), rounding=ROUND_DOWN) * tick
        order = {
            "account_id": account_id,
            "client_order_id": f"smoke-{time.time_ns()}",
            "symbol": self.symbol,
            "side": "buy",
            "type": "limit",
            "time_in_force": "gtc",
            "quantity": instrument["lot_size"],
            "limit_price": str(price),
        }
        placed = _expect(await http.post("/api/orders", json=order, headers=headers), 201, "POST /api/orders")
        if placed["status"] in {"denied", "rejected"}:
            raise CheckFailedError(f"smoke order {placed['status']}: {placed.get('reason') or placed}")
        canceled = await http.delete(f"/api/orders/{placed['id']}", headers=headers)
        if canceled.status_code not in {200, 202}:
            raise CheckFailedError(f"cancel of {placed['id']}: HTTP {canceled.status_code}: {canceled.text[:300]}")
        return f"limit buy {order['quantity']} {self.symbol} @ {price} placed and canceled ({placed['id']})"

    async def _smoke_account(self, http: httpx.AsyncClient, headers: dict[str, str]) -> str:
        accounts = _expect(await http.get("/api/accounts", headers=headers), 200, "GET /api/accounts")
        for account in accounts:
            if account["name"] == SMOKE_ACCOUNT:
                return str(account["id"])
        body = {"name": SMOKE_ACCOUNT, "base_currency": "USD", "deposit": {"currency": "USD", "amount": SMOKE_DEPOSIT}}
        opened = _expect(await http.post("/api/accounts", json=body, headers=headers), 201, "POST /api/accounts (smoke)")
        return str(opened["id"])

    async def _websocket(self, http: httpx.AsyncClient) -> str:
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        headers = self._auth()
        ssl_context: Any = None  # ws://: no TLS (websockets refuses a context for it, and None for wss://)
        if self.base_url.startswith("https"):
            import ssl

            ssl_context = ssl.create_default_context()  # the system's CAs, or SSL_CERT_FILE
            if not self.verify_tls:
                ssl_context.check_hostname = False
                ssl_context.verify_mode = ssl.CERT_NONE
        channel = f"quotes:{self.symbol}"
        try:
            async with connect(
                _ws_url(self.base_url), additional_headers=headers, ssl=ssl_context, open_timeout=self.timeout
            ) as ws:
                welcome = orjson.loads(await ws.recv())
                if welcome.get("type") != "welcome":
                    raise CheckFailedError(f"expected a welcome frame, got {welcome}")
                await ws.send(orjson.dumps({"op": "subscribe", "channels": [channel]}).decode())
                deadline = time.monotonic() + self.timeout
                while time.monotonic() < deadline:
                    message = orjson.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
                    if message.get("type") == "error":
                        raise CheckFailedError(f"websocket error: {message}")
                    if message.get("type") == "quote":
                        return f"{channel}: bid {message['data']['bid']}"
        except WebSocketException as exc:
            raise CheckFailedError(f"websocket: {type(exc).__name__}: {exc}") from exc
        raise CheckFailedError(f"no {channel} frame within {self.timeout} s")


def run_smoke(
    base_url: str, credentials: Credentials, *, symbol: str = "BTC-USD", timeout: float = 10, verify_tls: bool = True
) -> SmokeReport:
    """Run every check (blocking) and return the report."""
    return asyncio.run(Smoke(base_url, credentials, symbol=symbol, timeout=timeout, verify_tls=verify_tls).run())
