"""A real server cuts off clients that trickle a request (not WebSockets once open), and refuses oversized WebSocket frames."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from . import test_server_process as server  # type: ignore[attr-defined]

pytestmark = pytest.mark.slow
spawn = server.spawn
TRICKLE_SECONDS = 0.25
HEADER = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
BODY_HEADER = b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"


def _cut_off_while_trickling(port: int, prefix: bytes, trickle: bytes) -> bool:
    """Send `prefix` at once, then `trickle` a byte at a time; True if the server closed the connection first."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(prefix)
        for byte in trickle:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return True
            sock.settimeout(TRICKLE_SECONDS)
            try:
                if sock.recv(1024) == b"":
                    return True
            except TimeoutError:
                continue
            except OSError:
                return True
    return False


def test_trickled_headers_and_bodies_are_cut_off_and_big_frames_refused(tmp_path: Path, spawn: object) -> None:
    env = server._env(tmp_path, TRADESTACK_REQUEST_READ_TIMEOUT_SECONDS="2", TRADESTACK_WS_MAX_FRAME_BYTES="65536")
    port = server.free_port()
    process = spawn([str(server.TRADESTACK), "up", "--no-demo-data", "--port", str(port)], env)  # type: ignore[operator]
    server._wait_ready(f"http://127.0.0.1:{port}", process)

    # Trickling either would take 200 x 0.25 s = 50 s: far beyond the 2 s read deadline.
    assert _cut_off_while_trickling(port, b"", HEADER)
    assert _cut_off_while_trickling(port, BODY_HEADER, b"{" + b" " * 399)
    # A prompt request on a fresh connection is still served.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(HEADER)
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")

    # A frame over the 64 KiB cap is refused by the server's protocol (1009) before the app reads it.
    with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        ws.send(b"x" * 100_000)
        closed = _closed_by_server(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1009

    # A WebSocket outlives the read deadline of the request that opened it: 3 s after the upgrade the
    # connection still carries messages (here the refusal of a bad token, with its close code).
    with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/ws") as ws:
        time.sleep(3)
        ws.send('{"op": "auth", "token": "not-a-token"}')
        assert '"AuthenticationError"' in str(ws.recv(timeout=10))
        closed = _closed_by_server(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 4401


def _closed_by_server(ws: websockets.sync.client.ClientConnection) -> ConnectionClosed:
    try:
        ws.recv(timeout=30)
    except ConnectionClosed as exc:
        return exc
    raise AssertionError("the server answered instead of closing")


@pytest.mark.parametrize(("trusted", "second_client_limited"), [(None, True), ('["127.0.0.1"]', False)])
def test_forwarded_for_is_believed_only_from_configured_proxies(
    tmp_path: Path, spawn: object, trusted: str | None, second_client_limited: bool
) -> None:
    extra = {"TRADESTACK_RATE_LIMIT_PER_IP": "3/minute"}
    if trusted is not None:
        extra["TRADESTACK_TRUSTED_PROXIES"] = trusted
    env = server._env(tmp_path, **extra)
    port = server.free_port()
    process = spawn([str(server.TRADESTACK), "up", "--no-demo-data", "--port", str(port)], env)  # type: ignore[operator]
    base = f"http://127.0.0.1:{port}"
    server._wait_ready(base, process)
    with httpx.Client(base_url=base) as http:
        statuses = [http.get("/api/market/instruments", headers={"X-Forwarded-For": "203.0.113.1"}).status_code for _ in range(4)]
        assert statuses[-1] == 429  # the per-IP limit works
        other = http.get("/api/market/instruments", headers={"X-Forwarded-For": "203.0.113.2"})
    # Untrusted by default: the header cannot pick another client address (the peer's limit applies).
    assert (other.status_code == 429) is second_client_limited
