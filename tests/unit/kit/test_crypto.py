"""AES-256-GCM keyring: round trips, tamper detection, purposes, key ids, rotation and key parsing."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from pydantic import SecretStr
from sqlalchemy import Text
from sqlalchemy.dialects import sqlite

from tradestack.core.errors import ConfigurationError
from tradestack.kit import crypto
from tradestack.kit.config import Settings
from tradestack.kit.crypto import DecryptionError, EncryptedString, Keyring, configure_keyring, get_keyring, key_id

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
K3 = bytes(range(200, 232))
PURPOSE = "users.mfa_secret"
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture
def no_global_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start without a process keyring and restore the previous one afterwards."""
    monkeypatch.setattr(crypto, "_keyring", None)


def _settings(key: str, previous: str | None = None) -> Settings:
    return Settings(
        encryption_key=SecretStr(key),
        encryption_previous_keys=None if previous is None else SecretStr(previous),
    )


def _unpad(text: str) -> str:
    return text.rstrip("=")


def test_key_id_is_sha256_prefix() -> None:
    assert key_id(K1) == hashlib.sha256(K1).hexdigest()[:16]
    assert len(key_id(K1)) == 16
    assert key_id(K1) != key_id(K2)


@pytest.mark.parametrize("plaintext", ["", "JBSWY3DPEHPK3PXP", "ünïcødé ✓ 🔑", "x" * 10_000])
def test_round_trip(plaintext: str) -> None:
    keyring = Keyring(K1)
    token = keyring.encrypt(plaintext, purpose=PURPOSE)
    assert keyring.decrypt(token, purpose=PURPOSE) == plaintext


def test_token_format() -> None:
    keyring = Keyring(K1)
    token = keyring.encrypt("secret", purpose=PURPOSE)
    version, kid, data = token.split(".")
    assert (version, kid) == ("v1", key_id(K1))
    assert keyring.active_key_id == key_id(K1)
    assert "=" not in data
    blob = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    assert len(blob) == 12 + len(b"secret") + 16  # nonce, ciphertext, tag
    assert b"secret" not in blob


def test_same_plaintext_gives_different_tokens() -> None:
    keyring = Keyring(K1)
    tokens = {keyring.encrypt("same", purpose=PURPOSE) for _ in range(50)}
    assert len(tokens) == 50
    nonces = {base64.urlsafe_b64decode(token.split(".")[2] + "==")[:12] for token in tokens}
    assert len(nonces) == 50


@pytest.mark.parametrize("plaintext", ["", "a", "ab", "abc", "secret value"])
def test_changing_any_character_of_the_token_is_detected(plaintext: str) -> None:
    keyring = Keyring(K1)
    token = keyring.encrypt(plaintext, purpose=PURPOSE)
    for position, original in enumerate(token):
        for replacement in {"A", "B", "f", "0", "-", "_", "."} - {original}:
            tampered = token[:position] + replacement + token[position + 1 :]
            with pytest.raises(DecryptionError):
                keyring.decrypt(tampered, purpose=PURPOSE)


def test_flipping_any_bit_of_nonce_ciphertext_or_tag_is_detected() -> None:
    keyring = Keyring(K1)
    version, kid, data = keyring.encrypt("secret value", purpose=PURPOSE).split(".")
    blob = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    for index in range(len(blob)):
        for bit in range(8):
            changed = bytearray(blob)
            changed[index] ^= 1 << bit
            tampered = f"{version}.{kid}.{_unpad(base64.urlsafe_b64encode(bytes(changed)).decode())}"
            with pytest.raises(DecryptionError, match="tampered"):
                keyring.decrypt(tampered, purpose=PURPOSE)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "plaintext",
        "v2.0123456789abcdef.AAAA",
        "v1.0123456789abcdef",
        "v1.0123456789abcdef.AAAA.AAAA",
        "v1.not-a-key-id!!.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.{kid}.AAAA",  # shorter than nonce + tag
        "v1.{kid}.AAAA AAAA",
        "v1.{kid}.AAAA+AAA/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.{kid}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
        "v1.{kid}.A",
    ],
)
def test_malformed_tokens_raise_decryption_error(token: str) -> None:
    keyring = Keyring(K1)
    with pytest.raises(DecryptionError):
        keyring.decrypt(token.format(kid=key_id(K1)), purpose=PURPOSE)


