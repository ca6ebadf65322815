"""The load-test mix `tradestack loadtest` runs with Locust (headless), also usable with ``locust -f`` directly.

Set by the command: ``TRADESTACK_LOADTEST_TOKEN`` (bearer token or API key with ``TRADESTACK_LOADTEST_API_KEY=1``),
``TRADESTACK_LOADTEST_ACCOUNT`` (a paper account of that user), ``TRADESTACK_LOADTEST_SYMBOL``,
``TRADESTACK_LOADTEST_TICK`` and ``TRADESTACK_LOADTEST_LOT``.

Mix per API user (weights): quotes 10, candles 3, portfolio 3, order placed then canceled 2, one order read 1;
one in five users is a WebSocket subscriber that holds a quote stream open and reconnects.
"""

from __future__ import annotations

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
ACCOUNT = os.environ.get("TRADESTACK_LOADTEST_ACCOUNT", "")
STREAM_SECONDS = 5.0


def auth_headers() -> dict[str, str]:
    token = os.environ.get("TRADESTACK_LOADTEST_TOKEN", "")
    if os.environ.get("TRADESTACK_LOADTEST_API_KEY") == "1":
        return {"X-API-Key": token}
    return {"Authorization": f"Bearer {token}"}


class ApiUser(HttpUser):
    """A trader's REST traffic."""

    weight = 4
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        self.client.headers.update(auth_headers())
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
        if self.bid is None or not ACCOUNT:
            self.quotes()
            return
        price = (self.bid * Decimal("0.95") / TICK).quantize(Decimal(1), rounding=ROUND_DOWN) * TICK
        body: dict[str, Any] = {
            "account_id": ACCOUNT,
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
            headers = [f"{name}: {value}" for name, value in auth_headers().items()]
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
