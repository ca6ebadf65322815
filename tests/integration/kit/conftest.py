"""Fixtures for the kit backend tests: the Redis server, and each backend (memory, Redis) in turn.

Redis is expected at TRADESTACK_TEST_REDIS_URL (default redis://127.0.0.1:6379/0). When it is
unreachable a test that needs it is skipped on a developer's machine and FAILS when CI=true.
"""

from __future__ import annotations

import os
import uuid

import pytest
import redis
import redis.exceptions

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/0"


def _probe(url: str) -> str | None:
    """None if Redis at ``url`` answers PING, else why not."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    except ValueError as exc:
        return f"invalid URL: {exc}"
    try:
        client.ping()
    except (OSError, redis.exceptions.RedisError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of a reachable Redis server; skips the test if there is none (fails when CI=true)."""
    url = os.environ.get("TRADESTACK_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    problem = _probe(url)
    if problem is not None:
        message = f"Redis at {url} is unreachable ({problem})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; with CI=true Redis must be running", pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend_redis_url(request: pytest.FixtureRequest) -> str | None:
    """``None`` (the in-process backend) and then the Redis URL, one per test run."""
    if request.param == "memory":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
def unique_prefix() -> str:
    """A key/channel prefix no other test (or parallel test run) uses."""
    return f"ts:test:{uuid.uuid4().hex}:"
