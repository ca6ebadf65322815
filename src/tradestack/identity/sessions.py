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
from tradestack.kit.recent import RecentValues

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
    """What a token resolved to, reused for `PRINCIPAL_REUSE_SECONDS` (bounded), forgettable by token or user."""

    def __init__(
        self,
        reuse_seconds: float = PRINCIPAL_REUSE_SECONDS,
        max_entries: int = MAX_REMEMBERED,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # token -> (value, user id); every token that leaves is taken out of the user's index
        self._entries: RecentValues[str, tuple[T, str]] = RecentValues(reuse_seconds, max_entries, monotonic, self._unindex)
        self._tokens_of: dict[str, set[str]] = {}

    def get(self, token: str) -> T | None:
        entry = self._entries.get(token)
        return entry[0] if entry is not None else None

    def put(self, token: str, user_id: str, value: T) -> None:
        self._entries.put(token, (value, user_id))
        self._tokens_of.setdefault(user_id, set()).add(token)

    def _unindex(self, token: str, entry: tuple[T, str]) -> None:
        tokens = self._tokens_of.get(entry[1])
        if tokens is not None:
            tokens.discard(token)
            if not tokens:
                del self._tokens_of[entry[1]]

    def forget_token(self, token: str) -> None:
        self._entries.forget(token)

    def forget_user(self, user_id: str) -> None:
        for token in list(self._tokens_of.get(user_id, ())):
            self._entries.forget(token)

    def __len__(self) -> int:
        return len(self._entries)
