"""The request path's per-process memory: verified tokens until they expire, principals for a bounded time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from tradestack.identity.sessions import PRINCIPAL_REUSE_SECONDS, RecentPrincipals, VerifiedTokens
from tradestack.identity.tokens import LEEWAY_SECONDS, InvalidTokenError, TokenSigner
from tradestack.kit.config import Settings

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(Settings(secret_key=SecretStr("s" * 48)))


def test_a_verified_token_is_not_verified_again_until_it_expires(signer: TokenSigner, monkeypatch: pytest.MonkeyPatch) -> None:
    token, _ = signer.issue("user-1", "access", NOW, 60)
    tokens = VerifiedTokens(signer)
    calls: list[str] = []
    verify = signer.verify

    def counting(*args: object, **kwargs: object) -> object:
        calls.append("verify")
        return verify(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(signer, "verify", counting)
    assert tokens.verify(token, "access", NOW).subject == "user-1"
    assert tokens.verify(token, "access", NOW + timedelta(seconds=30)).subject == "user-1"
    assert calls == ["verify"]
    with pytest.raises(InvalidTokenError, match="expired"):
        tokens.verify(token, "access", NOW + timedelta(seconds=60 + LEEWAY_SECONDS))
    assert len(tokens) == 0  # an expired token is forgotten
    with pytest.raises(InvalidTokenError, match="cannot be used here"):
        tokens.verify(token, "mfa", NOW)


def test_tampered_tokens_are_never_remembered(signer: TokenSigner) -> None:
    token, _ = signer.issue("user-1", "access", NOW, 60)
    tokens = VerifiedTokens(signer)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(InvalidTokenError):
        tokens.verify(tampered, "access", NOW)
    assert len(tokens) == 0


def test_verified_tokens_are_bounded(signer: TokenSigner) -> None:
    tokens = VerifiedTokens(signer, max_entries=3)
    for index in range(5):
        tokens.verify(signer.issue(f"user-{index}", "access", NOW, 60)[0], "access", NOW)
    assert len(tokens) == 3


def test_principals_are_reused_for_a_bounded_time_and_forgotten_by_token_or_user() -> None:
    clock = Monotonic()
    principals: RecentPrincipals[str] = RecentPrincipals(monotonic=clock)
    principals.put("jti-1", "alice", "alice via 1")
    principals.put("jti-2", "alice", "alice via 2")
    principals.put("jti-3", "bob", "bob")
    assert principals.get("jti-1") == "alice via 1"
    clock.now += PRINCIPAL_REUSE_SECONDS
    assert principals.get("jti-1") is None  # a revocation made elsewhere is honoured after this long
    principals.put("jti-1", "alice", "alice via 1")
    principals.forget_token("jti-1")  # logout on this process: at once
    assert principals.get("jti-1") is None
    principals.put("jti-1", "alice", "alice via 1")
    principals.put("jti-2", "alice", "alice via 2")
    principals.forget_user("alice")  # password change, role change, disabling on this process: at once
    assert principals.get("jti-1") is None
    assert principals.get("jti-2") is None
    assert principals.get("jti-3") is None  # expired meanwhile
    principals.put("jti-3", "bob", "bob")
    assert principals.get("jti-3") == "bob"


def test_recent_principals_are_bounded() -> None:
    principals: RecentPrincipals[int] = RecentPrincipals(max_entries=2)
    for index in range(4):
        principals.put(f"jti-{index}", f"user-{index}", index)
    assert len(principals) == 2
    assert principals.get("jti-3") == 3
    assert principals.get("jti-0") is None
    assert sorted(principals._tokens_of) == ["user-2", "user-3"]  # an evicted token leaves its user's index
    principals.put("jti-3", "user-9", 9)  # the same token, now another user's
    principals.forget_user("user-3")
    assert principals.get("jti-3") == 9
    principals.forget_user("user-9")
    assert principals.get("jti-3") is None
