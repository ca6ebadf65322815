"""Request and response bodies of the identity endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tradestack.identity.permissions import Role, Scope
from tradestack.kit.fields import RequestBody

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$"


class StrictBody(RequestBody):
    """A request body: unknown fields and NUL characters refused."""


class LoginRequest(StrictBody):
    email: str = Field(max_length=320, examples=["trader@example.com"])
    password: str = Field(min_length=1, max_length=1024)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires.")


class MfaChallenge(BaseModel):
    mfa_required: Literal[True] = True
    mfa_token: str = Field(description="Send it with a TOTP or recovery code to /api/auth/mfa/verify.")
    expires_in: int


class MfaVerifyRequest(StrictBody):
    mfa_token: str = Field(min_length=1, max_length=4096)
    code: str = Field(min_length=6, max_length=32, description="6-digit TOTP code or a recovery code.")


class RefreshRequest(StrictBody):
    refresh_token: str = Field(min_length=1, max_length=512)


class LogoutRequest(StrictBody):
    refresh_token: str | None = Field(default=None, max_length=512)


class PasswordChange(StrictBody):
    """Your current password (or the temporary one an admin gave you) and the new one."""

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024, description="At least the configured minimum length.")


class TemporaryPassword(BaseModel):
    """A one-time password from an admin reset: shown once, to be changed at the next sign-in."""

    user_id: str
    temporary_password: str
    must_change_password: bool = True


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    base_currency: str
    kind: str
    allow_short: bool
    created_at: datetime


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    role: Role
    is_active: bool
    mfa_enabled: bool
    must_change_password: bool = Field(default=False, description="True after an admin reset, until the user sets a new one.")
    created_at: datetime


class Me(UserOut):
    accounts: list[AccountOut]
    via_api_key: bool
    permissions: list[str]


class UserCreate(StrictBody):
    email: str = Field(pattern=EMAIL_PATTERN, max_length=320)
    password: str = Field(min_length=12, max_length=1024)
    role: Role = Role.VIEWER


class UserUpdate(StrictBody):
    role: Role | None = None
    is_active: bool | None = None


class MfaSetup(BaseModel):
    otpauth_uri: str
    qr_png: str = Field(description="The URI as a QR code: a data:image/png;base64 URI.")


class MfaCode(StrictBody):
    code: str = Field(min_length=6, max_length=32)


class MfaEnabled(BaseModel):
    recovery_codes: list[str] = Field(description="Shown once. Each works once in place of a TOTP code.")


class ApiKeyCreate(StrictBody):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(min_length=1)
    expires_at: datetime | None = Field(default=None, description="When the key stops working: a future time with a zone.")

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("expires_at needs a time zone, e.g. 2027-01-01T00:00:00Z")
        return value


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret. Shown once: store it now.")
