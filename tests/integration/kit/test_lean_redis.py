"""`LeanRedis`: commands straight on a kept connection answer as redis-py's would, in step after an error reply,
across a dropped connection, and fail as redis-py's with Redis away; the engine's messages and the cache's reads
sent through it are the ones redis-py's commands sent."""

from __future__ import annotations

import secrets
import socket

import pytest
import redis.asyncio
import redis.exceptions

from tradestack.kit.cache import RedisCache
from tradestack.kit.leanredis import LeanRedis
from tradestack.kit.outages import unavailable_backend
from tradestack.trading.commands import Change, RedisCommands, stream_fields, stream_key

pytestmark = pytest.mark.redis


async def test_replies_in_order_an_error_reply_raised_after_all_are_read_and_a_dropped_connection_replaced(
    redis_url: str,
) -> None:
    key = f"lean-{secrets.token_hex(4)}"
    pool = redis.asyncio.BlockingConnectionPool.from_url(redis_url, max_connections=4)
    admin = redis.asyncio.from_url(redis_url)
    lean = LeanRedis(pool, idle=1)
    try:
        # As the server answers: none of redis-py's response callbacks.
        assert await lean.pipeline([("SET", key, "1"), ("INCR", key), ("GET", key)]) == [b"OK", 2, b"2"]
        kept = lean._idle[0]
        with pytest.raises(redis.exceptions.ResponseError):  # HINCRBY on a string: the second of three fails
            await lean.pipeline([("INCR", key), ("HINCRBY", key, "f", 1), ("INCR", key)])
        assert lean._idle == [kept]  # kept: every reply was read, the connection is in step
        assert await lean.pipeline([("GET", key)]) == [b"4"]  # the commands around the failed one ran
        host, port = kept._writer.get_extra_info("sockname")[:2]
        await admin.execute_command("CLIENT", "KILL", f"{host}:{port}")
        assert await lean.pipeline([("GET", key)]) == [b"4"]  # the kept connection is dead: again on a fresh one
        assert lean._idle[0]._writer.get_extra_info("sockname")[1] != port
    finally:
        await admin.delete(key)
        await pool.aclose()
        await admin.aclose()


async def test_redis_away_raises_redis_pys_connection_error_an_outage_of_the_cache() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = redis.asyncio.BlockingConnectionPool.from_url(f"redis://127.0.0.1:{port}/0", max_connections=2, timeout=1)
    try:
        with pytest.raises(redis.exceptions.ConnectionError) as raised:
            await LeanRedis(pool).pipeline([("MGET", "a", "b")])
        assert unavailable_backend(raised.value) == "cache"
    finally:
        await pool.aclose()


async def test_the_engines_messages_and_the_caches_reads_are_redis_pys(redis_url: str) -> None:
    namespace = f"lean{secrets.token_hex(4)}"
    commands = RedisCommands(redis_url, namespace, shards=1)
    admin = redis.asyncio.from_url(redis_url)
    cache = RedisCache(redis.asyncio.from_url(redis_url), prefix=f"{namespace}:")
    channel = f"{namespace}:updates"
    try:
        pubsub = admin.pubsub()
        await pubsub.subscribe(channel)
        assert (await pubsub.get_message(timeout=1))["type"] == "subscribe"  # type: ignore[index]
        change = Change("acct-1", "order-1")
        await commands.orders_changed([change, Change("acct-1", "order-2")], published=[(channel, b"update")])
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        assert message is not None
        assert message["data"] == b"update"
        entries = await admin.xrange(stream_key(namespace, 0))
        fields = stream_fields(change).items()
        expected = {name.encode(): value.encode() if isinstance(value, str) else value for name, value in fields}
        assert [fields for _, fields in entries] == [expected, {**expected, b"order": b"order-2"}]
        assert (await admin.xinfo_stream(stream_key(namespace, 0)))["length"] == 2
        await pubsub.aclose()

        await cache.set("one", b"1")
        await cache.set("two", b"2")
        assert await cache.get_many(["one", "missing", "two"]) == [b"1", None, b"2"]
    finally:
        await admin.delete(stream_key(namespace, 0), f"{namespace}:one", f"{namespace}:two")
        await commands.close()
        await cache.close()
        await admin.aclose()
