"""Fan-out of bus messages to the WebSocket clients of one process.

One `FanoutHub` per process subscribes once to its bus channels (Redis pub/sub across replicas, or
in process) and hands each message to the local `Mailbox`es subscribed to the message's
channel. A mailbox conflates: it keeps only the newest frame per channel until its client takes
it, so a slow client costs one frame per subscribed channel, never an unbounded buffer, and
catches up with the latest values rather than stale ones.

Each message is encoded once for all clients: its text once, and (given `wire`) the bytes of the
whole WebSocket frame once. A mailbox with a `DirectWriter` whose client keeps up (nothing queued,
the socket takes the bytes without buffering) gets those bytes written to its socket at once, in
the hub's loop over its listeners: no task wakes up per client per message. A client that falls
behind gets its frames through the mailbox again, conflated, until it has caught up.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from tradestack.kit.aio import stop_tasks
from tradestack.kit.bus import Bus
from tradestack.kit.logging import get_logger
from tradestack.kit.metrics import WEBSOCKET_FANOUT_CPU, WEBSOCKET_FANOUT_DURATION, WEBSOCKET_MESSAGES_CONFLATED

log = get_logger(__name__)
MAX_CONTROL_FRAMES = 1000


class MailboxOverflowError(Exception):
    """A client let too many control replies pile up without reading them."""


class DirectWriter(Protocol):
    """A client connection that can take a whole encoded frame without a task (see `Mailbox.deliver`)."""

    def try_write(self, wire: bytes) -> bool:
        """Write `wire` now if the connection is open and keeping up; False (nothing written) otherwise."""
        ...


class Mailbox:
    """What one client has yet to receive (text frames): newest per data channel, plus control replies in order.

    Channels whose names start with one of `lossless` (such as order and fill updates, where every
    message counts) are never conflated: their frames queue in order with the control replies.
    """

    def __init__(self, lossless: tuple[str, ...] = ()) -> None:
        self._lossless = lossless
        self._data: dict[str, str] = {}
        self._taken: dict[str, str] = {}
        self._control: deque[str] = deque()
        self._ready = asyncio.Event()
        # Mirrors `_ready` as a plain attribute: what the hub reads for every message (no method call).
        self._pending = False
        self.conflated = 0
        self.overflowed = False
        self.direct: DirectWriter | None = None
        # True while the client's writer sends frames it took: a direct write then would overtake them.
        self.sending = False
        # Event-loop time of the last frame written directly (the client's writer keeps its own sends'
        # time): with the frames it sends itself, what tells it whether the client heard nothing lately.
        self.written_at = 0.0

    def is_lossless(self, channel: str) -> bool:
        """Whether every frame of `channel` counts (queued in order), rather than only its newest."""
        return bool(self._lossless) and channel.startswith(self._lossless)

    def deliver(self, channel: str, frame: str, wire: bytes | None, now: float, lossless: bool | None = None) -> bool:
        """From the hub at event-loop time `now`: write the encoded frame `wire` straight to the socket when
        nothing is queued or being sent and the client keeps up (True); otherwise `offer` it (queued, conflated).

        `lossless` is `is_lossless(channel)`, when the caller knows it (the hub works it out once per subscription).
        This runs once per client for every message: it reads plain attributes and makes at most one call of its own.
        """
        direct = self.direct
        if direct is not None and wire is not None and not self._pending and not self.sending:
            if lossless is None:
                lossless = self.is_lossless(channel)
            if lossless:
                if direct.try_write(wire):
                    self.written_at = now
                    return True
            else:
                taken = self._taken
                if taken.get(channel) == frame:
                    return False
                if direct.try_write(wire):
                    taken[channel] = frame
                    self.written_at = now
                    return True
        self.offer(channel, frame)
        return False

    def offer(self, channel: str, frame: str) -> None:
        """Queue `frame` for `channel`, replacing an older one not yet taken.

        A frame identical to the last one taken for the channel is dropped: a snapshot read from
        the cache and the same event arriving through the bus are delivered once.
        """
        if self._lossless and channel.startswith(self._lossless):
            # Never raises here (the hub serves every client): an overflow ends this client at its next take.
            if len(self._control) >= MAX_CONTROL_FRAMES:
                self.overflowed = True
            else:
                self._control.append(frame)
            self._pending = True
            self._ready.set()
            return
        if self._taken.get(channel) == frame:
            return
        if channel in self._data:
            self.conflated += 1
            WEBSOCKET_MESSAGES_CONFLATED.labels(kind=channel.partition(":")[0]).inc()
            del self._data[channel]  # re-insert so channels are delivered in order of last update
        self._data[channel] = frame
        self._pending = True
        self._ready.set()

    def control(self, frame: str) -> None:
        """Queue a reply (subscribed, error, pong...) or a lossless update, which must not be conflated."""
        if len(self._control) >= MAX_CONTROL_FRAMES:
            raise MailboxOverflowError(f"more than {MAX_CONTROL_FRAMES} replies or order updates unread")
        self._control.append(frame)
        self._pending = True
        self._ready.set()

    def forget(self, channel: str) -> None:
        """Drop a pending frame of a channel the client left."""
        self._data.pop(channel, None)
        self._taken.pop(channel, None)

    async def take(self, timeout: float | None = None) -> list[str]:  # noqa: ASYNC109 - a wait, not a deadline
        """Everything pending (control replies first); waits up to `timeout` and returns [] if nothing came."""
        if not self._ready.is_set():
            try:
                async with asyncio.timeout(timeout):  # unlike wait_for, creates no task per call
                    await self._ready.wait()
            except TimeoutError:
                return []
        if self.overflowed:
            raise MailboxOverflowError(f"more than {MAX_CONTROL_FRAMES} order or fill updates unread")
        frames = list(self._control)
        frames.extend(self._data.values())
        self._taken.update(self._data)
        self._control.clear()
        self._data.clear()
        self._pending = False
        self._ready.clear()
        return frames


class FanoutHub:
    """Routes messages of its bus channels to local mailboxes by their channel name."""

    def __init__(
        self,
        bus: Bus,
        bus_channels: str | tuple[str, ...],
        decode: Callable[[bytes], tuple[str, bytes]],
        wire: Callable[[bytes], bytes] | None = None,
        conflated_kinds: tuple[str, ...] = (),
    ) -> None:
        """`bus_channels` is one bus channel or several, all on one subscription (each keeps its own order);
        `decode` splits a bus message into (channel, frame text); `wire` encodes a frame as the bytes
        a `DirectWriter` writes (None: every frame goes through the mailboxes); `conflated_kinds` are the channel
        kinds (the name before the first ``:``) whose frames a mailbox may conflate, counted from 0 at `start`."""
        self._bus = bus
        self._conflated_kinds = conflated_kinds
        self._bus_channels = (bus_channels,) if isinstance(bus_channels, str) else bus_channels
        self._decode = decode
        self._wire = wire
        # Per channel, its mailboxes and whether the channel is lossless for each (worked out once, on `add`).
        self._subscribers: dict[str, dict[Mailbox, bool]] = {}
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._closing = False
        self.delivered = 0
        self.written_directly = 0  # of `delivered`, frames written straight to a socket

    async def start(self) -> None:
        """Subscribe to the bus (once); returns when the subscription is live.

        `websocket_messages_conflated` is exported from here on for each conflated kind, at 0 until a frame is:
        with several workers (Prometheus multiprocess mode) a labelled series exists only once a process touched its
        label, so a reader taking the difference of two readings (a `rate()`, the fan-out benchmark) would get
        nothing, not 0, until the first conflation."""
        for kind in self._conflated_kinds:
            WEBSOCKET_MESSAGES_CONFLATED.labels(kind=kind)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"fanout:{','.join(self._bus_channels)}")
        await self._started.wait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            try:
                async with self._bus.subscribe(*self._bus_channels) as subscription:
                    self._started.set()
                    async for message in subscription:
                        channel, frame = self._decode(message.data)
                        listeners = self._subscribers.get(channel)
                        if listeners:
                            began, cpu_began = time.perf_counter(), time.thread_time()
                            # Once per message, not once per client: the text, and the frame's bytes.
                            text = frame.decode()
                            wire = self._wire(frame) if self._wire is not None else None
                            now = loop.time()
                            written = 0
                            for mailbox, lossless in listeners.items():
                                written += mailbox.deliver(channel, text, wire, now, lossless)
                            self.delivered += len(listeners)
                            self.written_directly += written
                            WEBSOCKET_FANOUT_DURATION.observe(time.perf_counter() - began)
                            WEBSOCKET_FANOUT_CPU.observe(time.thread_time() - cpu_began)
                return  # the bus was closed
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a lost subscription is retried, not fatal
                log.warning("fanout subscription lost; resubscribing", channels=self._bus_channels, error=str(exc))
                await asyncio.sleep(0.5)

    def add(self, mailbox: Mailbox, channel: str) -> None:
        """Deliver `channel` to `mailbox`."""
        self._subscribers.setdefault(channel, {})[mailbox] = mailbox.is_lossless(channel)

    def remove(self, mailbox: Mailbox, channel: str) -> None:
        """Stop delivering `channel` to `mailbox`."""
        listeners = self._subscribers.get(channel)
        if listeners is not None:
            listeners.pop(mailbox, None)
            if not listeners:
                del self._subscribers[channel]
        mailbox.forget(channel)

    def channels(self) -> int:
        """Channels with at least one local listener."""
        return len(self._subscribers)

    async def close(self) -> None:
        """Stop listening."""
        self._closing = True  # ends the loop even when a cancellation is swallowed in a Redis call
        await stop_tasks([self._task], "websocket fan-out")
        self._task = None