def test_wrong_purpose_fails() -> None:
    keyring = Keyring(K1)
    token = keyring.encrypt("secret", purpose="users.mfa_secret")
    with pytest.raises(DecryptionError, match="another purpose"):
        keyring.decrypt(token, purpose="users.mfa_pending_secret")


def test_unknown_key_id_fails_and_names_the_key_id() -> None:
    token = Keyring(K1).encrypt("secret", purpose=PURPOSE)
    with pytest.raises(DecryptionError, match=f"unknown key id {key_id(K1)}"):
        Keyring(K2).decrypt(token, purpose=PURPOSE)


def test_same_key_id_with_other_key_material_fails() -> None:
    token = Keyring(K1).encrypt("secret", purpose=PURPOSE)
    forged = token.replace(key_id(K1), key_id(K2), 1)
    with pytest.raises(DecryptionError, match="tampered"):
        Keyring(K2).decrypt(forged, purpose=PURPOSE)


def test_errors_never_contain_plaintext_or_key_material() -> None:
    keyring = Keyring(K1)
    token = keyring.encrypt("top-secret-plaintext", purpose=PURPOSE)
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    messages = []
    for attempt in (
        lambda: keyring.decrypt(tampered, purpose=PURPOSE),
        lambda: keyring.decrypt(token, purpose="other.column"),
        lambda: Keyring(K2).decrypt(token, purpose=PURPOSE),
    ):
        with pytest.raises(DecryptionError) as info:
            attempt()
        messages.append(str(info.value))
    for message in messages:
        assert "top-secret-plaintext" not in message
        assert K1.hex() not in message
        assert base64.b64encode(K1).decode() not in message
    assert K1.hex() not in repr(keyring)
    assert repr(keyring) == f"Keyring(active={key_id(K1)!r}, previous=[])"


def test_previous_keys_decrypt_and_active_key_encrypts() -> None:
    old = Keyring(K1).encrypt("from k1", purpose=PURPOSE)
    older = Keyring(K3).encrypt("from k3", purpose=PURPOSE)
    rotated = Keyring(K2, [K1, K3])
    assert rotated.active_key_id == key_id(K2)
    assert rotated.decrypt(old, purpose=PURPOSE) == "from k1"
    assert rotated.decrypt(older, purpose=PURPOSE) == "from k3"
    fresh = rotated.encrypt("new", purpose=PURPOSE)
    assert fresh.split(".")[1] == key_id(K2)
    with pytest.raises(DecryptionError, match="unknown key id"):
        Keyring(K1).decrypt(fresh, purpose=PURPOSE)


def test_needs_rotation() -> None:
    rotated = Keyring(K2, [K1])
    assert rotated.needs_rotation(Keyring(K1).encrypt("x", purpose=PURPOSE))
    assert not rotated.needs_rotation(rotated.encrypt("x", purpose=PURPOSE))
    assert rotated.needs_rotation(Keyring(K3).encrypt("x", purpose=PURPOSE))  # unknown keys need it too
    with pytest.raises(DecryptionError):
        rotated.needs_rotation("not a token")


@pytest.mark.parametrize("length", [0, 16, 24, 31, 33, 64])
def test_keys_must_be_32_bytes(length: int) -> None:
    with pytest.raises(ValueError, match=f"active key must be 32 bytes.*got {length}"):
        Keyring(b"k" * length)
    with pytest.raises(ValueError, match=f"previous key #2 must be 32 bytes.*got {length}"):
        Keyring(K1, [K2, b"k" * length])


def test_from_settings_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="TRADESTACK_ENCRYPTION_KEY is not set"):
        Keyring.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "encode",
    [
        lambda key: base64.b64encode(key).decode(),
        lambda key: _unpad(base64.b64encode(key).decode()),
        lambda key: base64.urlsafe_b64encode(key).decode(),
        lambda key: _unpad(base64.urlsafe_b64encode(key).decode()),
        lambda key: f"  {base64.b64encode(key).decode()}\n",
    ],
    ids=["standard", "standard-unpadded", "urlsafe", "urlsafe-unpadded", "surrounding-whitespace"],
)
def test_from_settings_accepts_standard_and_urlsafe_base64(encode: Callable[[bytes], str]) -> None:
    key = bytes([0xFB, 0xFF, 0xBF] * 10 + [0xFE, 0xFF])  # encodes with + and / (or - and _)
    encoded = encode(key)
    keyring = Keyring.from_settings(_settings(encoded, f"{encode(K1)},{encode(K2)}"))
    assert keyring.active_key_id == key_id(key)
    assert keyring.decrypt(Keyring(K1).encrypt("a", purpose=PURPOSE), purpose=PURPOSE) == "a"
    assert keyring.decrypt(Keyring(K2).encrypt("b", purpose=PURPOSE), purpose=PURPOSE) == "b"


