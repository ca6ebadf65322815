"""Password hashing never runs on the event loop's thread: not even the decoy hash an unknown user is checked against."""

from __future__ import annotations

import asyncio
import threading

import pytest
from argon2 import PasswordHasher

from tradestack.identity import passwords as passwords_module
from tradestack.identity.passwords import Passwords
from tradestack.kit.config import Settings


class RecordingHasher(PasswordHasher):
    """argon2's hasher, noting the thread each hash runs on."""

    threads: list[int] = []

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.threads.append(threading.get_ident())
        return super().hash(password, salt=salt)


def _recording(monkeypatch: pytest.MonkeyPatch) -> Passwords:
    RecordingHasher.threads = []
    monkeypatch.setattr(passwords_module, "PasswordHasher", RecordingHasher)
    return Passwords(Settings(argon2_time_cost=1, argon2_memory_kib=8192))


async def test_the_decoy_hash_is_made_in_a_thread_once_and_an_unknown_user_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passwords = _recording(monkeypatch)
    threads = RecordingHasher.threads
    assert threads == []  # creating it hashes nothing
    loop_thread = threading.get_ident()
    await passwords.prepare()
    await passwords.prepare()
    assert len(threads) == 1
    assert threads[0] != loop_thread
    assert await passwords.verify(None, "whatever-password") is False
    assert len(threads) == 1


async def test_a_miss_before_prepare_makes_the_decoy_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = _recording(monkeypatch)
    threads = RecordingHasher.threads
    assert await passwords.verify(None, "whatever-password") is False
    assert threads
    assert threading.get_ident() not in threads
    stored = await passwords.hash("a-real-password")
    assert await passwords.verify(stored, "a-real-password") is True


async def test_a_sign_in_during_the_start_hooks_hash_waits_for_it_instead_of_hashing_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passwords = _recording(monkeypatch)
    results = await asyncio.gather(passwords.prepare(), passwords.verify(None, "whatever-password"))
    assert results[1] is False
    assert len(RecordingHasher.threads) == 1
