"""Users, refresh-token families, API keys and MFA recovery codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from tradestack.kit.crypto import EncryptedString
from tradestack.models.base import Base, UTCDateTime


class User(Base):
    """A person (or service) that signs in (their trading accounts are `books`')."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, doc="Lower-cased.")
    password_hash: Mapped[str] = mapped_column(String(200), doc="argon2id, PHC string format.")
    role: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), doc="Set by an admin reset: the temporary password must be replaced."
    )
    session_generation: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        doc="Named by every access token (claim gen); a password change or reset adds one, which revokes older tokens.",
    )
    mfa_secret: Mapped[str | None] = mapped_column(EncryptedString("users.mfa_secret"), doc="TOTP secret, AES-GCM encrypted.")
    mfa_pending_secret: Mapped[str | None] = mapped_column(
        EncryptedString("users.mfa_pending_secret"), doc="Secret from setup, until enabled with a valid code."
    )
    mfa_last_step: Mapped[int | None] = mapped_column(BigInteger, doc="Last TOTP time step accepted; each is used once.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="When the user was created (UTC).")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="Last change to role, state or credentials (UTC).")


class RefreshToken(Base):
    """One refresh token of a family; using it rotates it, reusing it revokes the family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, doc="SHA-256 of the opaque token.")
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="UTC.")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="UTC.")
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), doc="When it was exchanged for a new one (UTC).")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), doc="UTC.")
    revoked_reason: Mapped[str | None] = mapped_column(String(64))


class ApiKey(Base):
    """A key for programs; the secret is shown once and stored as a SHA-256 digest."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True, doc="Public part of the key, used to find it.")
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(64), doc="Comma-separated, sorted: read, trade, admin.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="UTC.")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), doc="UTC; never when null.")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), doc="UTC.")
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), doc="UTC, updated at most once a minute.")


class RecoveryCode(Base):
    """A one-time MFA recovery code, stored as a SHA-256 digest."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash"), Index("ix_recovery_codes_user_id", "user_id"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), doc="UTC.")
