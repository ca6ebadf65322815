"""`tradestack secrets rotate-key` re-encrypts stored secrets under the new key."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tradestack.identity.permissions import Role
from tradestack.identity.service import Caller, identity_session
from tradestack.kit.config import Settings
from tradestack.kit.crypto import Keyring, key_id
from tradestack.kit.runtime import Runtime
from tradestack.models.identity import User

pytestmark = pytest.mark.slow  # runs the installed command three times
OLD_KEY = base64.b64encode(b"o" * 32).decode()
NEW_KEY = base64.b64encode(b"n" * 32).decode()
TRADESTACK = str(Path(sys.executable).parent / "tradestack")


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTACK_")}
    return {**env, "TRADESTACK_DATABASE_URL": database_url, **extra}


async def _store_secret(database_url: str) -> str:
    runtime = Runtime.open(Settings(database_url=database_url, encryption_key=OLD_KEY, argon2_memory_kib=8192, _env_file=None))  # type: ignore[call-arg, arg-type]
    try:
        async with identity_session(runtime, Caller()) as service:
            user = await service.create_user("rotate@example.com", "correct horse battery", Role.VIEWER)
            user.mfa_pending_secret = "JBSWY3DPEHPK3PXP"
            return str(user.id)
    finally:
        await runtime.close()


async def _raw_and_plain(database_url: str, user_id: str) -> tuple[str, str | None]:
    runtime = Runtime.open(Settings(database_url=database_url, encryption_key=NEW_KEY, _env_file=None))  # type: ignore[call-arg, arg-type]
    try:
        async with runtime.database.read_session() as session:
            raw = (
                await session.execute(text("SELECT mfa_pending_secret FROM users WHERE id = :id"), {"id": user_id})
            ).scalar_one()
            user = await session.get(User, user_id)
            return str(raw), user.mfa_pending_secret if user else None
    finally:
        await runtime.close()


def test_rotate_key_moves_every_value_to_the_new_key(sqlite_url: str) -> None:
    subprocess.run([TRADESTACK, "db", "upgrade"], env=_env(sqlite_url), check=True, capture_output=True)
    user_id = asyncio.run(_store_secret(sqlite_url))

    rotate = subprocess.run(
        [TRADESTACK, "secrets", "rotate-key"],
        env=_env(sqlite_url, TRADESTACK_ENCRYPTION_KEY=NEW_KEY, TRADESTACK_ENCRYPTION_PREVIOUS_KEYS=OLD_KEY),
        capture_output=True,
        text=True,
        check=False,
    )
    assert rotate.returncode == 0, rotate.stdout + rotate.stderr
    assert "users.mfa_pending_secret: 1 re-encrypted" in rotate.stdout

    # Readable with the new key alone: the old key can now be dropped.
    raw, plain = asyncio.run(_raw_and_plain(sqlite_url, user_id))
    assert raw.startswith(f"v1.{key_id(b'n' * 32)}.")
    assert plain == "JBSWY3DPEHPK3PXP"
    assert Keyring(b"n" * 32).decrypt(raw, purpose="users.mfa_pending_secret") == "JBSWY3DPEHPK3PXP"

    again = subprocess.run(
        [TRADESTACK, "secrets", "rotate-key"],
        env=_env(sqlite_url, TRADESTACK_ENCRYPTION_KEY=NEW_KEY),
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0
    assert "users.mfa_pending_secret: 0 re-encrypted" in again.stdout
