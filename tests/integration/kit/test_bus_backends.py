"""The Bus contract, run against MemoryBus and RedisBus."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio
import redis.exceptions

from tradestack.kit.aio import stop_tasks
from tradestack.kit.bus import Bus, MemoryBus, Message, RedisBus, Subscription, create_bus

from ...conftest import skip_outside_ci  # type: ignore[import-not-found]

MAX_PENDING = 3


async def next_message(subscription: Subscription, timeout: float = 2.0) -> Message:
    return await asyncio.wait_for(anext(subscription), timeout)


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until ``condition()`` holds (the Redis reader task delivers in the background)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
async def bus(backend_redis_url: str | None, unique_prefix: str) -> AsyncIterator[Bus]:
    instance: Bus
    if backend_redis_url is None:
        instance = MemoryBus(max_pending=MAX_PENDING)
    else:
        instance = RedisBus(redis.asyncio.from_url(backend_redis_url), prefix=unique_prefix, max_pending=MAX_PENDING)
    try:
        yield instance
    finally:
        await instance.close()


async def test_publish_right_after_entering_is_received(bus: Bus) -> None:
    # Many channels per SUBSCRIBE and several rounds widen the window a subscription that
    # returned before Redis acknowledged every channel would lose the message in.
    for attempt in range(10):
        channels = [f"fresh-{attempt}-{index}" for index in range(100)]
        async with bus.subscribe(*channels) as subscription:
            await bus.publish(channels[-1], b"first")
            assert await next_message(subscription) == Message(channels[-1], b"first")


async def test_channels_and_order_are_preserved(bus: Bus) -> None:
    async with bus.subscribe("a", "b") as subscription:
        expected: list[Message] = []
        for index in range(MAX_PENDING * 10):
            message = Message("a" if index % 3 else "b", f"m{index}".encode())
            await bus.publish(message.channel, message.data)
            assert await next_message(subscription) == message
            expected.append(message)
        assert subscription.dropped == 0


async def test_publish_many_sends_each_message_in_order(bus: Bus) -> None:
    async with bus.subscribe("a", "b") as subscription:
        sent = [Message("a" if index % 2 else "b", f"m{index}".encode()) for index in range(MAX_PENDING)]
        await bus.publish_many([(message.channel, message.data) for message in sent])
        await bus.publish_many([])
        assert [await next_message(subscription) for _ in sent] == sent


async def test_unsubscribed_channels_are_not_received(bus: Bus) -> None:
    async with bus.subscribe("wanted") as subscription:
        await bus.publish("other", b"no")
        await bus.publish("wanted:suffix", b"no")
        await bus.publish("wanted", b"yes")
        assert await next_message(subscription) == Message("wanted", b"yes")


async def test_a_subscription_starting_with_given_bytes_gets_only_those_messages(bus: Bus) -> None:
    async with bus.subscribe("md", starting=b"quotes:") as quotes, bus.subscribe("md") as everything:
        await bus.publish_many([("md", b"orders:a\n{}"), ("md", b"quotes:AAPL\n{}"), ("md", b"quote"), ("md", b"quotes:MSFT")])
        assert [(await next_message(quotes)).data for _ in range(2)] == [b"quotes:AAPL\n{}", b"quotes:MSFT"]
        assert (await next_message(everything)).data == b"quotes:AAPL\n{}"  # MAX_PENDING: the oldest was dropped
        assert quotes.pending == 0


async def test_fan_out_to_every_subscription(bus: Bus) -> None:
    async with bus.subscribe("c") as first, bus.subscribe("c") as second, bus.subscribe("c", "d") as third:
        await bus.publish("c", b"all")
        for subscription in (first, second, third):
            assert await next_message(subscription) == Message("c", b"all")


async def test_payloads_are_binary_safe(bus: Bus) -> None:
    payload = bytes(range(256)) * 8
    async with bus.subscribe("bin") as subscription:
        await bus.publish("bin", payload)
        await bus.publish("bin", b"")
        assert await next_message(subscription) == Message("bin", payload)
        assert await next_message(subscription) == Message("bin", b"")


async def test_slow_subscriber_drops_the_oldest_messages(bus: Bus) -> None:
    async with bus.subscribe("c") as slow:
        for index in range(10):
            await bus.publish("c", str(index).encode())
        await eventually(lambda: slow.dropped + slow.pending == 10)
        assert slow.pending == MAX_PENDING
        assert slow.dropped == 10 - MAX_PENDING
        received = [await next_message(slow) for _ in range(MAX_PENDING)]
        assert [message.data for message in received] == [b"7", b"8", b"9"]
        await bus.publish("c", b"fresh")
        assert await next_message(slow) == Message("c", b"fresh")
        assert slow.dropped == 10 - MAX_PENDING


async def test_a_message_nobody_listens_to_is_gone(bus: Bus) -> None:
    await bus.publish("nobody-listens", b"lost")
    await bus.ping()
    async with bus.subscribe("nobody-listens") as subscription:
        await bus.publish("nobody-listens", b"heard")
        assert await next_message(subscription) == Message("nobody-listens", b"heard")


async def test_exited_subscription_ends_and_receives_nothing_more(bus: Bus) -> None:
    async with bus.subscribe("c") as subscription:
        await bus.publish("c", b"before")
        await eventually(lambda: subscription.pending == 1)
    async with bus.subscribe("c") as witness:
        await bus.publish("c", b"after")
        assert await next_message(witness) == Message("c", b"after")
    # What was buffered before exiting can still be read; nothing published afterwards arrives.
    assert subscription.pending == 1
    assert [message async for message in subscription] == [Message("c", b"before")]
    assert subscription.pending == 0


async def test_closing_the_bus_ends_blocked_iterations(bus: Bus) -> None:
    received: list[bytes] = []

    async def consume(subscription: Subscription) -> None:
        async for message in subscription:
            received.append(message.data)

    async with bus.subscribe("c") as subscription:
        consumer = asyncio.create_task(consume(subscription))
        await bus.publish("c", b"1")
        await eventually(lambda: received == [b"1"])
        await bus.close()
        await asyncio.wait_for(consumer, 2.0)
    assert received == [b"1"]
    with pytest.raises(RuntimeError, match="closed"):
        await bus.publish("c", b"x")
    with pytest.raises(RuntimeError, match="closed"):
        bus.subscribe("c")
    with pytest.raises(RuntimeError, match="closed"):
        await bus.ping()


@pytest.mark.redis
async def test_redis_subscription_holds_a_server_subscription_only_while_entered(redis_url: str, unique_prefix: str) -> None:
    bus = RedisBus(redis.asyncio.from_url(redis_url), prefix=unique_prefix)
    admin = redis.asyncio.from_url(redis_url)
    channel = f"{unique_prefix}c"

    async def subscribers() -> int:
        counts = dict(await admin.pubsub_numsub(channel))
        return int(counts[channel.encode()])

    async def until_no_subscribers() -> None:
        # Leaving closes the connection without waiting for Redis to process the disconnect.
        async with asyncio.timeout(2):
            while await subscribers() != 0:
                await asyncio.sleep(0.005)

    try:
        async with bus.subscribe("c"):
            assert await subscribers() == 1
        await until_no_subscribers()
        async with bus.subscribe("c"), bus.subscribe("c"):
            assert await subscribers() == 2
            await bus.close()
            await until_no_subscribers()
    finally:
        await bus.close()
        await admin.aclose()


@pytest.mark.redis
async def test_redis_buses_in_different_processes_share_messages(redis_url: str, unique_prefix: str) -> None:
    publisher = RedisBus(redis.asyncio.from_url(redis_url), prefix=unique_prefix)
    subscriber = RedisBus(redis.asyncio.from_url(redis_url), prefix=unique_prefix)
    elsewhere = RedisBus(redis.asyncio.from_url(redis_url), prefix=f"{unique_prefix}other:")
    try:
        async with subscriber.subscribe("c") as subscription, elsewhere.subscribe("c") as isolated:
            await publisher.publish("c", b"across")
            assert await next_message(subscription) == Message("c", b"across")
            await elsewhere.publish("c", b"own prefix")
            assert await next_message(isolated) == Message("c", b"own prefix"), "other prefixes are other buses"
    finally:
        for bus in (publisher, subscriber, elsewhere):
            await bus.close()


async def _kill_pubsub_connections(admin: redis.asyncio.Redis, client_name: str) -> int:
    killed = 0
    for client in await admin.client_list(_type="pubsub"):
        if client.get("name") == client_name:
            killed += await admin.client_kill_filter(_id=client["id"])
    return killed


@pytest.mark.redis
async def test_redis_subscription_survives_a_dropped_connection(redis_url: str, unique_prefix: str) -> None:
    name = f"ts-test-{uuid.uuid4().hex}"
    bus = RedisBus(redis.asyncio.from_url(redis_url, client_name=name), prefix=unique_prefix)
    admin = redis.asyncio.from_url(redis_url)
    try:
        async with bus.subscribe("c") as subscription:
            assert await _kill_pubsub_connections(admin, name) == 1
            # The reader reconnects and re-subscribes in the background; publish until it is back.
            async with asyncio.timeout(5):
                while subscription.pending == 0:
                    await bus.publish("c", b"again")
                    await asyncio.sleep(0.02)
            assert await next_message(subscription) == Message("c", b"again")
    finally:
        await bus.close()
        await admin.aclose()


@pytest.mark.redis
async def test_redis_subscription_raises_when_it_cannot_reconnect_in_time(redis_url: str, unique_prefix: str) -> None:
    name = f"ts-test-{uuid.uuid4().hex}"
    bus = RedisBus(redis.asyncio.from_url(redis_url, client_name=name), prefix=unique_prefix, reconnect_timeout_seconds=0)
    admin = redis.asyncio.from_url(redis_url)
    try:
        async with bus.subscribe("c") as subscription:
            await bus.publish("c", b"before")
            await eventually(lambda: subscription.pending == 1)
            assert await _kill_pubsub_connections(admin, name) == 1
            assert await next_message(subscription) == Message("c", b"before"), "buffered messages come first"
            with pytest.raises(redis.exceptions.ConnectionError):
                await next_message(subscription)
    finally:
        await bus.close()
        await admin.aclose()


@contextlib.asynccontextmanager
async def slow_uplink_proxy(redis_url: str, delay: float) -> AsyncIterator[str]:
    """A TCP proxy to Redis that holds every client-to-server chunk for ``delay`` seconds; yields its URL."""
    parsed = urllib.parse.urlsplit(redis_url)
    if parsed.scheme != "redis" or parsed.hostname is None:
        skip_outside_ci("the delaying proxy only handles redis://host URLs")
    target_host, target_port = parsed.hostname, parsed.port or 6379
    pumps: set[asyncio.Task[None]] = set()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: float) -> None:
        try:
            while chunk := await reader.read(65536):
                if hold:
                    await asyncio.sleep(hold)
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def accept(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        for task in (
            asyncio.create_task(pump(client_reader, server_writer, delay)),
            asyncio.create_task(pump(server_reader, client_writer, 0)),
        ):
            pumps.add(task)
            task.add_done_callback(pumps.discard)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    credentials = parsed.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    try:
        yield urllib.parse.urlunsplit(parsed._replace(netloc=netloc))
    finally:
        server.close()
        await stop_tasks(tuple(pumps), "proxy pumps")
        await server.wait_closed()


@pytest.mark.redis
async def test_entering_waits_until_redis_has_acknowledged_the_subscription(redis_url: str, unique_prefix: str) -> None:
    # The subscriber's commands reach Redis 30 ms late; the publisher's go straight there. A
    # subscription that returned from __aenter__ before Redis acknowledged SUBSCRIBE would miss
    # a message published right after.
    publisher = RedisBus(redis.asyncio.from_url(redis_url), prefix=unique_prefix)
    async with slow_uplink_proxy(redis_url, delay=0.03) as slow_url:
        subscriber = RedisBus(redis.asyncio.from_url(slow_url), prefix=unique_prefix)
        try:
            async with subscriber.subscribe("a", "b") as subscription:
                await publisher.publish("b", b"right away")
                assert await next_message(subscription) == Message("b", b"right away")
        finally:
            await subscriber.close()
            await publisher.close()


@pytest.mark.redis
async def test_create_bus_with_url_uses_redis(redis_url: str) -> None:
    bus = create_bus(redis_url)
    channel = f"test-{uuid.uuid4().hex}"
    try:
        assert isinstance(bus, RedisBus)
        assert bus.prefix == "ts:bus:"
        async with bus.subscribe(channel) as subscription:
            await bus.publish(channel, b"hi")
            assert await next_message(subscription) == Message(channel, b"hi")
    finally:
        await bus.close()


async def test_redis_subscribe_fails_when_redis_is_unreachable() -> None:
    bus = RedisBus(redis.asyncio.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1))
    try:
        subscription = bus.subscribe("c")
        with pytest.raises(redis.exceptions.ConnectionError):
            async with subscription:
                pass
        with pytest.raises(redis.exceptions.ConnectionError):
            await bus.ping()
        assert [message async for message in subscription] == []
    finally:
        await bus.close()
