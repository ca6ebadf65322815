"""`leanredis.pack`: the bytes redis-py's own packing sends, for every kind of argument the code hands it."""

from __future__ import annotations

import pytest
import redis.asyncio
import redis.exceptions

from tradestack.kit.leanredis import pack


def test_pack_sends_the_bytes_redis_py_sends() -> None:
    connection = redis.asyncio.Connection()
    large = "x" * 10_000  # above redis-py's buffer cutoff: it sends such a value as a chunk of its own
    commands = [
        ("PUBLISH", "ns:accounts", b'{"order":"o-1"}'),
        ("XADD", "ns:engine:commands:0", "MAXLEN", "~", "100000", "*", "account", "acct-1", "state", large),
        ("EVALSHA", "0" * 40, 2, "k1", "k2", 1.5, 60, -3),
        ("SCRIPT LOAD", "return 1"),  # a name of two words is two arguments
        (b"MGET", bytearray(b"a"), memoryview(b"b"), "caf\u00e9"),
    ]
    assert pack(connection, commands) == b"".join(connection.pack_commands(commands))
    assert pack(connection, []) == b""


@pytest.mark.parametrize("value", [True, None, object()])
def test_pack_refuses_what_redis_py_refuses(value: object) -> None:
    with pytest.raises(redis.exceptions.DataError):
        pack(redis.asyncio.Connection(), [("SET", "key", value)])
