"""Orders, fills and portfolio updates on /ws, on both stacks."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection

from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import FANOUT_CHANNEL, QUOTE_MESSAGES
from tradestack.trading.events import ACCOUNT_CHANNELS

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote  # type: ignore[import-not-found]
from .test_orders import open_account  # type: ignore[import-not-found]


@pytest.fixture
async def ws_url(app: FastAPI) -> AsyncIterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"ws://127.0.0.1:{port}/ws"
    server.should_exit = True
    await task


async def _recv_type(ws: ClientConnection, kind: str, timeout: float = 5) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message["type"] == kind:
            return message


async def _buy_and_watch_it_fill(
    client: httpx.AsyncClient, headers: dict[str, str], ws: ClientConnection, account: str, client_order_id: str, quantity: str
) -> None:
    """Buy `quantity` ETH-USD at market and see the order accepted, then filled, on `ws`."""
    body = {
        "account_id": account,
        "client_order_id": client_order_id,
        "symbol": "ETH-USD",
        "side": "buy",
        "type": "market",
        "quantity": quantity,
        "time_in_force": "ioc",
    }
    created = await client.post("/api/orders", json=body, headers=headers)
    assert created.status_code == 201, created.text
    statuses = []
    while "filled" not in statuses:
        statuses.append((await _recv_type(ws, "order"))["data"]["status"])
    assert statuses == ["accepted", "filled"]


async def test_orders_fills_and_portfolio_stream(
    ws_url: str, client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader, other = await make_user(Role.TRADER), await make_user(Role.TRADER)
    account = await open_account(client, trader, "100000")
    headers = {"Authorization": f"Bearer {trader.access_token}"}
    async with websockets.connect(ws_url, additional_headers=headers) as ws:
        await _recv_type(ws, "welcome")
        await ws.send(json.dumps({"op": "subscribe", "channels": ["orders", "fills", "portfolio", f"orders:{account}"]}))
        subscribed = await _recv_type(ws, "subscribed")
        assert f"orders:{account}" in subscribed["channels"]
        assert f"fills:{account}" in subscribed["channels"]
        await publish_quote("ETH-USD", "3000.00", "3000.50", size="10")
        await _buy_and_watch_it_fill(client, trader.headers, ws, account, "ws-1", "2")
        fill = await _recv_type(ws, "fill")
        assert (fill["data"]["quantity"], fill["data"]["price"], fill["channel"]) == ("2", "3000.5", f"fills:{account}")
        portfolio = await _recv_type(ws, "portfolio")
        assert portfolio["data"]["balances"]["position:ETH-USD"]["quantity"] == "2"

    other_headers = {"Authorization": f"Bearer {other.access_token}"}
    async with websockets.connect(ws_url, additional_headers=other_headers) as ws:
        await _recv_type(ws, "welcome")
        await ws.send(json.dumps({"op": "subscribe", "channels": [f"orders:{account}"]}))
        error = await _recv_type(ws, "error")
        assert error["error"] == "NotFoundError"
        assert account in error["detail"]


async def test_account_updates_reach_websocket_clients_but_not_the_market_data_channel(
    ws_url: str, client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    """The engine and the strategy runner subscribe to the market data's channel: Redis (or the in-process bus)
    must not send them every order, fill and portfolio update, only for them to drop it."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "100000")
    headers = {"Authorization": f"Bearer {trader.access_token}"}
    async with (
        runtime.bus.subscribe(FANOUT_CHANNEL) as market_data,
        websockets.connect(ws_url, additional_headers=headers) as ws,
    ):
        await _recv_type(ws, "welcome")
        await ws.send(json.dumps({"op": "subscribe", "channels": ["orders", "fills", "portfolio"]}))
        await _recv_type(ws, "subscribed")
        await publish_quote("ETH-USD", "3000.00", "3000.50", size="10")
        await _buy_and_watch_it_fill(client, trader.headers, ws, account, "ws-split-1", "1")
        await _recv_type(ws, "fill")
        await _recv_type(ws, "portfolio")
        # Published after every update above: once the subscriber has it, it has had all it was sent before it.
        await runtime.bus.publish(FANOUT_CHANNEL, b"test:end\n{}")
        names = []
        async with asyncio.timeout(5):
            async for message in market_data:
                if message.data == b"test:end\n{}":
                    break
                names.append(message.data.partition(b":")[0].decode())
    assert QUOTE_MESSAGES.decode().rstrip(":") in names  # the quote came this way
    assert not set(names) & set(ACCOUNT_CHANNELS), names
