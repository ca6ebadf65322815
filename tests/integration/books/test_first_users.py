"""`up`'s first users: seeded once; a later start only looks for users (no identity service, no argon2 hash)."""

from __future__ import annotations

from typing import Any

import pytest

from tradestack.books import flows
from tradestack.kit.runtime import Runtime


async def test_a_later_start_counts_users_and_builds_no_identity_service(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = await flows.seed_first_users(runtime)
    assert {user.email for user in seeded} == {"admin@tradestack.local", "trader@tradestack.local"}

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the identity service (and its password hasher) was built on a start that has users")

    monkeypatch.setattr(flows, "identity_session", refuse)
    assert await flows.seed_first_users(runtime) == []
