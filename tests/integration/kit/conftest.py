"""Fixtures for the kit backend tests: each backend (in-process, Redis) in turn, unique key prefixes."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(scope="session")
def redis_url(redis_server: str) -> str:
    """The Redis server of the whole suite (see `redis_server` in tests/conftest.py)."""
    return redis_server


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
