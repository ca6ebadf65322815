"""HTTP/1.1 protocol for uvicorn that cuts off clients who send a request too slowly.

uvicorn waits for headers and body as long as bytes keep trickling in, so a few hundred
clients sending a byte every few seconds hold connections forever (slowloris). Here every
request must be read completely, headers and body, within ``request_read_timeout_seconds`` of
its first byte (or of the connection opening); otherwise the connection is closed. The time an
application spends answering is not limited here, nor the life of a connection upgraded to a
WebSocket.

Built on uvicorn's httptools protocol (the C parser uvicorn picks by default), not on h11:
under load h11's pure-Python parsing and serialisation cost more CPU per request than the rest
of the authenticated request path together.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
