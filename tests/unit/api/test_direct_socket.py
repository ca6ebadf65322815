"""A WebSocket's direct writer knows when it may write, through a real uvicorn server and websockets client."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets

from tradestack.api.protocol import (
    DIRECT_WRITE_EXTENSION,
    DirectSocket,
    DirectWriteWebSocketProtocol,
    text_frame_bytes,
)


class App:
    """Accepts each WebSocket, hands its direct writer to the test, and closes it when told to."""

    def __init__(self) -> None:
        self.sockets: asyncio.Queue[DirectSocket] = asyncio.Queue()
        self.close_now = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        direct = scope["extensions"][DIRECT_WRITE_EXTENSION]
        await self.sockets.put(direct)
        closing = asyncio.create_task(self.close_now.wait())
        receiving = asyncio.create_task(receive())
        done, pending = await asyncio.wait({closing, receiving}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if closing in done:
            await send({"type": "websocket.close", "code": 1000})


@pytest.fixture
async def served() -> AsyncIterator[tuple[App, uvicorn.Server, str]]:
    app = App()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", ws_per_message_deflate=False, ws=DirectWriteWebSocketProtocol
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield app, server, f"ws://127.0.0.1:{port}/"
    server.should_exit = True
    await task
    listener.close()


async def _until(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_direct_writes_reach_the_client_until_it_closes(served: tuple[App, uvicorn.Server, str]) -> None:
    app, _, url = served
    async with websockets.connect(url, compression=None) as client:
        direct = await asyncio.wait_for(app.sockets.get(), 5)
        assert direct.usable()
        assert direct.open
        assert direct.try_write(text_frame_bytes(b"one"))
        assert await asyncio.wait_for(client.recv(), 5) == "one"
        await client.close()
        await _until(lambda: not direct.open)
        assert not direct.try_write(text_frame_bytes(b"after the close"))


async def test_no_direct_write_after_the_server_closes(served: tuple[App, uvicorn.Server, str]) -> None:
    app, _, url = served
    async with websockets.connect(url, compression=None) as client:
        direct = await asyncio.wait_for(app.sockets.get(), 5)
        app.close_now.set()
        await _until(lambda: not direct.open)  # the close frame is sent: nothing may follow it
        assert not direct.try_write(text_frame_bytes(b"after the close"))
        with pytest.raises(websockets.ConnectionClosedOK):
            await asyncio.wait_for(client.recv(), 5)


async def test_no_direct_write_while_the_transport_asks_to_pause(served: tuple[App, uvicorn.Server, str]) -> None:
    app, server, url = served
    async with websockets.connect(url, compression=None) as client:
        direct = await asyncio.wait_for(app.sockets.get(), 5)
        (protocol,) = server.server_state.connections
        assert isinstance(protocol, DirectWriteWebSocketProtocol)
        protocol.pause_writing()  # as the transport does when its buffer passes the high-water mark
        assert not direct.open
        assert not direct.try_write(text_frame_bytes(b"while paused"))
        protocol.resume_writing()
        assert direct.open
        assert direct.try_write(text_frame_bytes(b"resumed"))
        assert await asyncio.wait_for(client.recv(), 5) == "resumed"
