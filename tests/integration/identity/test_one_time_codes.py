"""One-time things stay one-time under concurrency: a TOTP step, an MFA token, a recovery code.

Each test sends the same one-time value in several simultaneous requests; exactly one may win.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tradestack.identity import totp
from tradestack.identity.permissions import Role
from tradestack.kit.cache import Cache
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime

from .conftest import PASSWORD, MakeUser  # type: ignore[import-not-found]
from .test_mfa import _enable_mfa  # type: ignore[import-not-found]

ATTEMPTS = 6


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Room for the sign-ins these tests make (the account's attempt window is 5 by default)."""
    return settings.model_copy(update={"login_failure_limits": "1000/minute"})


async def _mfa_tokens(client: httpx.AsyncClient, email: str, count: int) -> list[str]:
    tokens = []
    for _ in range(count):
        login = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        tokens.append(login.json()["mfa_token"])
    return tokens


async def _exactly_one_signs_in(client: httpx.AsyncClient, attempts: list[tuple[str, str]]) -> None:
    """Send every (mfa_token, code) at once; exactly one may get tokens, the rest 401."""
    answers = await asyncio.gather(
        *(client.post("/api/auth/mfa/verify", json={"mfa_token": token, "code": code}) for token, code in attempts)
    )
    assert sorted(a.status_code for a in answers) == [200] + [401] * (len(attempts) - 1), [a.text for a in answers]


async def test_one_totp_code_in_concurrent_verifies_signs_in_once(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    user = await make_user(Role.VIEWER)
    secret, _ = await _enable_mfa(client, runtime, user)
    tokens = await _mfa_tokens(client, user.email, ATTEMPTS)
    code = totp.code_at(secret, runtime.clock.now() + timedelta(seconds=totp.STEP_SECONDS))
    await _exactly_one_signs_in(client, [(token, code) for token in tokens])


class SlowReads:
    """The runtime's cache with answers to reads delayed, so concurrent requests overlap between read and write."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cache, name)

    async def get(self, key: str) -> bytes | None:
        value = await self.cache.get(key)
        await asyncio.sleep(0.3)  # the answer is stale by the time it arrives
        return value


async def test_one_mfa_token_in_concurrent_verifies_signs_in_once(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user(Role.VIEWER)
    _, codes = await _enable_mfa(client, runtime, user)
    (token,) = await _mfa_tokens(client, user.email, 1)
    monkeypatch.setattr(runtime, "cache", SlowReads(runtime.cache))
    # A different valid recovery code in each request: only the token's single use can stop them.
    await _exactly_one_signs_in(client, [(token, code) for code in codes])


async def test_one_recovery_code_in_concurrent_verifies_signs_in_once(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    user = await make_user(Role.VIEWER)
    _, codes = await _enable_mfa(client, runtime, user)
    tokens = await _mfa_tokens(client, user.email, ATTEMPTS)
    await _exactly_one_signs_in(client, [(token, codes[0]) for token in tokens])
    # The spent code stays spent; another one still works.
    (token,) = await _mfa_tokens(client, user.email, 1)
    again = await client.post("/api/auth/mfa/verify", json={"mfa_token": token, "code": codes[1]})
    assert again.status_code == 200, again.text
