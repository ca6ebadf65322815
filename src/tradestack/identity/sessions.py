"""Per-process memory of the authenticated request path: verified tokens and recently resolved principals.

Checking a bearer token costs an HMAC and a JSON decode, and resolving who it belongs to
costs a cache read (Redis in production). Neither answer changes often, so each process keeps:

* `VerifiedTokens`: tokens whose signature and fixed claims were checked, until they expire
  (their time claims are checked again, against the injected clock, on every use);
* `RecentPrincipals`: the principal a token resolved to, for `PRINCIPAL_REUSE_SECONDS`.

Revocation therefore reaches a process within `PRINCIPAL_REUSE_SECONDS` (documented in
the README's security section): a logout, a password change or reset, a disabled user or a changed role made by
ANOTHER process is honoured by this one at most that long after it committed. On the process
that made the change it is honoured at once: the service calls `forget_token` (logout) or
`forget_user` (password, role, disabling) here.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Generic, TypeVar

from tradestack.identity.tokens import InvalidTokenError, TokenClaims, TokenSigner, TokenType, check_times

__all__ = ["MAX_REMEMBERED", "PRINCIPAL_REUSE_SECONDS", "RecentPrincipals", "VerifiedTokens"]

PRINCIPAL_REUSE_SECONDS = 2.0
"""How long a process reuses what a token resolved to: the bound on how late it honours a revocation made elsewhere."""

MAX_REMEMBERED = 20_000
"""Entries each memory holds before it forgets the least recently used one."""

T = TypeVar("T")


class VerifiedTokens:
    """Bearer tokens whose signature and fixed claims were verified, kept until they expire (LRU, bounded)."""

    def __init__(self, signer: TokenSigner, max_entries: int = MAX_REMEMBERED) -> None:
        self._signer = signer
        self._max_entries = max_entries
        self._entries: OrderedDict[str, TokenClaims] = OrderedDict()

    def verify(self, token: str, expected_type: TokenType, now: datetime) -> TokenClaims:
        """The token's claims if it is valid at ``now``; raises `InvalidTokenError` otherwise."""
        claims = self._entries.get(token)
        if claims is None or claims.token_type != expected_type:
            claims = self._signer.verify(token, expected_type, now)
            check_times(claims, now)
            self._entries[token] = claims
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
            return claims
        try:
            check_times(claims, now)
        except InvalidTokenError:
            del self._entries[token]
            raise
        self._entries.move_to_end(token)
        return claims

    def forget(self, token: str) -> None:
        self._entries.pop(token, None)

    def __len__(self) -> int:
        return len(self._entries)


class RecentPrincipals(Generic[T]):
    """What a token resolved to, reused for `PRINCIPAL_REUSE_SECONDS` (LRU, bounded), forgettable by token or user."""

    def __init__(
        self,
        reuse_seconds: float = PRINCIPAL_REUSE_SECONDS,
        max_entries: int = MAX_REMEMBERED,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reuse_seconds = reuse_seconds
        self._max_entries = max_entries
        self._monotonic = monotonic
        self._entries: OrderedDict[str, tuple[T, str, float]] = OrderedDict()  # token -> (value, user id, deadline)
        self._tokens_of: dict[str, set[str]] = {}

    def get(self, token: str) -> T | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if self._monotonic() >= entry[2]:
            self._drop(token)
            return None
        return entry[0]

    def put(self, token: str, user_id: str, value: T) -> None:
        self._drop(token)
        self._entries[token] = (value, user_id, self._monotonic() + self._reuse_seconds)
        self._tokens_of.setdefault(user_id, set()).add(token)
        if len(self._entries) > self._max_entries:
            self._drop(next(iter(self._entries)))

    def _drop(self, token: str) -> None:
        entry = self._entries.pop(token, None)
        if entry is None:
            return
        tokens = self._tokens_of.get(entry[1])
        if tokens is not None:
            tokens.discard(token)
            if not tokens:
                del self._tokens_of[entry[1]]

    def forget_token(self, token: str) -> None:
        self._drop(token)

    def forget_user(self, user_id: str) -> None:
        for token in list(self._tokens_of.get(user_id, ())):
            self._drop(token)

    def __len__(self) -> int:
        return len(self._entries)
