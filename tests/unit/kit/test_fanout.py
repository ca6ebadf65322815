"""Fan-out hub and conflating mailboxes, on the in-process bus."""

from __future__ import annotations

import asyncio

import pytest

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
