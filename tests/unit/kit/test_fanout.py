"""Fan-out hub and conflating mailboxes, on the in-process bus."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tradestack.kit.bus import MemoryBus
from tradestack.kit.fanout import MAX_CONTROL_FRAMES, FanoutHub, Mailbox, MailboxOverflowError


def _decode(message: bytes) -> tuple[str, bytes]:
    channel, _, frame = message.partition(b"\n")
    return channel.decode(), frame


async def test_slow_reader_gets_only_the_newest_frame_per_channel() -> None:
    mailbox = Mailbox()
    for i in range(1000):
        mailbox.offer("quotes:AAPL", f"a{i}")
        mailbox.offer("quotes:MSFT", f"m{i}")
    frames = await mailbox.take(timeout=0)
    assert frames == ["a999", "m999"]
    assert mailbox.conflated == 2 * 999
    assert await mailbox.take(timeout=0.01) == []


async def test_the_same_frame_is_not_delivered_twice() -> None:
    mailbox = Mailbox()
    mailbox.offer("quotes:AAPL", "snapshot-of-e1")
    assert await mailbox.take() == ["snapshot-of-e1"]
    mailbox.offer("quotes:AAPL", "snapshot-of-e1")  # the same event, now through the bus
    mailbox.offer("quotes:MSFT", "snapshot-of-e1")  # other channels are independent
    mailbox.offer("quotes:AAPL", "e2")
    assert await mailbox.take() == ["snapshot-of-e1", "e2"]


async def test_control_frames_are_never_conflated_and_come_first() -> None:
    mailbox = Mailbox()
    mailbox.offer("quotes:AAPL", "q1")
    mailbox.control("c1")
    mailbox.control("c2")
    mailbox.offer("quotes:AAPL", "q2")
    assert await mailbox.take() == ["c1", "c2", "q2"]


async def test_control_backlog_is_bounded() -> None:
    mailbox = Mailbox()
    for _ in range(MAX_CONTROL_FRAMES):
        mailbox.control("x")
    with pytest.raises(MailboxOverflowError):
        mailbox.control("x")


async def test_take_waits_for_the_next_frame() -> None:
    mailbox = Mailbox()
    waiter = asyncio.create_task(mailbox.take(timeout=5))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    mailbox.offer("c", "late")
    assert await waiter == ["late"]


async def test_hub_routes_by_channel_and_stops_after_remove() -> None:
    bus = MemoryBus()
    hub = FanoutHub(bus, "md", _decode)
    await hub.start()
    aapl, both = Mailbox(), Mailbox()
    hub.add(aapl, "quotes:AAPL")
    hub.add(both, "quotes:AAPL")
    hub.add(both, "quotes:MSFT")
    await bus.publish("md", b"quotes:AAPL\n{1}")
    await bus.publish("md", b"quotes:MSFT\n{2}")
    await bus.publish("md", b"quotes:IBM\n{3}")
    assert await aapl.take(timeout=1) == ["{1}"]
    got: list[str] = []
    while len(got) < 2:
        got += await both.take(timeout=1)
    assert sorted(got) == ["{1}", "{2}"]
    hub.remove(both, "quotes:MSFT")
    await bus.publish("md", b"quotes:MSFT\n{4}")
    await bus.publish("md", b"quotes:AAPL\n{5}")
    assert await both.take(timeout=1) == ["{5}"]
    assert hub.channels() == 1
    await hub.close()
    await bus.close()


async def test_hub_routes_the_messages_of_each_of_its_bus_channels_and_no_other() -> None:
    bus = MemoryBus()
    hub = FanoutHub(bus, ("md", "accounts"), _decode)
    await hub.start()
    mailbox = Mailbox(lossless=("orders:",))
    hub.add(mailbox, "quotes:AAPL")
    hub.add(mailbox, "orders:a")
    await bus.publish("elsewhere", b"orders:a\n{0}")
    await bus.publish("accounts", b"orders:a\n{1}")
    await bus.publish("md", b"quotes:AAPL\n{2}")
    await bus.publish("accounts", b"orders:a\n{3}")
    got: list[str] = []
    while len(got) < 3:
        got += await mailbox.take(timeout=1)
    assert sorted(got) == ["{1}", "{2}", "{3}"]  # nothing from a bus channel the hub was not given
    assert [frame for frame in got if frame != "{2}"] == ["{1}", "{3}"]  # each bus channel's messages in order
    await hub.close()
    await bus.close()


class _Socket:
    """A direct writer that takes frames while `keeping_up`."""

    def __init__(self) -> None:
        self.keeping_up = True
        self.written: list[bytes] = []

    def try_write(self, wire: bytes) -> bool:
        if self.keeping_up:
            self.written.append(wire)
        return self.keeping_up


async def test_a_client_keeping_up_gets_frames_written_without_its_mailbox() -> None:
    mailbox, socket = Mailbox(), _Socket()
    mailbox.direct = socket
    assert mailbox.deliver("quotes:AAPL", "q1", b"<q1>", 0.0)
    assert not mailbox.deliver("quotes:AAPL", "q1", b"<q1>", 0.0)  # the same frame again (snapshot, then the bus)
    assert socket.written == [b"<q1>"]
    assert await mailbox.take(timeout=0) == []


async def test_a_client_falling_behind_is_conflated_until_its_mailbox_is_empty() -> None:
    mailbox, socket = Mailbox(), _Socket()
    mailbox.direct = socket
    socket.keeping_up = False
    for i in range(100):
        assert not mailbox.deliver("quotes:AAPL", f"q{i}", f"<q{i}>".encode(), 0.0)
    socket.keeping_up = True
    # Something is queued: a direct write now would overtake it.
    assert not mailbox.deliver("quotes:AAPL", "q100", b"<q100>", 0.0)
    assert socket.written == []
    assert await mailbox.take(timeout=0) == ["q100"]
    assert mailbox.conflated == 100
    assert mailbox.deliver("quotes:AAPL", "q101", b"<q101>", 0.0)
    assert socket.written == [b"<q101>"]


async def test_no_direct_write_overtakes_queued_replies_or_frames_being_sent() -> None:
    mailbox, socket = Mailbox(lossless=("orders:",)), _Socket()
    mailbox.direct = socket
    mailbox.control("subscribed")
    assert not mailbox.deliver("orders:a", "o1", b"<o1>", 0.0)
    assert await mailbox.take(timeout=0) == ["subscribed", "o1"]
    mailbox.sending = True  # the writer has not finished sending what it took
    assert not mailbox.deliver("orders:a", "o2", b"<o2>", 0.0)
    mailbox.sending = False
    assert not mailbox.deliver("orders:a", "o3", b"<o3>", 0.0)  # o2 still waits: o3 queues behind it
    assert await mailbox.take(timeout=0) == ["o2", "o3"]
    assert mailbox.deliver("orders:a", "o4", b"<o4>", 0.0)
    assert mailbox.deliver("orders:a", "o4", b"<o4>", 0.0)  # lossless: every update counts, even an equal one
    assert socket.written == [b"<o4>", b"<o4>"]


class _SwallowingBus:
    """A bus whose subscription swallows the first cancellation of a wait for the next message, as a Redis
    read was seen to (the task then waits on)."""

    def __init__(self) -> None:
        self.swallowed = 0

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[object]]:
        yield self._messages()

    async def _messages(self) -> AsyncIterator[object]:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed += 1
        yield  # pragma: no cover - an async generator that never yields a message


async def test_hub_close_ends_a_listener_whose_cancellation_was_swallowed() -> None:
    bus = _SwallowingBus()
    hub = FanoutHub(bus, "md", _decode)  # type: ignore[arg-type]
    await asyncio.wait_for(hub.start(), 1)
    await asyncio.sleep(0.01)  # the listener waits for its first message
    closing = asyncio.create_task(hub.close())
    done, _ = await asyncio.wait({closing}, timeout=10)
    if not done:  # a single cancel-and-await never returned
        closing.cancel()
    assert closing in done, "close() did not return: the listener outlived its swallowed cancellation"
    assert bus.swallowed == 1


def _fanout_count(name: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_count") or 0.0


async def test_hub_writes_each_channel_as_its_subscription_says_and_times_each_fanout() -> None:
    bus = MemoryBus()
    hub = FanoutHub(bus, "md", _decode, wire=lambda frame: b"<" + frame + b">")
    await hub.start()
    mailbox, socket = Mailbox(lossless=("orders:",)), _Socket()
    mailbox.direct = socket
    hub.add(mailbox, "quotes:AAPL")
    hub.add(mailbox, "orders:a")
    durations = _fanout_count("websocket_fanout_duration_seconds")
    cpu = _fanout_count("websocket_fanout_cpu_seconds")
    for message in (b"quotes:AAPL\nq1", b"quotes:AAPL\nq1", b"orders:a\no1", b"orders:a\no1", b"quotes:IBM\nnobody"):
        await bus.publish("md", message)
    for _ in range(100):
        if hub.delivered == 4:
            break
        await asyncio.sleep(0.01)
    # An equal quote is the same event twice (written once); every order update counts, equal or not.
    assert socket.written == [b"<q1>", b"<o1>", b"<o1>"]
    assert await mailbox.take(timeout=0) == []
    assert hub.written_directly == 3
    # One observation per message that had listeners (the IBM quote had none).
    assert _fanout_count("websocket_fanout_duration_seconds") == durations + 4
    assert _fanout_count("websocket_fanout_cpu_seconds") == cpu + 4
    hub.remove(mailbox, "orders:a")
    await bus.publish("md", b"orders:a\no2")
    await bus.publish("md", b"quotes:AAPL\nq2")
    for _ in range(100):
        if hub.delivered == 5:
            break
        await asyncio.sleep(0.01)
    assert socket.written[3:] == [b"<q2>"]
    await hub.close()
    await bus.close()


async def test_a_mailbox_with_frames_queued_is_not_written_directly_until_taken() -> None:
    mailbox, socket = Mailbox(), _Socket()
    mailbox.direct = socket
    mailbox.offer("quotes:MSFT", "m1")  # queued by the snapshot path, on another channel
    assert not mailbox.deliver("quotes:AAPL", "q1", b"<q1>", 0.0, lossless=False)
    assert socket.written == []
    assert await mailbox.take(timeout=0) == ["m1", "q1"]
    assert mailbox.deliver("quotes:AAPL", "q2", b"<q2>", 0.0, lossless=False)
    assert socket.written == [b"<q2>"]


def test_with_several_workers_the_conflated_counter_is_exported_at_zero_from_the_hubs_start(tmp_path: Path) -> None:
    """In Prometheus multiprocess mode a labelled series exists only once a process touched its label: the hub touches
    every kind its mailboxes conflate, so /metrics shows 0 before the first conflation (not nothing, which the fan-out
    benchmark read as nan)."""
    script = textwrap.dedent(
        """
        import asyncio
        from tradestack.api.ws import CONFLATED_KINDS
        from tradestack.kit.bus import MemoryBus
        from tradestack.kit.fanout import FanoutHub
        from tradestack.kit.metrics import render_latest

        async def main():
            bus = MemoryBus()
            hub = FanoutHub(bus, "md", lambda m: (m.decode(), m), conflated_kinds=CONFLATED_KINDS)
            await hub.start()
            await hub.close()
            await bus.close()
            print(render_latest()[0].decode())

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    text = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True).stdout
    lines = set(text.splitlines())
    for kind in ("quotes", "candles", "orderbook", "portfolio"):  # never orders or fills: they are not conflated
        assert f'websocket_messages_conflated_total{{kind="{kind}"}} 0.0' in lines, text
    assert not any('kind="orders"' in line or 'kind="fills"' in line for line in lines if "conflated" in line), text
