"""Redis connection pools that wait for a free connection instead of failing at once."""

from __future__ import annotations

import redis.asyncio

MAX_CONNECTIONS = 64
WAIT_SECONDS = 5.0


def blocking_pool(url: str) -> redis.asyncio.BlockingConnectionPool:
    """A pool of at most `MAX_CONNECTIONS`; a caller beyond that waits up to `WAIT_SECONDS` for one.

    redis-py's default pool raises as soon as its connections are all in use, which under a burst
    of requests turned into 500s; waiting briefly is what a busy server should do.
    """
    return redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=WAIT_SECONDS)
