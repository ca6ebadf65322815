"""Redis commands written straight to a connection kept between calls, without redis-py's per-command machinery.

``Redis.execute_command`` (and a pipeline's ``execute``) spends, around each round trip, more CPU
than the hot paths' own work: the blocking pool's lock and timeout, a readiness probe of the
connection (a system call), the retry wrapper, a task of its own per write (``asyncio.wait_for`` on
Python 3.11), response callbacks. Measured on one loop (this busy machine, five runs of 2,000 calls), an MGET of
two keys took 97-163 us of CPU through the client and 31-51 straight on its connection; a pipeline of a PUBLISH
and an XADD 163-267 and 56-88.
The order desk makes both once per group, the rate limits one script call per turn of the loop.

Commands are packed by `pack` rather than redis-py's ``pack_commands`` (pure Python too, but one join per argument
and its chunking rules for large values): the same bytes, a third of the CPU for the desk's pipeline of PUBLISHes and
XADDs (measured: ~60 us and ~20 us for eight commands).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis.asyncio
import redis.exceptions

_T = TypeVar("_T")

IDLE_CONNECTIONS = 16
"""Connections a `LeanRedis` keeps between calls by default (the rest go back to the pool)."""


class LeanRedis:
    """Commands on a connection of ``pool``, without redis-py's per-command machinery (see the module docstring).

    A call takes a connection it kept from an earlier call (at most ``idle``, all counted by the pool
    as in use, so its limit still holds), writes the packed commands to it and reads the replies. A
    connection that fails is dropped; a kept one that fails before answering (the server restarted,
    or closed it as idle) is replaced once by a fresh one from the pool. Errors are redis-py's: an
    error reply raises its ``ResponseError`` (the connection, in step, is kept), a lost connection
    its ``ConnectionError``, an exhausted pool its own error.
    """

    def __init__(self, pool: redis.asyncio.ConnectionPool, *, idle: int = IDLE_CONNECTIONS) -> None:
        self._pool = pool
        self._most_idle = idle
        self._idle: list[redis.asyncio.Connection] = []

    async def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send `commands` (each its name and arguments) in one write and return their replies in order, as the server
        sends them (none of redis-py's response callbacks: ``SET`` answers ``b"OK"``, not True); after all replies
        are read, the first error reply is raised, as redis-py's pipeline raises it."""
        return await self.run(lambda connection: _exchange(connection, commands))

    async def run(self, exchange: Callable[[redis.asyncio.Connection], Awaitable[_T]]) -> _T:
        """`exchange` (which writes with `send` and reads replies) on a kept or fresh connection; what it returns."""
        if self._idle:
            connection = self._idle.pop()
            try:
                return await self._on(connection, exchange)
            except (redis.exceptions.ConnectionError, OSError):
                pass  # kept across a server restart or an idle timeout: once more on a fresh connection
        fresh = await self._pool.get_connection()  # type: ignore[no-untyped-call]  # untyped for its deprecated arguments
        return await self._on(fresh, exchange)

    async def _on(
        self, connection: redis.asyncio.Connection, exchange: Callable[[redis.asyncio.Connection], Awaitable[_T]]
    ) -> _T:
        try:
            reply = await exchange(connection)
        except redis.exceptions.ResponseError:
            await self._keep(connection)  # the command failed; the connection is fine
            raise
        except BaseException:
            await self._drop(connection)
            raise
        await self._keep(connection)
        return reply

    async def _keep(self, connection: redis.asyncio.Connection) -> None:
        if len(self._idle) < self._most_idle:
            self._idle.append(connection)
        else:
            await self._pool.release(connection)

    async def _drop(self, connection: redis.asyncio.Connection) -> None:
        # Its state is unknown (a reply may be pending): closed, then handed back to the pool.
        await connection.disconnect()
        await self._pool.release(connection)


def pack(connection: redis.asyncio.Connection, commands: Iterable[Sequence[Any]]) -> bytes:
    """`commands` (each its name and arguments) in the Redis protocol, the bytes redis-py's ``pack_commands`` sends:
    a name of several words (``"SCRIPT LOAD"``) split into arguments, text encoded as the connection's encoder does,
    ints and floats as their ``repr``; anything else (a bool, None, an object) raises redis-py's ``DataError``."""
    encoder = connection.encoder
    encoding, errors = encoder.encoding, encoder.encoding_errors
    out: list[bytes] = []
    for command in commands:
        name, *rest = command
        words = name.encode(encoding, errors).split() if isinstance(name, str) else bytes(name).split()
        out.append(b"*%d\r\n" % (len(words) + len(rest)))
        for word in words:
            out.append(b"$%d\r\n%s\r\n" % (len(word), word))
        for arg in rest:
            if type(arg) is str:
                arg = arg.encode(encoding, errors)
            elif type(arg) is not bytes:  # ints, floats, bytearray, memoryview as redis-py encodes them; DataError else
                arg = bytes(encoder.encode(arg))  # type: ignore[no-untyped-call]
            out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


async def send(connection: redis.asyncio.Connection, packed: list[bytes] | bytes) -> None:
    """Write `packed` (`pack`'s, or redis-py's `pack_command`'s or `pack_commands`') to the connection.

    Straight to the connection's stream (redis-py's private ``_writer``): its `send_packed_command`
    runs every write under `asyncio.wait_for`, a task of its own per command on Python 3.11. Commands
    this small are taken by the transport at once; replies are read under the connection's timeout.
    """
    writer: asyncio.StreamWriter | None = connection._writer
    if writer is None:
        await connection.send_packed_command(packed, check_health=False)
        return
    try:
        if isinstance(packed, bytes):
            writer.write(packed)
        else:
            writer.writelines(packed)
        await writer.drain()
    except OSError as exc:  # as redis-py reports a failed write
        raise redis.exceptions.ConnectionError(f"Error writing to Redis: {exc}") from exc


async def _exchange(connection: redis.asyncio.Connection, commands: Sequence[Sequence[Any]]) -> list[Any]:
    await send(connection, pack(connection, commands))
    replies: list[Any] = []
    failed: redis.exceptions.ResponseError | None = None
    for _ in commands:
        try:
            replies.append(await connection.read_response())
        except redis.exceptions.ResponseError as exc:  # the others' replies are still to be read
            failed = failed or exc
            replies.append(exc)
    if failed is not None:
        raise failed
    return replies
