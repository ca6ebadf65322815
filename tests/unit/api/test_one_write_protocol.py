"""The HTTP protocol writes a response's head with its first body bytes (one write), and never holds it back longer."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from tradestack.api.protocol import ReadTimeoutHttpProtocol

Scope = dict[str, Any]


class Transport:
    """What the protocol writes, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: object) -> None:
        pass


async def whole(scope: Scope, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


async def streamed(scope: Scope, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await asyncio.sleep(0.05)  # the first chunk takes a while: the head must not wait for it
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def start(app: Any, request: bytes) -> tuple[ReadTimeoutHttpProtocol, Transport]:
    """A connection of the server's protocol to `app` that has received `request`."""
    config = Config(app=app, http=ReadTimeoutHttpProtocol, log_config=None, access_log=False, lifespan="off")
    config.load()
    protocol = ReadTimeoutHttpProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(request)
    return protocol, transport


async def serve(app: Any, request: bytes) -> Transport:
    """What the protocol wrote for `request` once `app` has answered."""
    protocol, transport = start(app, request)
    await asyncio.sleep(0.2)
    protocol.connection_lost(None)
    return transport


async def test_a_whole_response_is_one_write() -> None:
    transport = await serve(whole, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\nhello")


async def test_two_kept_alive_requests_get_one_write_each() -> None:
    transport = await serve(whole, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
    assert [write.endswith(b"\r\n\r\nhello") for write in transport.writes] == [True, True]


async def test_the_head_of_a_stream_is_written_before_its_first_chunk_comes() -> None:
    protocol, transport = start(streamed, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.01)  # the app is waiting for its first chunk
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n")
    await asyncio.sleep(0.2)
    protocol.connection_lost(None)
    assert b"".join(transport.writes[1:]) == b"5\r\nfirst\r\n0\r\n\r\n"


async def test_a_head_request_and_a_connection_closed_after_the_answer_get_the_whole_head() -> None:
    head = await serve(whole, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"".join(head.writes).endswith(b"content-length: 5\r\n\r\n")
    closing = await serve(whole, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert len(closing.writes) == 1
    assert closing.writes[0].endswith(b"\r\n\r\nhello")
    assert closing.closed


async def test_an_application_that_fails_after_the_head_leaves_a_closed_connection() -> None:
    async def failing(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        raise RuntimeError("boom")

    transport = await serve(failing, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.closed
    assert b"hello" not in b"".join(transport.writes)
