"""Bodies the audit module hands to the API and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditRecord(BaseModel):
    """One audit entry as the API shows it."""

    id: int
    ts: datetime = Field(description="When the action happened (UTC).")
    actor_user_id: str | None = None
    actor_api_key_id: str | None = None
    actor_email: str | None = Field(default=None, description="The actor's email as it was at the time.")
    action: str = Field(examples=["auth.login"])
    outcome: str = Field(description="success, failure or denied.", examples=["success"])
    target: str | None = Field(default=None, examples=["user:0b6f3c1e-8f5e-4c4e-9d1a-3f1f4c2b7a10"])
    ip: str | None = None
    user_agent: str | None = None
    anonymised: bool = Field(
        default=False, description="The actor's email, IP and User-Agent were erased (retention); the entry still verifies."
    )
    detail: dict[str, Any] = Field(
        default_factory=dict,
        description='Structured context. A stored value that is not a JSON object is shown as {"unparsed": "<text>"}.',
    )
    prev_hash: str = Field(description="Hash of the entry before this one (64 zeros for the first).")
    hash: str = Field(description="SHA-256 of prev_hash and this entry's content.")


class VerifyReport(BaseModel):
    """Outcome of walking the whole chain.

    ``checked`` rows verified, ending at ``head_hash``. Deleting the newest rows leaves a valid
    (shorter) chain, so compare ``checked`` and ``head_hash`` with values recorded elsewhere.
    """

    ok: bool
    checked: int = Field(description="Rows that verified: all of them when ok, else those before the first bad row.")
    anonymised: int = Field(default=0, description="Of the rows checked, those whose personal fields were erased (retention).")
    head_hash: str | None = Field(description="Hash of the last row that verified; null when none did.")
    first_bad_id: int | None = Field(default=None, description="Id of the first row that breaks the chain.")
    problem: str | None = Field(default=None, description="What is wrong with that row.")
