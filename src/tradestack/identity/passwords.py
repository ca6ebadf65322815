"""argon2id password hashing.

Parameters come from settings (defaults: time cost 3, 64 MiB, parallelism 1 — above OWASP's
minimum of 2 iterations at 19 MiB). Hashing runs in a worker thread behind a semaphore, so a
burst of logins cannot stall the event loop or take every core. Unknown emails are checked
against a decoy hash so the failure path costs the same whether or not the account exists.
"""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from tradestack.kit.config import Settings

MAX_CONCURRENT_HASHES = 2


class Passwords:
    """Hash and verify passwords with the configured argon2id parameters."""

    def __init__(self, settings: Settings) -> None:
        self.hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        self.min_length = settings.password_min_length
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_HASHES)
        # The hash an unknown user's password is checked against. Made by `prepare` at start-up, in a thread: a hash
        # takes ~0.1-0.2 s, which on the event loop stalled every request and WebSocket frame of the process.
        self._decoy_hash: str | None = None
        self._decoy_made = asyncio.Lock()

    async def prepare(self) -> None:
        """Make the decoy hash now (in a thread), so that no login pays for it: a first miss would otherwise be slower."""
        if self._decoy_hash is None:
            async with self._decoy_made:  # one hash, whoever asks first (the start hook or an early sign-in)
                if self._decoy_hash is None:
                    self._decoy_hash = await asyncio.to_thread(self.hasher.hash, secrets.token_urlsafe(16))

    def problems(self, password: str) -> list[str]:
        """Why a new password is not acceptable (empty when it is)."""
        found = []
        if len(password) < self.min_length:
            found.append(f"password must have at least {self.min_length} characters")
        if len(password) > 1024:
            found.append("password must have at most 1024 characters")
        return found

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hasher.hash, password)

    def _verify_sync(self, stored_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches; with no stored hash, spend the same time and return False."""
        if stored_hash is None:
            await self.prepare()
            async with self._slots:
                await asyncio.to_thread(self._verify_sync, self._decoy_hash or "", password)
            return False
        async with self._slots:
            return await asyncio.to_thread(self._verify_sync, stored_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        return self.hasher.check_needs_rehash(stored_hash)
