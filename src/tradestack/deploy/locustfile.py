"""The load-test mix `tradestack loadtest` runs with Locust (headless), also usable with ``locust -f`` directly.

Set by the command: ``TRADESTACK_LOADTEST_TRADERS`` (a JSON file: one ``{"token", "api_key", "account"}`` per trader;
simulated users take them in turn, so with as many traders as users each has its own user and paper account), else
``TRADESTACK_LOADTEST_TOKEN`` (bearer token or API key with ``TRADESTACK_LOADTEST_API_KEY=1``) and
``TRADESTACK_LOADTEST_ACCOUNT`` (a paper account of that user) shared by every simulated user;
``TRADESTACK_LOADTEST_SYMBOL``, ``TRADESTACK_LOADTEST_TICK``, ``TRADESTACK_LOADTEST_LOT`` and
``TRADESTACK_LOADTEST_WAIT`` (``MIN-MAX`` seconds between a user's tasks; default ``1-3``, the seeds' Locust user).

Mix per API user (weights): quotes 10, candles 3, portfolio 3, order placed then canceled 2, one order read 1;
one in five users is a WebSocket subscriber that holds a quote stream open and reconnects.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from decimal import ROUND_DOWN, Decimal
from typing import Any

from locust import HttpUser, User, between, task

SYMBOL = os.environ.get("TRADESTACK_LOADTEST_SYMBOL", "BTC-USD")
TICK = Decimal(os.environ.get("TRADESTACK_LOADTEST_TICK", "0.01"))
LOT = os.environ.get("TRADESTACK_LOADTEST_LOT", "1")
WAIT_MIN, _, WAIT_MAX = os.environ.get("TRADESTACK_LOADTEST_WAIT", "1-3").partition("-")
STREAM_SECONDS = 5.0


def _traders() -> list[dict[str, Any]]:
    path = os.environ.get("TRADESTACK_LOADTEST_TRADERS")
    if path:
        with open(path) as handle:
            loaded: list[dict[str, Any]] = json.load(handle)
            return loaded
    return [
        {
            "token": os.environ.get("TRADESTACK_LOADTEST_TOKEN", ""),
            "api_key": os.environ.get("TRADESTACK_LOADTEST_API_KEY") == "1",
            "account": os.environ.get("TRADESTACK_LOADTEST_ACCOUNT", ""),
        }
    ]


TRADERS = _traders()
_next_trader = itertools.count()


def take_trader() -> dict[str, Any]:
    """The next trader in turn (Locust starts users one at a time on one gevent loop: no lock needed)."""
    return TRADERS[next(_next_trader) % len(TRADERS)]


def auth_headers(trader: dict[str, Any]) -> dict[str, str]:
    if trader["api_key"]:
        return {"X-API-Key": trader["token"]}
    return {"Authorization": f"Bearer {trader['token']}"}


class ApiUser(HttpUser):
    """A trader's REST traffic."""

    weight = 4
    wait_time = between(float(WAIT_MIN), float(WAIT_MAX or WAIT_MIN))

    def on_start(self) -> None:
        trader = take_trader()
        self.account: str = trader["account"]
        self.client.headers.update(auth_headers(trader))
        self.bid: Decimal | None = None
        self.last_order: str | None = None

    @task(10)
    def quotes(self) -> None:
        with self.client.get("/api/market/quotes", params={"symbols": SYMBOL}, name="quotes", catch_response=True) as r:
            if r.status_code == 200 and r.json()["quotes"]:
                self.bid = Decimal(r.json()["quotes"][0]["bid"])
                r.success()
            else:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")

    @task(3)
    def candles(self) -> None:
        self.client.get("/api/market/candles", params={"symbol": SYMBOL, "timeframe": "1h", "limit": 100}, name="candles")

    @task(3)
    def portfolio(self) -> None:
        self.client.get("/api/accounts", name="accounts")

    @task(2)
    def order_place_cancel(self) -> None:
        if self.bid is None or not self.account:
            self.quotes()
            return
        price = (self.bid * Decimal("0.95") / TICK).quantize(Decimal(1), rounding=ROUND_DOWN) * TICK
        body: dict[str, Any] = {
            "account_id": self.account,
            "client_order_id": f"load-{uuid.uuid4().hex}",
            "symbol": SYMBOL,
            "side": "buy",
            "type": "limit",
            "time_in_force": "gtc",
            "quantity": LOT,
            "limit_price": str(price),
        }
        with self.client.post("/api/orders", json=body, name="order place", catch_response=True) as placed:
            if placed.status_code != 201:
                placed.failure(f"HTTP {placed.status_code}: {placed.text[:200]}")
                return
            order_id = placed.json()["id"]
        self.last_order = order_id
        with self.client.delete(f"/api/orders/{order_id}", name="order cancel", catch_response=True) as canceled:
            # 409: the order became final first (it cannot here: priced below the market), still an answer.
            if canceled.status_code in {200, 409}:
                canceled.success()

    @task(1)
    def order_read(self) -> None:
        if self.last_order:
            self.client.get(f"/api/orders/{self.last_order}", name="order read")


class StreamUser(User):
    """A WebSocket client subscribed to quotes: reports time to the first quote and counts the frames."""

    weight = 1
    wait_time = between(0.5, 1.0)

    def on_start(self) -> None:
        self.headers = auth_headers(take_trader())

    @task
    def stream(self) -> None:
        # websocket-client: blocking calls on plain sockets, which Locust's gevent makes cooperative. (The
        # `websockets` sync client runs a thread per connection closing sockets under gevent's loop: at a few
        # hundred users libev aborts the whole Locust process on a closed file descriptor.)
        import websocket

        url = str(self.host).replace("https://", "wss://").replace("http://", "ws://").rstrip("/") + "/ws"
        started = time.perf_counter()
        frames = 0
        try:
            headers = [f"{name}: {value}" for name, value in self.headers.items()]
            ws = websocket.create_connection(url, timeout=10, header=headers, enable_multithread=False)
            try:
                ws.recv()  # welcome
                ws.send(json.dumps({"op": "subscribe", "channels": [f"quotes:{SYMBOL}"]}))
                while True:
                    message = json.loads(ws.recv())
                    if message.get("type") == "error":
                        raise RuntimeError(f"websocket error frame: {message}")
                    if message.get("type") == "quote":
                        break
                first = (time.perf_counter() - started) * 1000
                self.environment.events.request.fire(
                    request_type="WS", name="first quote", response_time=first, response_length=0, exception=None, context={}
                )
                until = time.monotonic() + STREAM_SECONDS
                while time.monotonic() < until:
                    ws.recv()
                    frames += 1
            finally:
                ws.close()
        except Exception as exc:  # noqa: BLE001 - every failure of the stream is reported to Locust as one
            self.environment.events.request.fire(
                request_type="WS",
                name="first quote",
                response_time=(time.perf_counter() - started) * 1000,
                response_length=frames,
                exception=exc,
                context={},
            )
