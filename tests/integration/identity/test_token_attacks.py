"""Forged, expired, mis-addressed and mis-typed tokens are refused; the previous key still works."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from tradestack.identity.permissions import Role
from tradestack.identity.tokens import InvalidTokenError, TokenSigner
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime

from .conftest import MakeUser  # type: ignore[import-not-found]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(subject: str, **override: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "tradestack",
        "aud": "tradestack-api",
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "abc123",
        "typ": "access",
    }
    claims.update(override)
    return claims


def _kid(settings: Settings) -> str:
    import hashlib

    return hashlib.sha256(settings.secret_key.get_secret_value().encode()).hexdigest()[:16]


def _sign(runtime: Runtime, claims: dict[str, object], *, key: str | None = None) -> str:
    secret = key or runtime.settings.secret_key.get_secret_value()
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": _kid(runtime.settings)})


async def _status(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})).status_code


async def test_a_well_formed_token_is_accepted(client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser) -> None:
    user = await make_user(Role.VIEWER, login=False)
    assert await _status(client, _sign(runtime, _claims(user.id))) == 200


async def test_alg_none_is_refused(client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser) -> None:
    user = await make_user(Role.VIEWER, login=False)
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': _kid(runtime.settings)})}.{_b64(_claims(user.id))}."
    assert await _status(client, unsigned) == 401


async def test_another_key_is_refused(client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser) -> None:
    user = await make_user(Role.VIEWER, login=False)
    assert await _status(client, _sign(runtime, _claims(user.id), key="some-other-key-" + "x" * 32)) == 401


@pytest.mark.parametrize(
    "override",
    [
        {"exp": int(time.time()) - 60},
        {"aud": "another-service"},
        {"iss": "someone-else"},
        {"nbf": int(time.time()) + 30 * 86400},  # set at collection: still ahead when a slow run reaches the test
        {"typ": "mfa"},
        {"exp": 1e20},
        {"exp": 2**70},
        {"exp": str(int(time.time()) + 600)},
        {"exp": float(int(time.time()) + 600)},
        {"iat": True},
        {"nbf": -1},
        {"jti": 12345},
        {"jti": ""},
        {"typ": ["access"]},
    ],
    ids=[
        "expired",
        "audience",
        "issuer",
        "not-yet-valid",
        "mfa-token-as-access",
        "exp-1e20",
        "exp-beyond-datetime",
        "exp-string",
        "exp-float",
        "iat-boolean",
        "nbf-negative",
        "jti-number",
        "jti-empty",
        "typ-list",
    ],
)
async def test_bad_claims_are_refused(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser, override: dict[str, object]
) -> None:
    user = await make_user(Role.VIEWER, login=False)
    assert await _status(client, _sign(runtime, _claims(user.id, **override))) == 401


@pytest.mark.parametrize("missing", ["jti", "exp", "aud", "iat", "nbf", "iss"])
async def test_missing_required_claims_are_refused(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser, missing: str
) -> None:
    user = await make_user(Role.VIEWER, login=False)
    claims = _claims(user.id)
    del claims[missing]
    assert await _status(client, _sign(runtime, claims)) == 401


async def test_other_algorithm_with_same_secret_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, make_user: MakeUser
) -> None:
    user = await make_user(Role.VIEWER, login=False)
    token = jwt.encode(
        _claims(user.id),
        runtime.settings.secret_key.get_secret_value(),
        algorithm="HS512",
        headers={"kid": _kid(runtime.settings)},
    )
    assert await _status(client, token) == 401


async def test_garbage_and_wrong_scheme_are_401_with_challenge(client: httpx.AsyncClient) -> None:
    for header in ("Bearer not.a.token", "Basic dXNlcjpwYXNz", "Bearer "):
        response = await client.get("/api/auth/me", headers={"Authorization": header})
        assert response.status_code == 401
        assert response.json()["error"] == "AuthenticationError"
    assert "bearer" in (await client.get("/api/auth/me")).headers["www-authenticate"].lower()


def test_previous_signing_key_is_still_accepted_after_rotation() -> None:
    now = datetime.now(UTC)
    old = Settings(secret_key="old-key-" + "a" * 40, _env_file=None)  # type: ignore[call-arg, arg-type]
    token, _ = TokenSigner(old).issue("user-1", "access", now, 600)
    rotated = Settings(secret_key="new-key-" + "b" * 40, secret_key_previous="old-key-" + "a" * 40, _env_file=None)  # type: ignore[call-arg, arg-type]
    assert TokenSigner(rotated).decode(token, "access", now).subject == "user-1"
    forgotten = Settings(secret_key="new-key-" + "b" * 40, _env_file=None)  # type: ignore[call-arg, arg-type]
    with pytest.raises(InvalidTokenError, match="unknown key id"):
        TokenSigner(forgotten).decode(token, "access", now)
    assert TokenSigner(rotated).decode(TokenSigner(rotated).issue("u", "access", now, 60)[0], "access", now).subject == "u"
    with pytest.raises(InvalidTokenError):
        TokenSigner(rotated).decode(token, "access", now + timedelta(seconds=700))
