"""Secrets at rest: AES-256-GCM with key ids, so keys can rotate.

A stored value is the text ``v1.<key id>.<base64url(nonce || ciphertext+tag)>`` (unpadded).
The column's *purpose* (e.g. ``users.mfa_secret``) is authenticated as associated data, so a
value copied into another column does not decrypt. Every value gets a fresh random 96-bit
nonce, so equal plaintexts give different tokens (and an encrypted column cannot be searched
by equality).

Rotation: configure the new key as ``TRADESTACK_ENCRYPTION_KEY`` and the old one in
``TRADESTACK_ENCRYPTION_PREVIOUS_KEYS``, then `reencrypt_all` rewrites every value under the
active key (``tradestack secrets rotate-key``); afterwards the old key can be dropped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Column, MetaData, Text, literal, select, type_coerce, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeDecorator

from tradestack.core.errors import ConfigurationError
from tradestack.kit.config import Settings
from tradestack.kit.secrets import with_generated_secrets

VERSION = "v1"
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
ACTIVE_KEY_SETTING = "TRADESTACK_ENCRYPTION_KEY"
PREVIOUS_KEYS_SETTING = "TRADESTACK_ENCRYPTION_PREVIOUS_KEYS"

_KEY_ID = re.compile(r"[0-9a-f]{16}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_BASE64_ANY = re.compile(r"[A-Za-z0-9+/_-]+")
_GENERATE_HINT = "generate one with `openssl rand -base64 32`"


class DecryptionError(Exception):
    """A stored value cannot be decrypted: unknown key id, tampered or corrupt value, or wrong purpose.

    Messages never contain plaintext or key material.
    """


def key_id(key: bytes) -> str:
    """First 16 hex characters of the key's SHA-256: names the key without revealing it."""
    return hashlib.sha256(key).hexdigest()[:16]


def _decode_key(text: str, setting: str) -> bytes:
    """Decode one base64 key (standard or urlsafe alphabet, padding optional) of exactly 32 bytes."""
    raw = text.strip().rstrip("=")
    if not raw:
        raise ConfigurationError(f"{setting} is empty: {_GENERATE_HINT}")
    if not _BASE64_ANY.fullmatch(raw) or (set(raw) & set("+/") and set(raw) & set("-_")):
        raise ConfigurationError(f"{setting} is not valid base64: {_GENERATE_HINT}")
    standard = raw.replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"{setting} is not valid base64: {_GENERATE_HINT}") from exc
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"{setting} must decode to {KEY_BYTES} bytes (AES-256), got {len(key)}: {_GENERATE_HINT}")
    return key


def _parse(token: str) -> tuple[str, bytes]:
    """Split a token into its key id and ``nonce || ciphertext+tag``; refuse anything non-canonical."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise DecryptionError(f"not an encrypted value: expected {VERSION}.<key id>.<data>")
    kid, data = parts[1], parts[2]
    if not _KEY_ID.fullmatch(kid):
        raise DecryptionError("encrypted value is corrupt: malformed key id")
    if not _BASE64URL.fullmatch(data):
        raise DecryptionError("encrypted value is corrupt: data is not base64url")
    try:
        blob = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError) as exc:
        raise DecryptionError("encrypted value is corrupt: data is not base64url") from exc
    # Only the canonical encoding is accepted, so changing any character of a token is detected.
    if base64.urlsafe_b64encode(blob).decode("ascii").rstrip("=") != data:
        raise DecryptionError("encrypted value is corrupt: data is not canonical base64url")
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("encrypted value is corrupt: too short")
    return kid, blob


class Keyring:
    """The active key, which encrypts, and earlier keys, which still decrypt."""

    def __init__(self, active: bytes, previous: Sequence[bytes] = ()) -> None:
        if len(active) != KEY_BYTES:
            raise ValueError(f"the active key must be {KEY_BYTES} bytes (AES-256), got {len(active)}")
        for position, key in enumerate(previous, start=1):
            if len(key) != KEY_BYTES:
                raise ValueError(f"previous key #{position} must be {KEY_BYTES} bytes (AES-256), got {len(key)}")
        self._active_id = key_id(active)
        self._ciphers = {key_id(key): AESGCM(key) for key in (*previous, active)}

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        """The keyring of ``TRADESTACK_ENCRYPTION_KEY`` and ``TRADESTACK_ENCRYPTION_PREVIOUS_KEYS``.

        Raises `ConfigurationError` naming the setting (and entry) whose key is not base64 of 32 bytes.
        """
        if settings.encryption_key is None:
            raise ConfigurationError(f"{ACTIVE_KEY_SETTING} is not set (Runtime.open generates one in development)")
        active = _decode_key(settings.encryption_key.get_secret_value(), ACTIVE_KEY_SETTING)
        previous: list[bytes] = []
        if settings.encryption_previous_keys is not None:
            entries = [entry for entry in settings.encryption_previous_keys.get_secret_value().split(",") if entry.strip()]
            for position, entry in enumerate(entries, start=1):
                previous.append(_decode_key(entry, f"{PREVIOUS_KEYS_SETTING} (entry {position})"))
        return cls(active, previous)

    @property
    def active_key_id(self) -> str:
        """Key id of the active key, the one new values are encrypted with."""
        return self._active_id

    def __repr__(self) -> str:
        others = sorted(kid for kid in self._ciphers if kid != self._active_id)
        return f"Keyring(active={self._active_id!r}, previous={others!r})"

    def encrypt(self, plaintext: str, *, purpose: str) -> str:
        """Encrypt with the active key and a fresh random nonce, binding the value to `purpose`."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._active_id].encrypt(nonce, plaintext.encode("utf-8"), purpose.encode("utf-8"))
        data = base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")
        return f"{VERSION}.{self._active_id}.{data}"

    def decrypt(self, token: str, *, purpose: str) -> str:
        """Decrypt a token made by `encrypt` with the active or any previous key, for the same `purpose`."""
        kid, blob = _parse(token)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise DecryptionError(f"encrypted with unknown key id {kid}: add that key to {PREVIOUS_KEYS_SETTING}")
        try:
            plaintext = cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], purpose.encode("utf-8"))
        except InvalidTag as exc:
            raise DecryptionError(
                f"encrypted value failed authentication: it was tampered with or corrupted, "
                f"or it belongs to another purpose than {purpose!r}"
            ) from exc
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecryptionError("encrypted value is not UTF-8 text") from exc

    def needs_rotation(self, token: str) -> bool:
        """True when the token was encrypted with another key than the active one.

        Raises `DecryptionError` when the token is not a well-formed encrypted value.
        """
        kid, _ = _parse(token)
        return kid != self._active_id


