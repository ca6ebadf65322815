"""/ws heartbeats: frames written straight to the socket count as traffic; the credential is re-checked busy or idle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace

import orjson
import pytest

from tradestack.api import ws

HEARTBEAT = 0.2


class _Socket:
    client = None
    headers: dict[str, str] = {}

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(text)


class _Direct:
    """A `DirectWriter` whose client keeps up."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def try_write(self, wire: bytes) -> bool:
        self.written.append(wire)
        return True


def _heartbeats(socket: _Socket) -> int:
    return sum(orjson.loads(text)["type"] == "heartbeat" for text in socket.sent)


async def test_frames_written_directly_hold_off_the_heartbeat_and_the_credential_is_still_rechecked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks: list[float] = []

    async def authenticate(self: object, runtime: object, caller: object) -> object:
        checks.append(asyncio.get_running_loop().time())
        return object()

    monkeypatch.setattr(ws._Credential, "authenticate", authenticate)
    settings = SimpleNamespace(ws_heartbeat_seconds=HEARTBEAT)
    runtime = SimpleNamespace(settings=settings, clock=SimpleNamespace(now=lambda: datetime.now(UTC)))
    socket = _Socket()
    session = ws._Session(socket, runtime)  # type: ignore[arg-type]
    session.credential = ws._Credential("token")
    direct = _Direct()
    session.mailbox.direct = direct
    loop = asyncio.get_running_loop()
    writer = asyncio.create_task(session.writer())
    try:
        # A busy stream: a quote every 50 ms for 6 heartbeat periods, every one written directly.
        for index in range(int(6 * HEARTBEAT / 0.05)):
            assert session.mailbox.deliver("quotes:AAPL", f"q{index}", b"<q>", loop.time())
            await asyncio.sleep(0.05)
        assert _heartbeats(socket) == 0, "a heartbeat was sent although the client kept receiving quotes"
        assert len(checks) >= 3, "the credential of a busy stream must still be re-checked every heartbeat period"
        # Then silence: heartbeats again.
        await asyncio.sleep(3 * HEARTBEAT)
        assert _heartbeats(socket) >= 2
    finally:
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer
