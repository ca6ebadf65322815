"""The smoke test's WebSocket check over TLS: wss:// verified against the system's CAs (or SSL_CERT_FILE) by
default, unverified only with --insecure, no TLS for ws:// (websockets refuses ssl=None for wss://)."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from tradestack.deploy.smoke import Credentials, Smoke


class _StopError(Exception):
    pass


@pytest.mark.parametrize(
    ("base_url", "verify", "expected"),
    [
        ("https://trade.example.com", True, ("wss://trade.example.com/ws", ssl.CERT_REQUIRED, True)),
        ("https://trade.example.com/", False, ("wss://trade.example.com/ws", ssl.CERT_NONE, False)),
        ("http://127.0.0.1:8000", True, ("ws://127.0.0.1:8000/ws", None, None)),
    ],
)
async def test_websocket_tls_follows_the_base_url_and_insecure(
    monkeypatch: pytest.MonkeyPatch, base_url: str, verify: bool, expected: tuple[str, Any, Any]
) -> None:
    seen: dict[str, Any] = {}

    def connect(url: str, **kwargs: Any) -> Any:
        seen.update(url=url, ssl=kwargs["ssl"])
        raise _StopError

    monkeypatch.setattr("websockets.asyncio.client.connect", connect)
    smoke = Smoke(base_url, Credentials(), verify_tls=verify)
    smoke.headers = {"Authorization": "Bearer t"}
    with pytest.raises(_StopError):
        await smoke._websocket(None)  # type: ignore[arg-type]
    context = seen["ssl"]
    got = (seen["url"], context.verify_mode if context else None, context.check_hostname if context else None)
    assert got == expected
