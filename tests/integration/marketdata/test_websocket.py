"""/ws on both stacks, through a real uvicorn server in the test's event loop."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from fastapi import FastAPI
from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection

from tradestack.api.protocol import DirectWriteWebSocketProtocol
from tradestack.api.ws import HUB
from tradestack.domain.marketdata import Quote, Side, Trade
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.runner import Publisher

from ..conftest import MakeUser  # type: ignore[import-not-found]


@pytest.fixture
async def ws_url(app: FastAPI) -> AsyncIterator[str]:
    """The app (lifespan already running) served by uvicorn on a port of its own.

    The listening socket is bound here (port 0) and handed to uvicorn, so no other process can take the
    port in between; its small send buffer, inherited by each connection, makes a client that stops
    reading hold the server back after a few kilobytes rather than megabytes.
    """
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # No permessage-deflate, as `tradestack serve` by default (TRADESTACK_WS_COMPRESSION=false).
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", ws_per_message_deflate=False, ws=DirectWriteWebSocketProtocol)
    )
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"ws://127.0.0.1:{port}/ws"
    server.should_exit = True
    await task
    listener.close()


async def _recv(ws: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


async def _recv_type(ws: ClientConnection, kind: str, timeout: float = 5) -> dict[str, Any]:
    while True:
        message = await _recv(ws, timeout)
        if message["type"] == kind:
            return message


def _quote(runtime: Runtime, last: str) -> Quote:
    price = Decimal(last)
    return Quote("AAPL", price - 1, price + 1, Decimal(10), Decimal(10), price, Decimal(1), runtime.clock.now())


async def test_stream_after_authenticating(ws_url: str, make_user: MakeUser, runtime: Runtime) -> None:
    user = await make_user(Role.VIEWER)
    publisher = Publisher(runtime)
    await publisher.publish("test", _quote(runtime, "100"))
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"op": "auth", "token": user.access_token}))
        welcome = await _recv(ws)
        assert welcome["type"] == "welcome"
        assert welcome["user"] == user.email
        await ws.send(json.dumps({"op": "subscribe", "channels": ["quotes:aapl", "candles:AAPL:1m", "quotes:NOPE", "x"]}))
        errors = [await _recv(ws), await _recv(ws)]
        assert [e["channel"] for e in errors] == ["quotes:NOPE", "x"]
        assert "unknown symbol 'NOPE'" in errors[0]["detail"]
        assert (await _recv(ws))["channels"] == ["quotes:AAPL", "candles:AAPL:1m"]
        # The current value comes at once, then every update.
        snapshot = await _recv(ws)
        assert (snapshot["type"], snapshot["data"]["last"]) == ("quote", "100")
        await publisher.publish("test", _quote(runtime, "101"))
        update = await _recv_type(ws, "quote")
        assert update["channel"] == "quotes:AAPL"
        assert update["data"]["last"] == "101"
        # A client keeping up gets the frame written straight to its socket (uvicorn, no compression).
        hub = runtime.components.get(HUB)
        assert hub is not None
        assert hub.written_directly >= 1
        await publisher.publish("test", Trade("AAPL", Decimal("101.5"), Decimal(7), Side.BUY, runtime.clock.now()))
        candle = await _recv_type(ws, "candle")
        assert candle["channel"] == "candles:AAPL:1m"
        assert candle["data"]["close"] == "101.5"

        await ws.send(json.dumps({"op": "unsubscribe", "channels": ["quotes:AAPL", "candles:AAPL:1m"]}))
        assert (await _recv_type(ws, "unsubscribed"))["channels"] == ["quotes:AAPL", "candles:AAPL:1m"]
        await publisher.publish("test", _quote(runtime, "102"))
        await ws.send(json.dumps({"op": "ping"}))
        assert (await _recv(ws))["type"] == "pong"  # and no quote before it

        await ws.send("not json")
        assert (await _recv(ws))["error"] == "BadRequestError"
        await ws.send(json.dumps({"op": "dance"}))
        assert "unknown op" in (await _recv(ws))["detail"]


def _conflated_quotes() -> float:
    return REGISTRY.get_sample_value("websocket_messages_conflated_total", {"kind": "quotes"}) or 0.0


async def test_a_slow_reader_gets_the_newest_value(ws_url: str, make_user: MakeUser, runtime: Runtime) -> None:
    user = await make_user(Role.TRADER)
    publisher = Publisher(runtime)
    headers = {"Authorization": f"Bearer {user.access_token}"}
    # The client reads nothing while the quotes come (max_queue=1: its library stops reading the socket
    # too), so once the socket buffers are full the server holds back and must keep only the newest quote.
    port = int(ws_url.rsplit(":", 1)[1].split("/")[0])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    async with websockets.connect(ws_url, sock=sock, additional_headers=headers, max_queue=1, ping_interval=None) as ws:
        assert (await _recv(ws))["type"] == "welcome"
        await ws.send(json.dumps({"op": "subscribe", "channels": ["quotes:AAPL"]}))
        await _recv_type(ws, "subscribed")
        before = _conflated_quotes()
        published = 0
        while published < 20_000 and _conflated_quotes() - before < 100:
            for _ in range(100):
                await publisher.publish("test", _quote(runtime, str(1000 + published)))
                published += 1
            await asyncio.sleep(0)
        newest = str(1000 + published - 1)
        received: list[str] = []
        while not received or received[-1] != newest:
            message = await _recv_type(ws, "quote")
            received.append(message["data"]["last"])
        assert received == sorted(received, key=Decimal)  # in order, the newest last
        assert len(received) < published  # older values were replaced while the client was not reading


@pytest.mark.parametrize("how", ["none", "garbage", "bad-token"])
async def test_unauthenticated_clients_are_closed(ws_url: str, app: FastAPI, how: str) -> None:
    object.__setattr__(app.state.runtime.settings, "ws_auth_timeout_seconds", 0.3)
    async with websockets.connect(ws_url) as ws:
        if how == "garbage":
            await ws.send(json.dumps({"op": "subscribe", "channels": ["quotes:AAPL"]}))
        elif how == "bad-token":
            await ws.send(json.dumps({"op": "auth", "token": "eyJhbGciOiJIUzI1NiJ9.e30.bad"}))
        message = await _recv(ws)
        assert message["type"] == "error"
        assert message["error"] == "AuthenticationError"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await _recv(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401


async def test_a_key_without_read_scope_is_refused(ws_url: str, make_user: MakeUser, client: httpx.AsyncClient) -> None:
    user = await make_user(Role.TRADER)
    created = await client.post("/api/keys", json={"name": "trading bot", "scopes": ["trade"]}, headers=user.headers)
    assert created.status_code == 201, created.text
    async with websockets.connect(ws_url, additional_headers={"X-API-Key": created.json()["key"]}) as ws:
        message = await _recv(ws)
        assert message["error"] == "PermissionDeniedError"
        assert "marketdata:read" in message["detail"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await _recv(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4403


async def test_heartbeats_recheck_the_credential(
    ws_url: str, app: FastAPI, make_user: MakeUser, client: httpx.AsyncClient
) -> None:
    object.__setattr__(app.state.runtime.settings, "ws_heartbeat_seconds", 0.2)
    user = await make_user(Role.VIEWER)
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"op": "auth", "token": user.access_token}))
        assert (await _recv(ws))["type"] == "welcome"
        assert (await _recv(ws, timeout=2))["type"] == "heartbeat"
        logout = await client.post("/api/auth/logout", json={"refresh_token": user.refresh_token}, headers=user.headers)
        assert logout.status_code in (200, 204), logout.text
        message = await _recv_type(ws, "error", timeout=3)
        assert message["error"] == "AuthenticationError"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await _recv(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401
