"""HTTP/1.1 protocol for uvicorn that cuts off clients who send a request too slowly.

uvicorn (h11) waits for headers and body as long as bytes keep trickling in, so a few hundred
clients sending a byte every few seconds hold connections forever (slowloris). Here every
request must be read completely, headers and body, within ``request_read_timeout_seconds`` of
its first byte (or of the connection opening); otherwise the connection is closed. The time an
application spends answering is not limited here, nor the life of a connection upgraded to a
WebSocket.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from tradestack.kit.config import get_settings
from tradestack.kit.logging import get_logger

log = get_logger(__name__)
READING = (h11.IDLE, h11.SEND_BODY)


class ReadTimeoutH11Protocol(H11Protocol):
    """`H11Protocol` with a deadline for reading each request (settings of this process)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = get_settings().request_read_timeout_seconds
        self.read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.read_deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first byte of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state not in READING:
            self._disarm()  # the whole request is in

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        # The connection now belongs to the WebSocket protocol: no request of ours is being read on it
        # (h11 still says "body", as the upgrade leaves the request unfinished), so the deadline must not cut it.
        self._disarm()
        super().handle_websocket_upgrade(event)

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
        if self.conn.their_state in READING and not self.transport.is_closing():
            reading_body = self.conn.their_state is h11.SEND_BODY
            log.info("request_read_timeout", client=self.client[0] if self.client else None, body=reading_body)
            self.transport.close()
