"""Publish -> client latency of live quotes over /ws with 1,000 connected clients (or 5,000 over 2 workers).

    .venv/bin/python benchmarks/ws_fanout.py [--clients 1000] [--baseline-clients 10] [--client-processes 2]
                                             [--seconds 20] [--channels quotes:AAPL] [--log-level info]
                                             [--heartbeat-seconds 300]
                                             [--workers 1] [--redis-url redis://127.0.0.1:6379/4]
                                             [--settle-seconds 5] [--loop-stall-ms 0] [--client-gc]

With --workers N > 1 (the production layout): ``tradestack serve api --workers N`` with Redis
(--redis-url, default $TRADESTACK_TEST_REDIS_URL; keys under a namespace of the run's own) and the
feeds in ``tradestack serve marketdata``, publishing through Redis pub/sub to every worker; the
clients' connections are spread over the workers by the kernel (one listening socket shared by
the workers). The server's CPU is then the sum over its processes, and the sockets each worker
holds are printed to show how the connections were shared.

One Tradestack process like `tradestack up`: a fresh SQLite database (``tradestack db upgrade``,
``tradestack data import`` for the instruments and the demo history, a trader from ``tradestack
user create``), then ``tradestack serve api --workers 1`` with TRADESTACK_MARKETDATA_IN_PROCESS=true,
so the feeds run inside the API process and reach the WebSocket clients through the in-process
bus. TRADESTACK_WS_HEARTBEAT_SECONDS is raised (--heartbeat-seconds) so idle-connection
heartbeats, which re-check the credential in the database, do not run during the measurement,
and the access token lives long enough for the run. TRADESTACK_MARKET_HOURS_ALWAYS_OPEN=true, so
that the replay moves on whatever the day (a closed venue holds its last quote and sends it again
once a second: 18 quotes in a window instead of 80, and the p99 of 1,000 clients then rests on the
worst two). Everything else keeps its defaults, including TRADESTACK_REPLAY_TICK_SECONDS (one quote
per symbol every 0.25 s) and the server's loop watch (off; --loop-stall-ms turns it on).

The clients run in --client-processes processes and are lean, so that the load generator is
not what is measured: on uvloop, each connection is a non-blocking socket of its own that the
event loop calls a reader for; the reader takes what the kernel has with one ``recvmsg``, speaks
the upgrade and the frames itself (no extension offered), reads the clock once per ``recvmsg`` and
keeps each frame as bytes, parsed only after the measured window. The client processes' garbage
collector is frozen and off while they measure (--client-gc leaves it on: passes of up to 32 ms
were seen in one, each delaying every frame that process was reading); the passes that still run
are counted. The client processes share the machine's cores with the server. Each
client authenticates with {"op": "auth"} (one access token for all: one sign-in), subscribes to
--channels, and for every quote frame records latency = its wall clock once ``recvmsg`` has
returned the bytes that complete the frame - data.ts (the publication time stamped by the feed;
same machine, same clock). Only frames published
in the window count: it opens --settle-seconds (5) after every client of the phase had its
subscription confirmed and lasts --seconds. The connect and subscribe warm-up and the settling time
are discarded: a burst of 1,000 connections leaves the server one-time work, above all the collector's
one pass over everything once its frozen set has doubled with the connections' objects (91-161 ms
seen, `kit/gcpolicy.py`), which is the cost of the burst, not the latency of a steady set of clients;
python_gc_pause_seconds over the window (below) shows a pass that still falls in it. Frames of the
window may arrive up to --grace-seconds (2) after the
window (a server further behind than that shows no quote at all: the run says so). Frames missing: for every connected client, the
quotes published in the window (seen by any client) that it did not receive; the server's own count
of frames it conflated for slow readers is subtracted to give the frames lost. The file-descriptor limit is raised to its hard
limit in this process before the server starts (the server inherits it) and in each client process.

Two phases on the same server: the baseline with --baseline-clients (10) and then --clients
(1,000); printed: messages, per-client message rate, p50/p95/p99/max latency, connections
that failed or were closed, frames the server conflated for slow readers and frames lost, CPU used
by the server and the clients, the ratio to the baseline and the goal (p99 < 50 ms with --clients
clients on one worker, p99 < 100 ms and no frame lost with more workers). The last line is
``RESULT name=ws_fanout clients=... workers=... p99_ms=... lost=... ratio=<p99 / baseline p99>``.

Where the time goes (printed under each phase). Each frame also carries the time its client's kernel
received it (SO_TIMESTAMPNS on the socket; for several segments read at once, the last one's), which
splits its latency into publication -> client kernel (the bus, the server's loop, and the frame's place
in the fan-out: over loopback the kernel receives a frame while the server writes it) and client
kernel -> read (the client process's own delay: its loop busy with other sockets, or off the CPU).
Per quote: how long after publication the first client's kernel had it, and first to last kernel
receipt (the fan-out's duration as the clients saw it). The slowest 1% of frames: how many quotes
they come from, their two parts, their median position in the fan-out order (a frame's position:
the rank of its kernel time among the quote's); for the three quotes with most of them, what the
client processes' loops and collectors were doing meanwhile. How much a client's position moves
between successive quotes (0: the server serves its clients in the same order every time). Per
client process: its kernel -> read times, the spread of one quote's reads in it, the lag of its event
loop (a callback due every 5 ms, timed with perf_counter) and its collector passes. From the server's
/metrics over the window (bucket bounds, not exact values): websocket_fanout_duration_seconds and
websocket_fanout_cpu_seconds per message fanned out (CPU well below the duration: the server thread
was off the CPU meanwhile), event_loop_lag_seconds (with --loop-stall-ms) and python_gc_pause_seconds
(published every 5 s: a pause up to 5 s before the window may be counted).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import itertools
import math
import multiprocessing
import os
import queue
import re
import resource
import secrets
import socket
import statistics
import struct
import subprocess
import tempfile
import time
from collections import Counter
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from harness import BIN, ROOT, clean_env, free_port, server, wait_ready

GOAL_P99_MS = 50.0
GOAL_P99_MS_WORKERS = 100.0  # several workers, 5,000 clients (issue 15)
SETTLE_SECONDS = 5.0  # default --settle-seconds: the server's one-time work after a burst of connections
GRACE_SECONDS = 2.0  # default --grace-seconds: frames published in the window may arrive this long after it
CONNECT_TIMEOUT_SECONDS = 180.0


# -- client processes -------------------------------------------------------------------------------
#
# A lean client: one asyncio Protocol per connection on uvloop, the upgrade and the frames spoken
# by hand (no extension, text frames, server frames unmasked), so that what one frame costs the load
# generator is a bytes slice and a clock read: receipt time is taken once per `data_received`, and
# frames are kept as bytes and parsed only after the measured window.


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _label(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:160]


class _RefusedError(Exception):
    """The server answered the upgrade, auth or subscribe with something else than expected."""


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client-to-server frame (RFC 6455 5.2), FIN set."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    key = int.from_bytes((mask * (length // 4 + 1))[:length], "big")
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(length, "big") if length else b""
    return header + mask + masked


# Linux socket options Python's socket module does not name (asm-generic values, as on x86_64 and arm64):
# SO_TIMESTAMPNS makes recvmsg report, as SCM_TIMESTAMPNS, when the kernel received the last bytes it returns.
SO_TIMESTAMPNS = 35
TIMESTAMP_SPACE = socket.CMSG_SPACE(16)  # a struct timespec
RECEIVE_BYTES = 262_144
LAG_TICK_SECONDS = 0.005  # how often each client process measures the lag of its own event loop
# One receive buffer per client process, reused by every read (a fresh 256 KiB buffer per recvmsg is an
# mmap and munmap each time: it tripled the clients' CPU); what a read returns is copied out of it.
_RECEIVE_VIEW = memoryview(bytearray(RECEIVE_BYTES))


class LeanClient:
    """One WebSocket connection on a non-blocking socket of its own, read by an event-loop reader with `recvmsg`.

    `frames` gets (receipt time, kernel time, payload) of each text frame while recording: the receipt
    time is the wall clock once `recvmsg` has returned the bytes that complete the frame, the kernel time
    when the kernel received them (SO_TIMESTAMPNS; for several segments read at once, the last one's).
    """

    def __init__(self, sock: socket.socket, host: str, path: str, window: Any) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._host = host
        self._path = path
        self._window = window
        self._buffer = b""
        self._upgraded = False
        self._loop = asyncio.get_running_loop()
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()  # text frames until subscribed
        self.subscribed = False
        self.frames: list[tuple[float, float, bytes]] = []
        self.closed: asyncio.Future[str] = self._loop.create_future()
        # None once the server accepted the upgrade; why not, when the connection ended before.
        self.upgraded: asyncio.Future[str | None] = self._loop.create_future()

    def start(self) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self._loop.add_reader(self._fd, self._readable)
        self._send(
            f"GET {self._path} HTTP/1.1\r\nHost: {self._host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def _send(self, data: bytes) -> None:
        """Client frames are small and rare: the socket buffer always takes them whole (else the run says so)."""
        if self.closed.done():
            return
        try:
            sent = self._sock.send(data)
        except OSError as exc:
            self._finish(_label(exc))
            return
        if sent != len(data):
            self._finish(f"the socket took {sent} of {len(data)} bytes")

    def send_text(self, text: bytes) -> None:
        self._send(client_frame(0x1, text))

    def _readable(self) -> None:
        try:
            size, ancillary, _, _ = self._sock.recvmsg_into((_RECEIVE_VIEW,), TIMESTAMP_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._finish(_label(exc))
            return
        received = time.time()
        if not size:
            self._finish("closed without a close frame")
            return
        data = bytes(_RECEIVE_VIEW[:size])
        kernel = received
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack_from("qq", value)
                kernel = seconds + nanoseconds * 1e-9
        self._parse(data, received, kernel)

    def _parse(self, data: bytes, received: float, kernel: float) -> None:
        buffer = self._buffer + data if self._buffer else data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return
            status = buffer[: buffer.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self._finish(f"upgrade answered {status.decode(errors='replace')}")
                return
            self._upgraded = True
            if not self.upgraded.done():
                self.upgraded.set_result(None)
            buffer = buffer[end + 4 :]
        window = self._window
        # Until the phase stops (--grace-seconds after the window): a frame of the window arriving late still counts.
        recording = self.subscribed and window[0] - 1.0 <= received
        position, size = 0, len(buffer)
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length = second & 0x7F
            start = position + 2
            if length == 126:
                if size - start < 2:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            if second & 0x80:  # a masked server frame breaks the protocol
                self._finish("masked frame from the server")
                return
            end = start + length
            if end > size:
                break
            opcode = first & 0x0F
            if opcode == 0x1:
                if recording:
                    self.frames.append((received, kernel, buffer[start:end]))
                elif not self.subscribed:
                    self.replies.put_nowait(buffer[start:end])
            elif opcode == 0x9:  # ping: answer with a pong carrying the same payload
                self._send(client_frame(0xA, buffer[start:end]))
            elif opcode == 0x8:
                payload = buffer[start:end]
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                reason = payload[2:].decode(errors="replace")
                self._finish(f"closed: {code} {reason}" if code is not None else "closed without a status")
                return
            elif opcode != 0xA:
                self._finish(f"unexpected opcode {opcode} (fragmented or binary frame)")
                return
            position = end
        self._buffer = buffer[position:]

    def _finish(self, why: str) -> None:
        if not self.closed.done():
            self.closed.set_result(why)
            self.replies.put_nowait(b"")
        if not self.upgraded.done():
            self.upgraded.set_result(why)
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._fd = -1
            self._sock.close()

    async def reply(self) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(self.replies.get(), 60)
        except TimeoutError:
            raise _RefusedError("no reply within 60 s") from None
        if not raw:  # the connection ended
            raise _RefusedError(self.closed.result())
        reply: dict[str, Any] = orjson.loads(raw)
        return reply


class LoopLag:
    """How late this process's event loop ran a callback due every `LAG_TICK_SECONDS`: (wall time, lateness) each tick."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.samples: list[tuple[float, float]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        # Measured with perf_counter: uvloop's own clock (loop.time) counts whole milliseconds.
        self._due = time.perf_counter() + LAG_TICK_SECONDS
        self._handle = self._loop.call_later(LAG_TICK_SECONDS, self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.samples.append((time.time(), max(0.0, now - self._due)))
        self._due = now + LAG_TICK_SECONDS
        self._handle = self._loop.call_later(LAG_TICK_SECONDS, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


class GcPauses:
    """The collector's passes in this process: (wall time at the start, seconds, generation)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float, int]] = []
        self._began = (0.0, 0.0)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = (time.time(), time.perf_counter())
        else:
            self.pauses.append((self._began[0], time.perf_counter() - self._began[1], info["generation"]))


async def _run_clients(
    url: str, token: str, channels: list[str], clients: int, concurrency: int,
    window: Any, stop: Event, ready: Queue[Any], results: Queue[Any], collect: bool,
) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    failures: Counter[str] = Counter()
    gate = asyncio.Semaphore(concurrency)
    connections: list[LeanClient] = []

    async def handshake() -> LeanClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        ws = LeanClient(sock, f"{host}:{port}", parts.path, window)
        ws.start()
        try:
            refused = await asyncio.wait_for(asyncio.shield(ws.upgraded), 60)
            if refused is not None:
                raise _RefusedError(refused)
            ws.send_text(orjson.dumps({"op": "auth", "token": token}))
            reply = await ws.reply()
            if reply.get("type") != "welcome":
                raise _RefusedError(f"auth answered {reply}")
            ws.send_text(orjson.dumps({"op": "subscribe", "channels": channels}))
            while True:  # a snapshot quote may come before the confirmation: skip it
                reply = await ws.reply()
                if reply.get("type") == "subscribed":
                    if sorted(reply.get("channels", [])) != sorted(channels):
                        raise _RefusedError(f"subscribe answered {reply}")
                    break
                if reply.get("type") == "error":
                    raise _RefusedError(f"subscribe answered {reply}")
            ws.subscribed = True
        except BaseException:
            ws.close()
            raise
        return ws

    async def client() -> None:
        try:
            async with gate:
                connections.append(await handshake())
        except Exception as exc:  # noqa: BLE001 - every failed connection is counted and reported
            failures[_label(exc)] += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    # The load generator's own collector stays out of the measurement: what the connections made is frozen
    # (never visited again), and no pass runs until the results are taken (the frames kept are bounded by
    # the run's length). The passes that still run are counted (GcPauses), so a run shows if they mattered.
    gc.collect()
    gc.freeze()
    if not collect:
        gc.disable()
    lag, gc_pauses = LoopLag(), GcPauses()
    lag.start()
    gc.callbacks.append(gc_pauses)
    ready.put((len(connections), dict(failures)))
    cpu_start = time.process_time()
    wall_start = time.monotonic()
    await asyncio.to_thread(stop.wait)
    cpu_percent = 100.0 * (time.process_time() - cpu_start) / max(1e-9, time.monotonic() - wall_start)
    lag.stop()
    gc.callbacks.remove(gc_pauses)
    gc.enable()
    closed_early = Counter(ws.closed.result() for ws in connections if ws.closed.done())
    for ws in connections:
        ws.close()
    # After the run: parse the frames, keep the quotes published in the window.
    receipts: list[tuple[int, str, float, float, float]] = []  # (client, channel, published, kernel, received)
    counts: list[int] = []
    epoch_of: dict[str, float] = {}
    start, end = window[0], window[1]
    for index, ws in enumerate(connections):
        count = 0
        for received, kernel, payload in ws.frames:
            message = orjson.loads(payload)
            if message.get("type") != "quote":
                continue
            ts: str = message["data"]["ts"]
            epoch = epoch_of.get(ts)
            if epoch is None:
                epoch = epoch_of[ts] = datetime.fromisoformat(ts).timestamp()
            if start <= epoch < end:
                receipts.append((index, message["channel"], epoch, kernel, received))
                count += 1
        counts.append(count)
        ws.frames.clear()
    results.put(
        {
            "connected": len(connections),
            "failures": dict(failures),
            "closed_early": dict(closed_early),
            "receipts": receipts,
            "counts": counts,
            "loop_lag": [sample for sample in lag.samples if start <= sample[0] < end + 1.0],
            "gc_pauses": [pause for pause in gc_pauses.pauses if start <= pause[0] < end + 1.0],
            "extensions": {"none (not offered)": len(connections)},
            "cpu_percent": cpu_percent,
        }
    )


def client_process(
    url: str, token: str, channels: list[str], clients: int, concurrency: int,
    window: Any, stop: Event, ready: Queue[Any], results: Queue[Any], collect: bool,
) -> None:  # fmt: skip
    """Entry point of one client process."""
    raise_nofile_limit()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_run_clients(url, token, channels, clients, concurrency, window, stop, ready, results, collect))


# -- the server ---------------------------------------------------------------------------------------


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([str(BIN / "tradestack"), *args], env=env, cwd=ROOT, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"tradestack {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def sign_in(base: str, email: str, password: str) -> str:
    response = httpx.post(f"{base}/api/auth/login", json={"email": email, "password": password}, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"POST /api/auth/login answered {response.status_code}: {response.text}")
    token: str = response.json()["access_token"]
    return token


def server_pid(port: int) -> int | None:
    """The pid of `tradestack serve api ... --port <port>` (one worker: the process serving)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in args and b"api" in args and b"--port" in args and str(port).encode() in args:
            return int(entry.name)
    return None


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_tree(pid: int | None) -> list[int]:
    """`pid` and its child processes (uvicorn's workers)."""
    if pid is None:
        return []
    children = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None and fields[1] == str(pid)
    ]
    return [pid, *children]


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds used so far by `pid` and its children alive now (nan when unknown)."""
    total = 0.0
    pids = process_tree(pid)
    for each in pids:
        fields = _stat(each)
        if fields is not None:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total if pids else math.nan


def _is_worker(pid: int) -> bool:
    """A uvicorn worker, not multiprocessing's resource tracker (a child of the server too, holding no socket)."""
    try:
        return b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def sockets_per_worker(pid: int | None) -> list[int]:
    """Open sockets held by each worker of `pid` (by the process itself when it has no workers)."""
    tree = process_tree(pid)
    workers = [child for child in tree[1:] if _is_worker(child)] or tree[:1]
    counts = []
    for each in workers:
        try:
            counts.append(sum(1 for fd in Path(f"/proc/{each}/fd").iterdir() if os.readlink(fd).startswith("socket:")))
        except OSError:
            counts.append(-1)
    return counts


def open_files_limit(pid: int | None) -> str:
    if pid is None:
        return "unknown"
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return f"{soft} (hard {hard})"
    except OSError:
        pass
    return "unknown"


def metric(base: str, name: str) -> float:
    """The sum of a metric's samples over all labels on the server's /metrics (nan when it is not exported)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    if not re.search(rf"^# HELP \w*{name} ", text, re.M):
        return math.nan
    return sum(float(v) for v in re.findall(rf"^\w*{name}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", text, re.M))


def counted(base: str, name: str) -> float:
    """A counter's total over all labels on the server's /metrics: 0 while no process has counted any (unexported)."""
    total = metric(base, name)
    return 0.0 if math.isnan(total) else total


def histogram(base: str, name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts on the server's /metrics, by upper bound, summed over its other labels
    ({} when it is not exported)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    buckets: dict[float, float] = {}
    for bound, value in re.findall(rf'^\w*{name}_bucket\{{[^}}]*le="([^"]+)"[^}}]*\}} ([0-9.e+-]+)$', text, re.M):
        upper = math.inf if bound == "+Inf" else float(bound)
        buckets[upper] = buckets.get(upper, 0.0) + float(value)
    return buckets


def histogram_text(after: dict[float, float], before: dict[float, float]) -> str:
    """What a histogram counted between two readings: count, and the bucket bounds of its p50, p99 and maximum, in ms."""
    if not after:
        return "not exported by this server"
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return "none"

    def bound_of(share: float) -> str:
        upper = next(b for b, c in zip(bounds, counts, strict=True) if c >= share * total)
        return f"<= {upper * 1000:g}" if math.isfinite(upper) else f"> {bounds[-2] * 1000:g}"

    return f"{total:.0f}, p50 {bound_of(0.5)}, p99 {bound_of(0.99)}, max {bound_of(1.0)} ms"


# -- phases -------------------------------------------------------------------------------------------


def _pct(values: list[float], q: int) -> float:
    """The q-th percentile (nan for fewer than two values)."""
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else math.nan


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


SERVER_HISTOGRAMS = {
    "fanout": "websocket_fanout_duration_seconds",
    "fanout_cpu": "websocket_fanout_cpu_seconds",
    "loop_lag": "event_loop_lag_seconds",
    "gc": "python_gc_pause_seconds",
}


@dataclass(frozen=True, slots=True)
class Receipt:
    """One quote frame of the window received by one client: when published, received by its kernel, and read."""

    process: int
    client: int
    channel: str
    published: float
    kernel: float
    received: float

    @property
    def latency(self) -> float:
        """Publication -> the client has read the whole frame, ms: the measured latency."""
        return (self.received - self.published) * 1000.0

    @property
    def server_part(self) -> float:
        """Publication -> the client's kernel received the frame, ms: the bus, the server's loop, the fan-out."""
        return (self.kernel - self.published) * 1000.0

    @property
    def client_part(self) -> float:
        """The client's kernel received the frame -> the client has read it, ms: the client process's own delay."""
        return (self.received - self.kernel) * 1000.0


@dataclass
class Phase:
    clients: int
    seconds: float
    grace: float
    settle: float = 0.0
    window_start: float = math.nan  # wall clock, to match the server's log (--server-log)
    connected: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    closed_early: Counter[str] = field(default_factory=Counter)
    receipts: list[Receipt] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    by_channel: dict[str, list[float]] = field(default_factory=dict)
    counts: list[int] = field(default_factory=list)
    published: int = 0
    spreads: list[float] = field(default_factory=list)  # last - first client receipt of each quote, ms
    extensions: Counter[str] = field(default_factory=Counter)
    client_cpu: list[float] = field(default_factory=list)
    client_loop_lag: list[list[tuple[float, float]]] = field(default_factory=list)  # per process: (wall, seconds late)
    client_gc: list[list[tuple[float, float, int]]] = field(default_factory=list)  # per process: (wall, seconds, gen)
    server_histograms: dict[str, str] = field(default_factory=dict)
    server_cpu_percent: float = math.nan
    conflated: float = math.nan
    active_on_server: float = math.nan
    sockets: list[int] = field(default_factory=list)

    @property
    def missing(self) -> int:
        """Quote frames of the window that connected clients did not receive."""
        return sum(max(0, self.published - count) for count in self.counts)

    @property
    def lost(self) -> int:
        """Missing frames not accounted for by the server's conflation."""
        conflated = 0 if math.isnan(self.conflated) else int(self.conflated)
        return max(0, self.missing - conflated)

    def quantile(self, q: int) -> float:
        return _pct(self.latencies, q)

    @property
    def rates(self) -> list[float]:
        return [c / self.seconds for c in self.counts]


def run_phase(args: argparse.Namespace, base: str, token: str, clients: int, pid: int | None) -> Phase:
    context = multiprocessing.get_context("spawn")
    window = context.RawArray("d", [math.inf, math.inf])
    stop = context.Event()
    ready: Queue[Any] = context.Queue()
    results: Queue[Any] = context.Queue()
    processes = max(1, min(args.client_processes, clients))
    shares = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    url = base.replace("http://", "ws://") + "/ws"
    workers = [
        context.Process(
            target=client_process,
            args=(url, token, args.channels, share, args.connect_concurrency, window, stop, ready, results, args.client_gc),
            daemon=True,
        )
        for share in shares
    ]
    phase = Phase(clients=clients, seconds=args.seconds, grace=args.grace_seconds, settle=args.settle_seconds)
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            try:
                ready.get(timeout=args.connect_timeout)
            except queue.Empty:
                raise RuntimeError(f"a client process did not finish connecting within {args.connect_timeout:g} s") from None
        phase.active_on_server = metric(base, "websocket_connections_active")
        phase.sockets = sockets_per_worker(pid)
        time.sleep(args.settle_seconds)
        # A labelled counter no worker has touched yet may not be exported at all (multiprocess mode, a server before the
        # hub exported its kinds at 0): nothing conflated so far.
        conflated_before = counted(base, "websocket_messages_conflated_total")
        histograms_before = {key: histogram(base, name) for key, name in SERVER_HISTOGRAMS.items()}
        cpu_before = cpu_seconds(pid)
        start = phase.window_start = time.time()
        window[1] = start + args.seconds  # the end first: a reader never sees the start with an open end
        window[0] = start
        time.sleep(args.seconds)
        phase.server_cpu_percent = 100.0 * (cpu_seconds(pid) - cpu_before) / args.seconds
        phase.conflated = counted(base, "websocket_messages_conflated_total") - conflated_before
        phase.server_histograms = {
            key: histogram_text(histogram(base, name), histograms_before[key]) for key, name in SERVER_HISTOGRAMS.items()
        }
        time.sleep(args.grace_seconds)
        stop.set()
        published: dict[tuple[str, float], list[float]] = {}  # (channel, publication) -> [first, last] receipt
        for process in range(len(workers)):
            try:
                out = results.get(timeout=60)
            except queue.Empty:
                raise RuntimeError("a client process did not report its results within 60 s") from None
            phase.connected += out["connected"]
            phase.failures.update(out["failures"])
            phase.closed_early.update(out["closed_early"])
            for client, channel, epoch, kernel, received in out["receipts"]:
                receipt = Receipt(process, client, channel, epoch, kernel, received)
                phase.receipts.append(receipt)
                phase.latencies.append(receipt.latency)
                phase.by_channel.setdefault(channel, []).append(receipt.latency)
                seen = published.setdefault((channel, epoch), [received, received])
                seen[0], seen[1] = min(seen[0], received), max(seen[1], received)
            phase.counts.extend(out["counts"])
            phase.extensions.update(out["extensions"])
            phase.client_cpu.append(out["cpu_percent"])
            phase.client_loop_lag.append(out["loop_lag"])
            phase.client_gc.append(out["gc_pauses"])
        phase.published = len(published)
        phase.spreads = [(last - first) * 1000.0 for first, last in published.values()]
    finally:
        stop.set()
        for worker in workers:
            worker.join(20)
            if worker.is_alive():
                worker.terminate()
                worker.join(5)
    return phase


def where_the_time_goes(phase: Phase) -> list[str]:
    """Where the latency of the phase comes from, the slowest 1% in particular (see the module's docstring)."""
    receipts = phase.receipts
    if not receipts:
        return []
    by_quote: dict[tuple[str, float], list[Receipt]] = {}
    for receipt in receipts:
        by_quote.setdefault((receipt.channel, receipt.published), []).append(receipt)
    position: dict[Receipt, float] = {}  # a receipt's place in its quote's fan-out order: 0 first, 1 last
    for quote in by_quote.values():
        quote.sort(key=lambda r: r.kernel)
        last = max(1, len(quote) - 1)
        for rank, receipt in enumerate(quote):
            position[receipt] = rank / last
    server = [r.server_part for r in receipts]
    client = [r.client_part for r in receipts]
    first_write = [(quote[0].kernel - quote[0].published) * 1000.0 for quote in by_quote.values()]
    fanout = [(quote[-1].kernel - quote[0].kernel) * 1000.0 for quote in by_quote.values()]
    threshold = phase.quantile(99)
    tail = [r for r in receipts if r.latency >= threshold] if not math.isnan(threshold) else []
    tail_quotes = Counter((r.channel, r.published) for r in tail)
    lines = [
        f"  where the time goes: publication -> client kernel (server: bus, loop, fan-out order) p50 {_pct(server, 50):.2f}"
        f" p99 {_pct(server, 99):.2f} ms; client kernel -> frame read by the client (client process) p50 "
        f"{_pct(client, 50):.2f} p99 {_pct(client, 99):.2f} max {max(client):.2f} ms",
        f"  per quote: first write {_median(first_write):.2f} ms after publication (median, max {max(first_write):.2f}); "
        f"first to last write (kernel receipts) median {_median(fanout):.2f} p90 {_pct(fanout, 90):.2f} max "
        f"{max(fanout):.2f} ms",
    ]
    if tail:
        worst_share = tail_quotes.most_common(1)[0][1] / len(tail)
        lines.append(
            f"  slowest 1% (>= p99 {threshold:.2f} ms, {len(tail)} frames): from {len(tail_quotes)} of {len(by_quote)} quotes "
            f"({worst_share:.0%} from one); server part median {_median([r.server_part for r in tail]):.2f} ms, client "
            f"part median {_median([r.client_part for r in tail]):.2f} ms; position in the fan-out order median "
            f"{_median([position[r] for r in tail]):.0%} (all frames: 50%)"
        )
        for (channel, published), count in tail_quotes.most_common(3):
            quote = by_quote[(channel, published)]
            low, high = quote[0].kernel, max(r.received for r in quote)
            # A tick that ran `lag` late at `wall`: the loop was busy from `wall - lag` on.
            lags = [lag for samples in phase.client_loop_lag for wall, lag in samples if wall >= low and wall - lag <= high]
            pauses = [p for pauses in phase.client_gc for wall, p, _ in pauses if low - 0.1 <= wall <= high]
            lines.append(
                f"    quote at +{published - receipts[0].published:.2f} s ({count} slow frames): first write "
                f"{(quote[0].kernel - published) * 1000:.2f} ms after publication, fan-out {(quote[-1].kernel - low) * 1000:.2f}"
                f" ms, client part median {_median([r.client_part for r in quote]):.2f} max "
                f"{max(r.client_part for r in quote):.2f} ms, client loop lag meanwhile max "
                f"{max(lags, default=0.0) * 1000:.2f} ms, client gc passes {len(pauses)} (longest "
                f"{max(pauses, default=0.0) * 1000:.2f} ms)"
            )
    # How stable the fan-out order is: a client's change of position between successive quotes.
    places: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for receipt, place in position.items():
        places.setdefault((receipt.process, receipt.client), []).append((receipt.published, place))
    moves = [abs(b[1] - a[1]) for series in places.values() for a, b in itertools.pairwise(sorted(series))]
    lines.append(
        f"  fan-out order: a client's position moves by {_median(moves):.1%} (median) between successive quotes "
        "(0: the same order every time; about 29% for a random order)"
    )
    for process, (ticks, passes) in enumerate(zip(phase.client_loop_lag, phase.client_gc, strict=True)):
        mine = [r for r in receipts if r.process == process]
        spread = []
        for quote in by_quote.values():
            times = [r.received for r in quote if r.process == process]
            if times:
                spread.append((max(times) - min(times)) * 1000.0)
        lag_ms = [late * 1000.0 for _, late in ticks]
        lines.append(
            f"  client process {process}: kernel -> read p50 {_pct([r.client_part for r in mine], 50):.2f} p99 "
            f"{_pct([r.client_part for r in mine], 99):.2f} max {max((r.client_part for r in mine), default=math.nan):.2f} ms;"
            f" first to last read of a quote median {_median(spread):.2f} max {max(spread, default=math.nan):.2f} ms; "
            f"loop lag ({LAG_TICK_SECONDS * 1000:g} ms tick) p99 {_pct(lag_ms, 99):.2f} max "
            f"{max(lag_ms, default=math.nan):.2f} ms; gc passes {len(passes)}, longest "
            f"{max((seconds for _, seconds, _ in passes), default=0.0) * 1000:.2f} ms"
        )
    histograms = phase.server_histograms
    lines.append(
        f"  server, per message fanned out: wall {histograms.get('fanout')}; CPU {histograms.get('fanout_cpu')}; "
        f"server loop lag {histograms.get('loop_lag')}; server gc pauses {histograms.get('gc')}"
    )
    return lines


def describe(name: str, phase: Phase) -> list[str]:
    rates = phase.rates
    delivered = statistics.median(phase.counts) / phase.published if phase.published and phase.counts else math.nan
    lines = [
        f"{name}: {phase.clients} clients, {phase.connected} connected ({phase.active_on_server:.0f} seen by the server), "
        f"{sum(phase.failures.values())} failed, {sum(phase.closed_early.values())} closed during the run; window "
        f"{datetime.fromtimestamp(phase.window_start, UTC):%H:%M:%S.%f} UTC + {phase.seconds:g} s "
        f"(opened {phase.settle:g} s after the last subscription)",
        f"  {len(phase.latencies)} quote frames in {phase.seconds:g} s from {phase.published} published "
        f"({phase.published / phase.seconds:.1f}/s); per client msg/s min {min(rates, default=math.nan):.2f} "
        f"median {statistics.median(rates) if rates else math.nan:.2f} max {max(rates, default=math.nan):.2f}; "
        f"median client got {delivered:.1%} of them; {phase.conflated:.0f} frames conflated by the server; "
        f"{phase.missing} missing, {phase.lost} lost; sockets per worker {phase.sockets}",
        f"  latency ms: p50 {phase.quantile(50):.2f}  p95 {phase.quantile(95):.2f}  p99 {phase.quantile(99):.2f}  "
        f"max {max(phase.latencies, default=math.nan):.2f}; one quote reaches all clients within (last - first "
        f"receipt) median {statistics.median(phase.spreads) if phase.spreads else math.nan:.2f} "
        f"max {max(phase.spreads, default=math.nan):.2f}",
        f"  CPU: server {phase.server_cpu_percent:.0f} %, client processes "
        + ", ".join(f"{c:.0f} %" for c in phase.client_cpu)
        + f"; extensions negotiated: {dict(phase.extensions)}",
        *where_the_time_goes(phase),
    ]
    if len(phase.by_channel) > 1:
        lines.append(
            "  by channel, p50/p99 ms: "
            + ", ".join(
                f"{channel} {_pct(values, 50):.2f}/{_pct(values, 99):.2f}" for channel, values in phase.by_channel.items()
            )
        )
    if phase.connected and not phase.published:
        lines.append(
            f"  ! no quote published in the window reached any client within {phase.grace:g} s after it: the server was "
            "that far behind (CPU-starved or backlogged); raise --grace-seconds to measure how far"
        )
    for label, count in (phase.failures + phase.closed_early).most_common(5):
        lines.append(f"  ! {count} x {label}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--baseline-clients", type=int, default=10)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--connect-concurrency", type=int, default=50, help="handshakes in flight per client process")
    parser.add_argument("--seconds", type=float, default=20, help="measured time per phase")
    parser.add_argument("--channels", type=lambda s: s.split(","), default=["quotes:AAPL"], help="comma-separated")
    parser.add_argument("--log-level", default="info", help="Tradestack log level")
    parser.add_argument("--heartbeat-seconds", type=float, default=300, help="TRADESTACK_WS_HEARTBEAT_SECONDS")
    parser.add_argument(
        "--connect-timeout", type=float, default=CONNECT_TIMEOUT_SECONDS, help="seconds for all clients of a phase to connect"
    )
    parser.add_argument(
        "--grace-seconds", type=float, default=GRACE_SECONDS,
        help="how long after the window frames published in it may still arrive (raise it when the server is far behind)",
    )  # fmt: skip
    parser.add_argument(
        "--settle-seconds", type=float, default=SETTLE_SECONDS,
        help="wait this long after the last subscription before the window opens (see the docstring)",
    )  # fmt: skip
    parser.add_argument(
        "--loop-stall-ms", type=float, default=0,
        help="TRADESTACK_LOOP_STALL_MS: the server measures its loop's lag and logs stalls this long (0: off)",
    )  # fmt: skip
    parser.add_argument(
        "--client-gc", action="store_true",
        help="leave the client processes' garbage collector on during the measurement (off by default)",
    )  # fmt: skip
    parser.add_argument("--server-log", help="write the API server's output to this file (default: discarded)")
    parser.add_argument("--workers", type=int, default=1, help="API worker processes (> 1: Redis and serve marketdata)")
    parser.add_argument("--redis-url", default=os.environ.get("TRADESTACK_TEST_REDIS_URL"), help="Redis for --workers > 1")
    args = parser.parse_args()
    if args.workers > 1 and not args.redis_url:
        raise SystemExit("--workers > 1 fans out through Redis: give --redis-url (or set TRADESTACK_TEST_REDIS_URL)")
    load_average = os.getloadavg()[0]
    nofile = raise_nofile_limit()  # before the server starts: it inherits the limit
    needed = max(args.clients, args.baseline_clients) + 100
    if nofile < needed:
        raise SystemExit(f"the open-files limit is {nofile}, {needed} are needed: raise the hard limit (ulimit -Hn)")

    with tempfile.TemporaryDirectory(prefix="tradestack-bench-") as tmp, ExitStack() as stack:
        data_dir = Path(tmp)
        phase_seconds = args.settle_seconds + args.seconds + args.grace_seconds
        total_seconds = 2 * phase_seconds + 2 * args.connect_timeout + args.heartbeat_seconds
        env = clean_env(
            TRADESTACK_DATA_DIR=str(data_dir),
            TRADESTACK_DATABASE_URL=f"sqlite+aiosqlite:///{data_dir / 'bench.db'}",
            TRADESTACK_LOG_LEVEL=args.log_level,
            TRADESTACK_MARKETDATA_IN_PROCESS="true" if args.workers == 1 else "false",
            TRADESTACK_WS_HEARTBEAT_SECONDS=f"{args.heartbeat_seconds:g}",
            TRADESTACK_ACCESS_TOKEN_TTL_SECONDS=str(min(86_400, max(900, int(total_seconds)))),
            TRADESTACK_MARKET_HOURS_ALWAYS_OPEN="true",
            TRADESTACK_LOOP_STALL_MS=f"{args.loop_stall_ms:g}",
        )
        if args.workers > 1:
            env.update(TRADESTACK_REDIS_URL=args.redis_url, TRADESTACK_REDIS_NAMESPACE=f"bench-ws-{secrets.token_hex(4)}")
        cli(env, "db", "upgrade")
        cli(env, "data", "import")
        email, password = "bench-ws@example.com", secrets.token_urlsafe(18)
        cli(env, "user", "create", email, "--role", "trader", "--password-stdin", stdin=password + "\n")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        if args.workers > 1:
            feeds = subprocess.Popen(
                [str(BIN / "tradestack"), "serve", "marketdata"], env=env, cwd=ROOT,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            stack.callback(feeds.wait, 30)
            stack.callback(feeds.terminate)
        workers = str(args.workers)
        command = [str(BIN / "tradestack"), "serve", "api", "--host", "127.0.0.1", "--port", str(port), "--workers", workers]
        if args.server_log:
            log_file = stack.enter_context(Path(args.server_log).open("wb"))
            process = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
            stack.callback(process.wait, 30)
            stack.callback(process.terminate)
            wait_ready(f"{base}/api/ready", process, 180)
        else:
            stack.enter_context(server(command, env, f"{base}/api/ready", ready_timeout=180))
        pid = server_pid(port)
        token = sign_in(base, email, password)
        layout = "market data in process" if args.workers == 1 else "serve marketdata + Redis fan-out"
        print(
            f"/ws fan-out: tradestack serve api --workers {args.workers}, {layout} (SQLite), "
            f"channels {','.join(args.channels)}, "
            f"log level {args.log_level}; {args.seconds:g} s measured per phase; clients in up to {args.client_processes} "
            f"processes sharing the {os.cpu_count()} cores with the server"
        )
        print(
            f"open-files limit: clients {nofile}, server {open_files_limit(pid)}; "
            f"1-minute load average before the run: {load_average:.2f}"
        )
        baseline = run_phase(args, base, token, args.baseline_clients, pid)
        print("\n".join(describe("baseline", baseline)))
        main_phase = run_phase(args, base, token, args.clients, pid)
        print("\n".join(describe("full", main_phase)))

    p50, p99 = main_phase.quantile(50), main_phase.quantile(99)
    base_rate = statistics.median(baseline.rates) if baseline.rates else math.nan
    main_rate = statistics.median(main_phase.rates) if main_phase.rates else math.nan
    print(
        f"ratio {args.clients}/{args.baseline_clients} clients: p50 {p50 / baseline.quantile(50):.2f}, "
        f"p99 {p99 / baseline.quantile(99):.2f}, per-client msg/s {main_rate / base_rate:.2f}"
    )
    complete = main_phase.connected == args.clients and not main_phase.closed_early and bool(main_phase.latencies)
    goal = GOAL_P99_MS if args.workers == 1 else GOAL_P99_MS_WORKERS
    ok = complete and p99 < goal and (args.workers == 1 or main_phase.lost == 0)
    note = "" if complete else " (not every client connected and stayed connected)"
    lost_goal = "" if args.workers == 1 else f" and no frame lost ({main_phase.lost})"
    print(
        f"goal: p99 < {goal:g} ms{lost_goal} with {args.clients} clients on {args.workers} worker(s): "
        f"{p99:.2f} ms  {'MET' if ok else 'NOT MET'}{note}"
    )
    print(
        f"RESULT name=ws_fanout clients={args.clients} workers={args.workers} connected={main_phase.connected} "
        f"p50_ms={p50:.2f} p99_ms={p99:.2f} missing={main_phase.missing} conflated={main_phase.conflated:.0f} "
        f"lost={main_phase.lost} baseline_p99_ms={baseline.quantile(99):.2f} load={os.getloadavg()[0]:.2f} "
        f"ratio={p99 / baseline.quantile(99):.2f}"
    )


if __name__ == "__main__":
    main()
