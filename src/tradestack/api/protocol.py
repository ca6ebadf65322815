"""uvicorn protocols: HTTP/1.1 that cuts off clients who send a request too slowly, and WebSocket
connections that the fan-out can write whole frames to directly.

uvicorn waits for headers and body as long as bytes keep trickling in, so a few hundred
clients sending a byte every few seconds hold connections forever (slowloris). Here every
request must be read completely, headers and body, within ``request_read_timeout_seconds`` of
its first byte (or of the connection opening); otherwise the connection is closed. The time an
application spends answering is not limited here, nor the life of a connection upgraded to a
WebSocket.

Built on uvicorn's httptools protocol (the C parser uvicorn picks by default), not on h11:
under load h11's pure-Python parsing and serialisation cost more CPU per request than the rest
of the authenticated request path together. A response's head goes out with its first body bytes,
in one write (`OneWriteCycle`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from tradestack.kit.config import get_settings
from tradestack.kit.logging import get_logger

log = get_logger(__name__)


class ReadTimeoutHttpProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with a deadline for reading each request (settings of this process).

    The deadline is armed when the connection opens and when the first bytes of a request arrive
    (or a pipelined one begins), and disarmed once the parser has the whole message (headers and body) or the connection is
    upgraded to a WebSocket.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = get_settings().request_read_timeout_seconds
        self.read_deadline: asyncio.TimerHandle | None = None
        self.reading_body = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.read_deadline is None:
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.read_deadline is None:
            self._arm()  # a pipelined request that began in the same bytes as the previous one ended

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.reading_body = True
        # The cycle uvicorn has just made for this request (its task has not run yet: it looks `send` up when it does).
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = OneWriteCycle

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_body = False
        self._disarm()  # the whole request is in

    def handle_websocket_upgrade(self) -> None:
        # The connection now belongs to the WebSocket protocol: no request of ours is being read on it
        # (the upgrade leaves the request unfinished), so the deadline must not cut it.
        self._disarm()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self.read_deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self.read_deadline is not None:
            self.read_deadline.cancel()
            self.read_deadline = None

    def _too_slow(self) -> None:
        self.read_deadline = None
        if not self.transport.is_closing():
            log.info("request_read_timeout", client=self.client[0] if self.client else None, body=self.reading_body)
            self.transport.close()


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request-response cycle, writing a response's head together with its first body bytes.

    uvicorn writes the status line and headers when the application sends ``http.response.start``
    and the body at ``http.response.body``: two writes, so two TCP segments and two wake-ups of a
    client waiting for the answer, each costing the server a system call. Here the head is kept
    until the first body message - which, for a whole response (Starlette's `Response`), comes in
    the same step of the task - and written with its bytes, in one write. A head whose body has not
    come by the event loop's next turn (a stream waiting for its first chunk) is written on its own
    then, as uvicorn would have written it, one turn later. HEAD requests are left as uvicorn writes them.
    Should the application fail or the connection go between the two messages, the head goes with the
    connection, which is closed either way (the client gets no response instead of an incomplete one).
    """

    _head: bytes = b""
    _head_due: asyncio.Handle | None = None

    async def send(self, message: ASGISendEvent) -> None:
        head = self._head
        if head:
            self._head = b""
            if self._head_due is not None:
                self._head_due.cancel()
            transport = self.transport
            with_head = _WithHead(transport, head)
            self.transport = with_head  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
                if with_head.head:  # nothing was written (an unexpected message): the head first, as uvicorn wrote it
                    transport.write(with_head.head)
            return
        if message["type"] == "http.response.start" and not self.response_started and self.scope["method"] != "HEAD":
            transport = self.transport
            held = _Held()
            self.transport = held  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            if held.head:
                self._head = held.head
                self._head_due = asyncio.get_running_loop().call_soon(self._write_head)
            return
        await super().send(message)

    def _write_head(self) -> None:
        head, self._head, self._head_due = self._head, b"", None
        if head and not self.transport.is_closing():
            self.transport.write(head)


class _Held:
    """Takes what uvicorn writes as a response's head."""

    __slots__ = ("head",)

    def __init__(self) -> None:
        self.head = b""

    def write(self, data: bytes) -> None:
        self.head += data


