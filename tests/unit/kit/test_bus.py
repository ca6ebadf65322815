"""MemoryBus: delivery, fan-out, bounded buffers that drop the oldest message, lifecycle."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from tradestack.kit.bus import Bus, MemoryBus, Message, Subscription, create_bus


async def next_message(subscription: Subscription, timeout: float = 1.0) -> Message:
    return await asyncio.wait_for(anext(subscription), timeout)


async def drain(subscription: Subscription) -> list[Message]:
    """Every message already buffered, without waiting for more."""
    return [await next_message(subscription) for _ in range(subscription.pending)]


async def test_message_is_delivered_with_its_channel() -> None:
    bus = MemoryBus()
    async with bus.subscribe("orders") as subscription:
        await bus.publish("orders", b"hello")
        assert await next_message(subscription) == Message("orders", b"hello")


async def test_messages_arrive_in_publish_order_across_channels() -> None:
    bus = MemoryBus()
    async with bus.subscribe("a", "b") as subscription:
        for index in range(20):
            await bus.publish("a" if index % 2 else "b", str(index).encode())
        received = [await next_message(subscription) for _ in range(20)]
    assert [message.data for message in received] == [str(index).encode() for index in range(20)]
    assert [message.channel for message in received] == ["a" if index % 2 else "b" for index in range(20)]


async def test_other_channels_are_not_delivered() -> None:
    bus = MemoryBus()
    async with bus.subscribe("wanted") as subscription:
        await bus.publish("unwanted", b"x")
        await bus.publish("wanted-but-longer", b"y")
        await bus.publish("wanted", b"z")
        assert await next_message(subscription) == Message("wanted", b"z")
        assert subscription.pending == 0


async def test_every_subscription_gets_its_own_copy() -> None:
    bus = MemoryBus()
    async with bus.subscribe("c") as first, bus.subscribe("c", "other") as second:
        await bus.publish("c", b"m")
        assert await next_message(first) == Message("c", b"m")
        assert await next_message(second) == Message("c", b"m")


async def test_duplicate_channels_deliver_once() -> None:
    bus = MemoryBus()
    async with bus.subscribe("c", "c") as subscription:
        assert subscription.channels == ("c",)
        await bus.publish("c", b"m")
        assert subscription.pending == 1


async def test_messages_published_before_entering_are_not_received() -> None:
    bus = MemoryBus()
    subscription = bus.subscribe("c")
    await bus.publish("c", b"early")
    async with subscription:
        await bus.publish("c", b"late")
        assert await next_message(subscription) == Message("c", b"late")
        assert subscription.pending == 0


async def test_waiting_subscriber_is_woken_by_a_publish() -> None:
    bus = MemoryBus()
    async with bus.subscribe("c") as subscription:
        waiter = asyncio.create_task(next_message(subscription))
        await asyncio.sleep(0)
        assert not waiter.done()
        await bus.publish("c", b"wake")
        assert await waiter == Message("c", b"wake")


async def test_full_buffer_drops_the_oldest_and_counts_it() -> None:
    bus = MemoryBus(max_pending=3)
    async with bus.subscribe("c") as subscription:
        assert subscription.max_pending == 3
        for index in range(10):
            await bus.publish("c", str(index).encode())
        assert subscription.pending == 3
        assert subscription.dropped == 7
        assert [message.data for message in await drain(subscription)] == [b"7", b"8", b"9"]
        await bus.publish("c", b"10")
        assert await next_message(subscription) == Message("c", b"10")
        assert subscription.dropped == 7


async def test_slow_subscriber_does_not_affect_a_fast_one_or_the_publisher() -> None:
    bus = MemoryBus(max_pending=5)
    async with bus.subscribe("c") as slow, bus.subscribe("c") as fast:
        received: list[bytes] = []
        for index in range(1000):
            await bus.publish("c", str(index).encode())
            received.append((await next_message(fast)).data)
        assert received == [str(index).encode() for index in range(1000)]
        assert fast.dropped == 0
        assert slow.dropped == 995
        assert slow.pending == 5


async def test_exiting_ends_iteration_and_stops_delivery() -> None:
    bus = MemoryBus()
    async with bus.subscribe("c") as subscription:
        await bus.publish("c", b"kept")
    await bus.publish("c", b"after exit")
    assert subscription.pending == 1
    assert [message async for message in subscription] == [Message("c", b"kept")]
    assert subscription.pending == 0


async def test_closing_the_bus_ends_a_blocked_iteration() -> None:
    bus = MemoryBus()
    async with bus.subscribe("c") as subscription:
        consumer = asyncio.create_task(_collect(subscription))
        await bus.publish("c", b"1")
        await asyncio.sleep(0)
        await bus.close()
        assert await asyncio.wait_for(consumer, 1.0) == [b"1"]


async def test_closing_with_a_full_buffer_still_delivers_it_then_ends() -> None:
    bus = MemoryBus(max_pending=2)
    async with bus.subscribe("c") as subscription:
        await bus.publish("c", b"1")
        await bus.publish("c", b"2")
        await bus.close()
        assert await asyncio.wait_for(_collect(subscription), 1.0) == [b"1", b"2"]
        assert subscription.dropped == 0


async def _collect(subscription: Subscription) -> list[bytes]:
    return [message.data async for message in subscription]


async def test_a_subscription_is_single_use() -> None:
    bus = MemoryBus()
    subscription = bus.subscribe("c")
    with pytest.raises(RuntimeError, match="before iterating"):
        await anext(subscription)
    async with subscription:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with subscription:
            pass


@pytest.mark.parametrize("channels", [(), ("",), ("ok", "")])
def test_channel_names_are_validated(channels: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="channel"):
        MemoryBus().subscribe(*channels)


def test_max_pending_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_pending"):
        MemoryBus(max_pending=0)


async def test_closed_bus_refuses_use() -> None:
    bus = MemoryBus()
    await bus.ping()
    await bus.close()
    with pytest.raises(RuntimeError, match="closed"):
        await bus.ping()
    with pytest.raises(RuntimeError, match="closed"):
        await bus.publish("c", b"x")
    with pytest.raises(RuntimeError, match="closed"):
        bus.subscribe("c")


async def test_entering_a_subscription_made_before_close_fails() -> None:
    bus = MemoryBus()
    subscription = bus.subscribe("c")
    await bus.close()
    with pytest.raises(RuntimeError, match="closed"):
        async with subscription:
            pass


def test_message_is_immutable() -> None:
    message = Message("c", b"x")
    with pytest.raises(AttributeError):
        message.data = b"y"  # type: ignore[misc]


def test_create_bus_without_url_is_in_memory() -> None:
    bus: Bus = create_bus(None)
    assert isinstance(bus, MemoryBus)


async def test_messages_reach_a_subscriber_on_another_threads_loop_in_order_and_back() -> None:
    bus = MemoryBus()
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    subscribed = asyncio.Event()
    here = asyncio.get_running_loop()

    async def far_subscriber() -> list[bytes]:
        async with bus.subscribe("quotes") as subscription:
            here.call_soon_threadsafe(subscribed.set)
            received = [(await next_message(subscription, 5)).data for _ in range(100)]
            await bus.publish("orders", b"answer")  # from the other loop to a subscriber on this one
            return received

    try:
        async with bus.subscribe("orders") as answers:
            far = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(far_subscriber(), other))
            await asyncio.wait_for(subscribed.wait(), 5)
            for n in range(100):
                await bus.publish("quotes", str(n).encode())
            assert await asyncio.wait_for(far, 5) == [str(n).encode() for n in range(100)]
            assert (await next_message(answers, 5)).data == b"answer"
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(5)
        other.close()


async def test_messages_a_subscriber_on_another_loop_would_drop_do_not_wake_its_loop() -> None:
    bus = MemoryBus()
    other = asyncio.new_event_loop()
    woken: list[object] = []
    wake = other.call_soon_threadsafe

    def counted(callback: Any, *args: Any) -> Any:
        woken.append(callback)
        return wake(callback, *args)

    other.call_soon_threadsafe = counted  # type: ignore[method-assign]
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    subscribed = asyncio.Event()
    here = asyncio.get_running_loop()

    async def far_subscriber() -> bytes:
        async with bus.subscribe("md", starting=b"quotes:") as subscription:
            here.call_soon_threadsafe(subscribed.set)
            return (await next_message(subscription, 5)).data

    try:
        far = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(far_subscriber(), other))
        await asyncio.wait_for(subscribed.wait(), 5)
        woken.clear()
        for n in range(50):
            await bus.publish("md", f"orders:{n}".encode())
        assert woken == []
        await bus.publish("md", b"quotes:AAPL")
        assert await asyncio.wait_for(far, 5) == b"quotes:AAPL"
    finally:
        wake(other.stop)
        thread.join(5)
        other.close()
