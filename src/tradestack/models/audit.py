"""The append-only, hash-chained audit log of security and trading actions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradestack.models.base import Base, UTCDateTime


class AuditEntry(Base):
    """One action (a login, a key revoked, an order placed...) and who did it, linked to the entry before it.

    Rows are only ever inserted. Each row stores the hash of the row before it (``prev_hash``) and
    its own hash over its content, so editing, deleting or reordering rows breaks the chain; see
    `tradestack.audit.service.AuditService.verify`.

    Version 1 entries hash the actor's email, IP and User-Agent with the rest. Version 2 entries keep
    those in `AuditPersonal` (NULL here) and hash only ``personal_digest``, a salted digest of them,
    so the personal row can be erased (retention) while the chain still verifies.
    """

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
        doc="Insertion order. Not part of the hash: PostgreSQL sequences may skip numbers.",
    )
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), index=True, doc="When the action happened (UTC, microseconds).")
    actor_user_id: Mapped[str | None] = mapped_column(String(36), index=True, doc="The user who acted, when known.")
    actor_api_key_id: Mapped[str | None] = mapped_column(String(36), doc="The API key used, when the actor used one.")
    actor_email: Mapped[str | None] = mapped_column(String(320), doc="The actor's email as it was at the time.")
    action: Mapped[str] = mapped_column(String(64), index=True, doc='Dotted lower-case name, e.g. "auth.login".')
    outcome: Mapped[str] = mapped_column(String(16), doc="success, failure or denied.")
    target: Mapped[str | None] = mapped_column(String(200), doc='What was acted on, e.g. "user:<id>".')
    ip: Mapped[str | None] = mapped_column(String(64), doc="Client address the request came from.")
    user_agent: Mapped[str | None] = mapped_column(String(300), doc="Client User-Agent, truncated.")
    detail: Mapped[str] = mapped_column(Text(), default="{}", doc="Canonical JSON object (sorted keys, no spaces).")
    prev_hash: Mapped[str] = mapped_column(
        String(64),
        unique=True,
        doc="Hex SHA-256 of the entry before this one (64 zeros for the first). Unique, so the chain cannot fork.",
    )
    hash: Mapped[str] = mapped_column(
        String(64),
        unique=True,
        doc="Hex SHA-256 of prev_hash followed by the canonical JSON of every other column except id.",
    )
    version: Mapped[int] = mapped_column(
        Integer(),
        default=1,
        server_default="1",
        doc="Hash version: 1 hashes the personal columns themselves, 2 hashes personal_digest instead.",
    )
    personal_digest: Mapped[str | None] = mapped_column(
        String(64),
        doc="Version 2: hex SHA-256 of the salt and the personal fields (in audit_personal); null when there were none.",
    )


class AuditPersonal(Base):
    """The personal fields of a version-2 audit entry, outside what the chain hashes (the entry hashes their digest).

    Written by the chainer in the transaction that chains the entry. Retention deletes the row to
    anonymise the entry; `AuditService.verify` then counts the entry as anonymised, not broken.
    """

    __tablename__ = "audit_personal"

    entry_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("audit_entries.id"),
        primary_key=True,
        autoincrement=False,
        doc="The entry these fields belong to.",
    )
    salt: Mapped[str] = mapped_column(String(32), doc="Hex of 16 random bytes: the digest cannot be guessed from likely values.")
    actor_email: Mapped[str | None] = mapped_column(String(320), doc="The actor's email as it was at the time.")
    ip: Mapped[str | None] = mapped_column(String(64), doc="Client address the request came from.")
    user_agent: Mapped[str | None] = mapped_column(String(300), doc="Client User-Agent, truncated.")


class AuditOutbox(Base):
    """Audit entries written in the same transaction as the change they describe, waiting to join the chain.

    A change and its audit record commit together; the chainer (`AuditService.chain_batch`) then
    deletes waiting rows and appends them to the chain in the same transaction, many at a time. A
    crash in between leaves the rows here for the next batch, so no committed action loses its
    audit entry and none is chained twice.
    """

    __tablename__ = "audit_outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    fields: Mapped[str] = mapped_column(Text(), doc="The entry's columns as JSON (ts in ISO 8601), chained as written.")


class AuditChainerLease(Base):
    """Who chains the outbox now: one row per chain, held by one chainer until ``expires_at``.

    The leader renews the lease in every batch transaction (``UPDATE ... WHERE holder = me``), which
    also locks the row until that batch commits: a contender cannot take the lease while a batch is
    open, and a leader whose lease was taken finds no row to renew and rolls its batch back.
    """

    __tablename__ = "audit_chainer_leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True, doc='The chain this lease is for ("audit").')
    holder: Mapped[str | None] = mapped_column(String(100), doc="The chainer holding the lease (host:pid:random), if any.")
    expires_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), doc="When the lease lapses unless renewed (UTC); a lapsed lease may be taken by any chainer."
    )
