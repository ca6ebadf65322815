"""Whole files encrypted with AES-256-GCM in authenticated chunks (backups at rest).

Layout: ``TSENC1`` + the key id (16 ASCII hex) + an 8-byte random nonce prefix, then chunks of
``length (4 bytes) || ciphertext+tag``. Chunk *i* uses the nonce ``prefix || i`` (4 bytes) and
authenticates ``purpose || i || last-flag`` as associated data, so chunks cannot be reordered,
dropped, truncated at a chunk boundary or moved to another file purpose without failing. Any
flipped byte fails its chunk's tag. Decryption writes to the destination only what verified; the
caller decrypts into a scratch file and uses it only when `decrypt_file` returned.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"TSENC1"
CHUNK_BYTES = 1 << 20
_HEADER = len(MAGIC) + 16 + 8


class FileDecryptionError(Exception):
    """An encrypted file cannot be decrypted: wrong or unknown key, corrupted or truncated."""


def is_encrypted(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


def _aad(purpose: str, index: int, last: bool) -> bytes:
    return purpose.encode() + struct.pack(">I?", index, last)


def encrypt_file(source: Path, destination: Path, *, key: bytes, key_id: str, purpose: str) -> None:
    """Encrypt `source` into `destination` under `key`."""
    cipher = AESGCM(key)
    prefix = os.urandom(8)
    size = source.stat().st_size
    with source.open("rb") as reader, destination.open("wb") as writer:
        writer.write(MAGIC + key_id.encode("ascii") + prefix)
        index, done = 0, 0
        while True:
            chunk = reader.read(CHUNK_BYTES)
            done += len(chunk)
            last = done >= size
            sealed = cipher.encrypt(prefix + struct.pack(">I", index), chunk, _aad(purpose, index, last))
            writer.write(struct.pack(">I", len(sealed)) + sealed)
            index += 1
            if last:
                break


def decrypt_file(source: Path, destination: Path, *, keys: dict[str, bytes], purpose: str) -> None:
    """Decrypt `source` into `destination`; raises `FileDecryptionError` saying why it cannot."""
    with source.open("rb") as reader, destination.open("wb") as writer:
        header = reader.read(_HEADER)
        if len(header) != _HEADER or not header.startswith(MAGIC):
            raise FileDecryptionError(f"{source.name} is not an encrypted Tradestack file")
        kid = header[len(MAGIC) : len(MAGIC) + 16].decode("ascii", "replace")
        key = keys.get(kid)
        if key is None:
            raise FileDecryptionError(
                f"{source.name} was encrypted with key id {kid}, which is not configured: set TRADESTACK_ENCRYPTION_KEY "
                "(or add it to TRADESTACK_ENCRYPTION_PREVIOUS_KEYS)"
            )
        cipher, prefix = AESGCM(key), header[-8:]
        index = 0
        while True:
            length_bytes = reader.read(4)
            if len(length_bytes) != 4:
                raise FileDecryptionError(f"{source.name} is truncated: its last chunk is missing")
            (length,) = struct.unpack(">I", length_bytes)
            sealed = reader.read(length)
            if len(sealed) != length:
                raise FileDecryptionError(f"{source.name} is truncated inside chunk {index}")
            last = reader.peek(1) == b"" if hasattr(reader, "peek") else False
            try:
                plain = cipher.decrypt(prefix + struct.pack(">I", index), sealed, _aad(purpose, index, last))
            except InvalidTag:
                raise FileDecryptionError(
                    f"{source.name}: chunk {index} failed authentication (the file is corrupted or was tampered with)"
                ) from None
            writer.write(plain)
            index += 1
            if last:
                return
