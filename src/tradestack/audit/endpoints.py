"""Reading the audit log (admin and risk)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tradestack.audit.schemas import AuditRecord, VerifyReport
from tradestack.audit.service import AuditService
from tradestack.identity.deps import require
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Principal
from tradestack.kit.web import RuntimeDep

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get(
    "",
    response_model=list[AuditRecord],
    responses={401: {"description": "Not signed in"}, 403: {"description": "Needs the audit:read permission"}},
)
async def list_audit(
    runtime: RuntimeDep,
    _: Annotated[Principal, require(Permission.AUDIT_READ)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**62, description="Page backwards: entries older than this id.")] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z][a-z0-9_.]*$")] = None,
    actor_user_id: Annotated[str | None, Query(max_length=36)] = None,
) -> list[AuditRecord]:
    """Security and trading actions, newest first: who, what, when, from where, outcome."""
    service = AuditService(runtime.database, runtime.clock)
    return await service.list(limit=limit, before_id=before_id, action=action, actor_user_id=actor_user_id)


@router.get(
    "/verify",
    response_model=VerifyReport,
    responses={401: {"description": "Not signed in"}, 403: {"description": "Needs the audit:read permission"}},
)
async def verify_audit(runtime: RuntimeDep, _: Annotated[Principal, require(Permission.AUDIT_READ)]) -> VerifyReport:
    """Walk the whole hash chain: ok, rows checked, the head hash (record it elsewhere), or the first bad row."""
    return await AuditService(runtime.database, runtime.clock).verify()