def test_from_settings_ignores_blank_previous_entries() -> None:
    k1 = base64.b64encode(K1).decode()
    keyring = Keyring.from_settings(_settings(base64.b64encode(K2).decode(), f" ,{k1}, ,"))
    assert keyring.decrypt(Keyring(K1).encrypt("a", purpose=PURPOSE), purpose=PURPOSE) == "a"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is empty"),
        ("not base64 at all!", "is not valid base64"),
        ("a+b-" * 11, "is not valid base64"),  # mixes the standard and urlsafe alphabets
        ("A" * 41, "is not valid base64"),  # impossible length
        ("QUJD=REVG", "is not valid base64"),  # padding in the middle
        (base64.b64encode(b"k" * 16).decode(), "must decode to 32 bytes.*got 16"),
        (base64.b64encode(b"k" * 33).decode(), "must decode to 32 bytes.*got 33"),
    ],
)
def test_bad_active_key_names_the_setting(value: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^TRADESTACK_ENCRYPTION_KEY {problem}") as info:
        Keyring.from_settings(_settings(value))
    assert value.strip() == "" or value not in str(info.value)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("%%%", "is not valid base64"),
        (base64.b64encode(b"k" * 31).decode(), "must decode to 32 bytes.*got 31"),
    ],
)
def test_bad_previous_key_names_the_setting_and_entry(value: str, problem: str) -> None:
    previous = f"{base64.b64encode(K1).decode()},{value}"
    with pytest.raises(ConfigurationError, match=rf"^TRADESTACK_ENCRYPTION_PREVIOUS_KEYS \(entry 2\) {problem}") as info:
        Keyring.from_settings(_settings(base64.b64encode(K2).decode(), previous))
    assert value not in str(info.value)
    assert base64.b64encode(K1).decode() not in str(info.value)


@pytest.mark.usefixtures("no_global_keyring")
def test_get_keyring_without_configuration_raises() -> None:
    with pytest.raises(RuntimeError, match="no encryption keyring configured"):
        get_keyring()


@pytest.mark.usefixtures("no_global_keyring")
def test_configure_keyring_sets_the_process_keyring() -> None:
    keyring = Keyring(K1)
    configure_keyring(keyring)
    assert get_keyring() is keyring


@pytest.mark.usefixtures("no_global_keyring")
def test_encrypted_string_binds_and_reads_through_the_process_keyring() -> None:
    configure_keyring(Keyring(K1))
    column_type = EncryptedString("probe.secret")
    sqlite_dialect = sqlite.dialect()
    token = column_type.process_bind_param("plain", sqlite_dialect)
    assert token is not None
    assert token.startswith(f"v1.{key_id(K1)}.")
    assert Keyring(K1).decrypt(token, purpose="probe.secret") == "plain"
    assert column_type.process_result_value(token, sqlite_dialect) == "plain"
    assert column_type.process_bind_param(None, sqlite_dialect) is None
    assert column_type.process_result_value(None, sqlite_dialect) is None
    with pytest.raises(TypeError, match="stores str, not bytes"):
        column_type.process_bind_param(b"bytes", sqlite_dialect)
    with pytest.raises(TypeError, match="stores str, not int"):
        column_type.process_bind_param(42, sqlite_dialect)
    with pytest.raises(DecryptionError):
        EncryptedString("other.secret").process_result_value(token, sqlite_dialect)


def test_encrypted_string_type_properties() -> None:
    column_type = EncryptedString("probe.secret")
    assert isinstance(column_type.impl_instance, Text)
    assert column_type.cache_ok is True
    assert column_type.purpose == "probe.secret"
    with pytest.raises(ValueError, match="needs a purpose"):
        EncryptedString("")
