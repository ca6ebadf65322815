"""The heartbeat's credential re-check on /ws: an outage keeps the stream, a refused credential ends it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy.exc

from tradestack.api import ws
from tradestack.core.errors import AuthenticationError


class _Socket:
    client = None
    headers: dict[str, str] = {}

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: int | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = code


def _session(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> tuple[Any, _Socket]:
    async def authenticate(self: object, runtime: object, caller: object) -> object:
        raise error

    monkeypatch.setattr(ws._Credential, "authenticate", authenticate)
    socket = _Socket()
    session = ws._Session(socket, SimpleNamespace())  # type: ignore[arg-type]
    session.credential = ws._Credential("token")
    return session, socket


async def test_no_pooled_database_connection_in_time_keeps_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    # Thousands of clients connecting at once can hold every pooled connection past the pool timeout.
    session, socket = _session(monkeypatch, sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"))
    assert await session._still_allowed() is True
    assert socket.closed is None


async def test_a_refused_credential_still_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    session, socket = _session(monkeypatch, AuthenticationError("token revoked"))
    assert await session._still_allowed() is False
    assert socket.closed == ws.CLOSE_UNAUTHENTICATED


async def test_a_bug_in_the_recheck_is_not_taken_for_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    session, _ = _session(monkeypatch, KeyError("bug"))
    with pytest.raises(KeyError):
        await session._still_allowed()
