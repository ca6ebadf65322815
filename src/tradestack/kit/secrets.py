"""Secrets an installation generates for itself: the token signing key and the encryption key.

There is no built-in default key: a key written in the source is a key every reader has. When
``TRADESTACK_SECRET_KEY`` / ``TRADESTACK_ENCRYPTION_KEY`` are not set (development and the
embedded `tradestack up`), the first process to start generates them into
``<data_dir>/secrets/`` with owner-only permissions (directory 700, files 600), and every later
process on that data directory reads the same ones. Outside development `Settings.check_secrets`
refuses to start without them, so production never uses generated files.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from tradestack.core.errors import ConfigurationError
from tradestack.kit.config import Settings

SECRETS_DIR = "secrets"
GENERATED: dict[str, tuple[str, Callable[[], str]]] = {
    # setting: (file name, generator)
    "secret_key": ("signing.key", lambda: secrets.token_urlsafe(48)),
    "encryption_key": ("encryption.key", lambda: base64.b64encode(secrets.token_bytes(32)).decode("ascii")),
}


def secrets_dir(settings: Settings) -> Path:
    """Where generated secrets of this data directory live."""
    return settings.data_dir / SECRETS_DIR


def _read_or_create(path: Path, generate: Callable[[], str]) -> str:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        # O_EXCL: of processes starting together exactly one writes; the others read its key.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(generate() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise ConfigurationError(f"{path} is readable by other users: run `chmod 600 {path}`")
    value = path.read_text(encoding="ascii").strip()
    if not value:  # a creator that has not written yet (or a truncated file)
        raise ConfigurationError(f"{path} is empty: delete it to generate a new key, or restore it from a backup")
    return value


def with_generated_secrets(settings: Settings) -> Settings:
    """The settings with every unset required secret read from (or first generated into) the data directory."""
    missing = {name: spec for name, spec in GENERATED.items() if getattr(settings, name) is None}
    if not missing:
        return settings
    directory = secrets_dir(settings)
    values = {name: _read_or_create(directory / file_name, generate) for name, (file_name, generate) in missing.items()}
    return settings.model_copy(update={name: SecretStr(value) for name, value in values.items()})
