"""Signed access and MFA tokens (JWT, HS256 only) and opaque secrets for refresh tokens and API keys.

Every token names its key with ``kid``; tokens signed by the previous key stay valid until
they expire, so the signing key can rotate without logging everyone out. Decoding checks the
algorithm allow-list and requires ``iss``, ``aud``, ``exp``, ``nbf``, ``iat``, ``jti``,
``sub`` and our own ``typ``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt

from tradestack.core.errors import ConfigurationError
from tradestack.kit.config import Settings

ALGORITHMS = ["HS256"]
LEEWAY_SECONDS = 5
REQUIRED_CLAIMS = ["iss", "aud", "exp", "nbf", "iat", "jti", "sub", "typ"]
TokenType = Literal["access", "mfa"]
API_KEY_PREFIX = "tsk"
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second datetime can represent
MAX_TEXT_CLAIM = 200


class InvalidTokenError(Exception):
    """The token cannot be trusted; the message says why (for logs, not for callers)."""


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    token_id: str
    token_type: TokenType
    expires_at: datetime
    extra: dict[str, Any]
    expiry: int = 0
    """exp, in seconds since the epoch (0 on claims made by `issue`)."""
    not_before: int = 0
    issued: int = 0


def _kid(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class TokenSigner:
    """Issues and checks JWTs with the current key; also accepts the previous key's tokens."""

    def __init__(self, settings: Settings) -> None:
        if settings.secret_key is None:
            raise ConfigurationError("TRADESTACK_SECRET_KEY is not set (Runtime.open generates one in development)")
        current = settings.secret_key.get_secret_value()
        self._current = (_kid(current), current)
        self._keys = {_kid(current): current}
        if settings.secret_key_previous is not None:
            previous = settings.secret_key_previous.get_secret_value()
            self._keys[_kid(previous)] = previous
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience

    def issue(
        self, subject: str, token_type: TokenType, now: datetime, ttl_seconds: int, **extra: Any
    ) -> tuple[str, TokenClaims]:
        kid, key = self._current
        token_id = uuid.uuid4().hex
        expires = now + timedelta(seconds=ttl_seconds)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": token_id,
            "typ": token_type,
            **extra,
        }
        token = jwt.encode(claims, key, algorithm="HS256", headers={"kid": kid})
        return token, TokenClaims(subject, token_id, token_type, expires, extra)

    def decode(self, token: str, expected_type: TokenType, now: datetime) -> TokenClaims:
        """The claims of a token signed by one of our keys, valid at ``now``; `InvalidTokenError` otherwise."""
        claims = self.verify(token, expected_type, now)
        check_times(claims, now)
        return claims

    def verify(self, token: str, expected_type: TokenType, now: datetime) -> TokenClaims:
        """`decode` without the time checks (`check_times`): what stays true of a token while it lives."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(f"malformed token: {exc}") from exc
        key = self._keys.get(str(header.get("kid")))
        if key is None:
            raise InvalidTokenError("unknown key id")
        if header.get("alg") not in ALGORITHMS:
            raise InvalidTokenError(f"algorithm {header.get('alg')!r} is not allowed")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                # Time claims are checked below against the injected clock, not the wall clock.
                options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(str(exc)) from exc
        expiry, not_before, issued = (_seconds(claims, name) for name in ("exp", "nbf", "iat"))
        for name in ("sub", "jti", "typ"):
            if not isinstance(claims[name], str) or not 0 < len(claims[name]) <= MAX_TEXT_CLAIM:
                raise InvalidTokenError(f"claim {name} must be a non-empty string")
        if claims["typ"] != expected_type:
            raise InvalidTokenError(f"a {claims['typ']} token cannot be used here")
        extra = {k: v for k, v in claims.items() if k not in REQUIRED_CLAIMS}
        expires = datetime.fromtimestamp(expiry, tz=now.tzinfo)
        return TokenClaims(claims["sub"], claims["jti"], expected_type, expires, extra, expiry, not_before, issued)


def check_times(claims: TokenClaims, now: datetime) -> None:
    """Raise `InvalidTokenError` unless ``now`` is within the token's life (with `LEEWAY_SECONDS` of skew)."""
    moment = now.timestamp()
    if moment >= claims.expiry + LEEWAY_SECONDS:
        raise InvalidTokenError("token has expired")
    if moment + LEEWAY_SECONDS < claims.not_before:
        raise InvalidTokenError("token is not valid yet")
    if moment + LEEWAY_SECONDS < claims.issued:
        raise InvalidTokenError("token was issued in the future")


def _seconds(claims: dict[str, Any], name: str) -> int:
    """A time claim as whole seconds since the epoch: an integer (we issue integers) within datetime's range."""
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTokenError(f"claim {name} must be an integer number of seconds")
    if not 0 <= value <= MAX_TIMESTAMP:
        raise InvalidTokenError(f"claim {name} is out of range")
    return value


def new_opaque_secret() -> str:
    """256 bits of randomness, URL-safe (refresh tokens)."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """SHA-256 of a high-entropy secret, for storage and constant-time lookup."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """A fresh API key and its public prefix: ``tsk_<prefix>_<secret>``."""
    prefix = secrets.token_hex(6)
    return f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def split_api_key(value: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    parts = value.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(parts[1]) != 12:
        return None
    return parts[1]


def same_digest(secret: str, stored: str) -> bool:
    """Constant-time comparison of a secret with a stored digest."""
    return hmac.compare_digest(digest(secret), stored)
