"""Identity's audit entries go through the outbox in identity's own transaction, on both stacks: they commit with
the change (a process that dies right after the commit loses none), and a rollback keeps only the refusals. A
process without a chainer (here, like a CLI command) chains its entries before going on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from tradestack.audit.service import AuditService
from tradestack.identity.permissions import Role
from tradestack.identity.service import Caller, IdentityService, identity_session
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.models import AuditEntry, AuditOutbox, AuditPersonal

from ...conftest import FAST_TEST_SETTINGS  # type: ignore[import-not-found]


@pytest.fixture
async def runtime(database_url: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    """A runtime with no chainer running: what is staged stays in the outbox until the test settles it."""
    opened = Runtime.open(Settings(database_url=database_url, data_dir=tmp_path, **FAST_TEST_SETTINGS))  # type: ignore[arg-type]
    await migrations.upgrade(opened.database.engine)
    yield opened
    await opened.close()


async def _outbox_actions(runtime: Runtime) -> list[tuple[str, str]]:
    async with runtime.database.session() as session:
        rows = (await session.scalars(select(AuditOutbox.fields).order_by(AuditOutbox.id))).all()
    return [(orjson.loads(row)["action"], orjson.loads(row)["outcome"]) for row in rows]


async def _chained_actions(runtime: Runtime) -> list[str]:
    async with runtime.database.session() as session:
        return list((await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id))).all())


class RefusedError(Exception):
    pass


async def test_entries_commit_with_identitys_transaction_even_if_the_process_stops_right_after(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def die_after_commit(self: IdentityService, *, committed: bool) -> None:
        """What a process killed between the commit and the old after-commit append did: nothing."""

    monkeypatch.setattr(IdentityService, "finish", die_after_commit)
    async with identity_session(runtime, Caller(ip="198.51.100.7")) as service:
        user = await service.create_user("outbox@example.com", "correct horse battery staple", Role.VIEWER)
    assert await _outbox_actions(runtime) == [("user.created", "success")]
    assert await _chained_actions(runtime) == []
    assert await AuditService(runtime.database, runtime.clock).settle()
    assert await _chained_actions(runtime) == ["user.created"]
    async with runtime.database.session() as session:
        entry = (await session.scalars(select(AuditEntry))).one()
        personal = (await session.scalars(select(AuditPersonal))).one()
    assert (entry.target, personal.entry_id, personal.ip) == (f"user:{user.id}", entry.id, "198.51.100.7")
    assert (await AuditService(runtime.database, runtime.clock).verify()).ok


async def test_a_rolled_back_transaction_keeps_its_refusals_and_drops_the_rest(runtime: Runtime) -> None:
    async def refuse() -> None:
        async with identity_session(runtime, Caller()) as service:
            await service.create_user("gone@example.com", "correct horse battery staple", Role.VIEWER)
            await service._audit("auth.login", "failure", None, actor_email="gone@example.com")
            raise RefusedError

    with pytest.raises(RefusedError):
        await refuse()
    assert await _outbox_actions(runtime) == []  # no chainer runs here: the session chained its entries itself
    assert await _chained_actions(runtime) == ["auth.login"]
    async with identity_session(runtime, Caller()) as service:
        assert await service.users.count() == 0  # the user was rolled back, and so was user.created


async def test_a_failed_commit_still_records_the_refusals(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals staged in the transaction are staged again when the commit itself fails."""
    real_stage = IdentityService.stage_audit

    async def stage_then_fail(self: IdentityService) -> None:
        await real_stage(self)
        raise RefusedError

    monkeypatch.setattr(IdentityService, "stage_audit", stage_then_fail)

    async def fail_at_commit() -> None:
        async with identity_session(runtime, Caller()) as service:
            await service._audit("auth.login", "failure", None, actor_email="x@example.com")
            await service._audit("auth.logout", "success", None)

    with pytest.raises(RefusedError):
        await fail_at_commit()
    assert await _chained_actions(runtime) == ["auth.login"]
    assert (await AuditService(runtime.database, runtime.clock).verify()).ok


async def test_a_process_without_a_chainer_chains_its_entries_before_going_on(runtime: Runtime) -> None:
    async with identity_session(runtime, Caller()) as service:
        await service.create_user("cli@example.com", "correct horse battery staple", Role.ADMIN)
    assert await _outbox_actions(runtime) == []
    assert await _chained_actions(runtime) == ["user.created"]