_keyring: Keyring | None = None


def configure_keyring(keyring: Keyring) -> None:
    """Set the keyring `EncryptedString` columns use in this process (`Runtime.open` does it)."""
    global _keyring
    _keyring = keyring


def get_keyring() -> Keyring:
    """The process keyring; raises RuntimeError when `configure_keyring` has not been called."""
    if _keyring is None:
        raise RuntimeError(
            "no encryption keyring configured: open a Runtime or call "
            "tradestack.kit.crypto.configure_keyring(Keyring.from_settings(settings)) first"
        )
    return _keyring


class EncryptedString(TypeDecorator[str]):
    """A text column stored AES-256-GCM-encrypted under the process keyring; reads give the plaintext.

    `purpose` (e.g. ``"users.mfa_secret"``) is authenticated with every value, so a value
    copied from another column fails to decrypt. ``None`` stays ``None`` (stored as NULL).
    """

    impl = Text
    cache_ok = True

    def __init__(self, purpose: str) -> None:
        super().__init__()
        if not purpose:
            raise ValueError("EncryptedString needs a purpose, e.g. 'users.mfa_secret'")
        self.purpose = purpose

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        """Encrypt the plaintext with the active key."""
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"an EncryptedString ({self.purpose}) stores str, not {type(value).__name__}")
        return get_keyring().encrypt(value, purpose=self.purpose)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        """Decrypt the stored token."""
        if value is None:
            return None
        return get_keyring().decrypt(str(value), purpose=self.purpose)


async def reencrypt_all(connection: AsyncConnection, metadata: MetaData, keyring: Keyring) -> dict[str, int]:
    """Re-encrypt under the active key every `EncryptedString` value stored under another key.

    Reads the raw tokens (bypassing the column type), decrypts each one whose key id is not the
    active one and writes it back encrypted with the active key, by primary key. Each update
    also matches the token it replaces, so a value written concurrently is never overwritten.
    Runs in the caller's transaction (the caller commits) and is idempotent. Returns the number
    of rows re-encrypted per ``"table.column"``; raises `DecryptionError` naming the table,
    column and primary key of a value the keyring cannot decrypt.
    """
    counts: dict[str, int] = {}
    for table in metadata.sorted_tables:
        encrypted: list[tuple[Column[Any], EncryptedString]] = []
        for column in table.columns:
            if isinstance(column.type, EncryptedString):
                encrypted.append((column, column.type))
        if not encrypted:
            continue
        primary_key = list(table.primary_key.columns)
        if not primary_key:
            raise ValueError(f"table {table.name} has encrypted columns but no primary key, so it cannot be re-encrypted")
        raw = [type_coerce(column, Text).label(f"encrypted_{index}") for index, (column, _) in enumerate(encrypted)]
        rows = (await connection.execute(select(*primary_key, *raw))).all()
        for index, (column, column_type) in enumerate(encrypted):
            name = f"{table.name}.{column.name}"
            counts[name] = 0
            for row in rows:
                token = row[len(primary_key) + index]
                if token is None:
                    continue
                keys = tuple(row[: len(primary_key)])
                try:
                    if not keyring.needs_rotation(token):
                        continue
                    plaintext = keyring.decrypt(token, purpose=column_type.purpose)
                except DecryptionError as exc:
                    raise DecryptionError(f"{name} at primary key {keys}: {exc}") from exc
                result = await connection.execute(
                    update(table)
                    .where(*(pk == value for pk, value in zip(primary_key, keys, strict=True)))
                    .where(type_coerce(column, Text) == literal(token, Text))
                    .values({column: literal(keyring.encrypt(plaintext, purpose=column_type.purpose), Text)})
                )
                counts[name] += result.rowcount
    return counts


def file_keys(settings: Settings) -> tuple[str, dict[str, bytes]]:
    """The active key's id and every configured key by id, for encrypting whole files (backups).

    The same settings and validation as the column keyring: ``TRADESTACK_ENCRYPTION_KEY`` encrypts,
    ``TRADESTACK_ENCRYPTION_PREVIOUS_KEYS`` still decrypt after a rotation.
    """
    if settings.encryption_key is None:  # development: the key this data directory generated
        settings = with_generated_secrets(settings)
    if settings.encryption_key is None:
        raise ConfigurationError(f"{ACTIVE_KEY_SETTING} is not set")
    active = _decode_key(settings.encryption_key.get_secret_value(), ACTIVE_KEY_SETTING)
    keys = {key_id(active): active}
    if settings.encryption_previous_keys is not None:
        entries = [entry for entry in settings.encryption_previous_keys.get_secret_value().split(",") if entry.strip()]
        for position, entry in enumerate(entries, start=1):
            key = _decode_key(entry, f"{PREVIOUS_KEYS_SETTING} (entry {position})")
            keys.setdefault(key_id(key), key)
    return key_id(active), keys