class _WithHead:
    """The connection's transport, for one body message of uvicorn's: the held head goes out with the first bytes
    written, or before the connection closes."""

    __slots__ = ("head", "transport")

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self.transport = transport
        self.head = head

    def write(self, data: bytes) -> None:
        if self.head:
            data, self.head = self.head + data, b""
        self.transport.write(data)

    def close(self) -> None:
        if self.head:
            self.transport.write(self.head)
            self.head = b""
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


DIRECT_WRITE_EXTENSION = "tradestack.direct_write"
"""The key, in a WebSocket's ASGI ``scope["extensions"]``, of its `DirectSocket` (served by `DirectWriteWebSocketProtocol`)."""
# A client with more than this not yet handed to the kernel is behind: its frames go through its
# mailbox (conflated) until the socket has taken the rest.
DIRECT_WRITE_MAX_BUFFERED_BYTES = 16_384


def text_frame_bytes(payload: bytes) -> bytes:
    """A whole server-to-client WebSocket text frame (unmasked, no extension) carrying `payload`."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


class DirectSocket:
    """Writes whole frames straight to the transport of one WebSocket connection (see `kit.fanout.DirectWriter`).

    Only while the connection is open, uses no extension (no permessage-deflate: the same bytes
    suit every client), and its transport has next to nothing buffered (the client keeps up).
    The frames uvicorn itself writes (through `send`) are whole frames written synchronously too,
    so the two never interleave within a frame.

    `try_write` runs once per client for every message fanned out, so the connection's state (no
    close frame sent, not disconnected, writing not paused, the WebSocket connection open) is one
    attribute, `open`, which `DirectWriteWebSocketProtocol` refreshes whenever that state may have
    changed; only the transport's own (C calls with uvloop) is read on each write.
    """

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self._conn = protocol.conn  # made once per connection, before the handshake
        self.open = False
        self.refresh()

    def usable(self) -> bool:
        """Whether frames can be written as plain bytes (checked once the handshake is done)."""
        return not self._protocol.conn.extensions

    def refresh(self) -> None:
        """Read the protocol's state again (it calls this whenever that state changes)."""
        protocol = self._protocol
        self.open = (
            not (protocol.close_sent or protocol.disconnected) and protocol.writable.is_set() and self._conn.state is State.OPEN
        )

    def try_write(self, wire: bytes) -> bool:
        transport = self._transport
        if not self.open or transport.get_write_buffer_size() > DIRECT_WRITE_MAX_BUFFERED_BYTES or transport.is_closing():
            return False
        transport.write(wire)
        return True


class _Refreshing:
    """A flag of uvicorn's WebSocket protocol (``close_sent``, ``disconnected``) whose every change refreshes the
    connection's `DirectSocket`."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}_value"

    def __get__(self, protocol: DirectWriteWebSocketProtocol | None, owner: type | None = None) -> bool:
        return bool(getattr(protocol, self._slot, False))

    def __set__(self, protocol: DirectWriteWebSocketProtocol, value: bool) -> None:
        setattr(protocol, self._slot, value)
        protocol.refresh_direct()


class DirectWriteWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol (websockets sans-I/O) offering the application a `DirectSocket` in
    the connection's scope, under ``extensions[DIRECT_WRITE_EXTENSION]``, and keeping its `open` current:
    setting uvicorn's ``close_sent`` or ``disconnected`` refreshes it, and so does whatever else may change
    the connection's state (pausing or resuming writing, bytes from the client, a message the application
    sends, the server shutting down), once done."""

    _direct: DirectSocket | None = None
    close_sent = _Refreshing()
    disconnected = _Refreshing()

    def refresh_direct(self) -> None:
        """Bring the `DirectSocket`'s `open` up to date (if the handshake has made one)."""
        if self._direct is not None:
            self._direct.refresh()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.refresh_direct()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.refresh_direct()

    def data_received(self, data: bytes) -> None:
        try:
            super().data_received(data)  # a close frame or a protocol error moves the connection on
        finally:
            self.refresh_direct()

    async def send(self, message: ASGISendEvent) -> None:
        try:
            await super().send(message)
        finally:
            self.refresh_direct()

    def shutdown(self) -> None:
        super().shutdown()
        self.refresh_direct()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # not set when the handshake was refused
        if scope is not None:
            self._direct = DirectSocket(self)
            scope["extensions"][DIRECT_WRITE_EXTENSION] = self._direct
