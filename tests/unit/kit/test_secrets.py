"""Generated secrets: created once per data directory, owner-only, reused, never a constant."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from tradestack.core.errors import ConfigurationError
from tradestack.kit.config import Settings
from tradestack.kit.crypto import Keyring
from tradestack.kit.secrets import secrets_dir, with_generated_secrets


def _settings(data_dir: Path, **values: str) -> Settings:
    return Settings(data_dir=data_dir, _env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_first_start_generates_owner_only_keys_and_later_starts_reuse_them(tmp_path: Path) -> None:
    first = with_generated_secrets(_settings(tmp_path))
    directory = secrets_dir(first)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(path.name for path in directory.iterdir())
    assert files == ["encryption.key", "signing.key"]
    for name in files:
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    assert first.secret_key is not None
    assert first.encryption_key is not None
    assert len(first.secret_key.get_secret_value()) >= 32
    assert len(base64.b64decode(first.encryption_key.get_secret_value())) == 32
    Keyring.from_settings(first)  # a usable AES-256 key

    again = with_generated_secrets(_settings(tmp_path))
    assert again.secret_key == first.secret_key
    assert again.encryption_key == first.encryption_key
    elsewhere = with_generated_secrets(_settings(tmp_path / "other"))
    assert elsewhere.secret_key != first.secret_key
    assert elsewhere.encryption_key != first.encryption_key


def test_configured_secrets_are_used_and_nothing_is_written(tmp_path: Path) -> None:
    configured = _settings(tmp_path, secret_key="s" * 40, encryption_key=base64.b64encode(b"k" * 32).decode())
    assert with_generated_secrets(configured) is configured
    assert not secrets_dir(configured).exists()


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    settings = with_generated_secrets(_settings(tmp_path))
    (secrets_dir(settings) / "signing.key").chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by other users"):
        with_generated_secrets(_settings(tmp_path))
