"""The audit chain on SQLite and PostgreSQL: entries staged in the outbox are chained from genesis, tampering is
named, chainers never fork it. (The leased chainer itself: test_audit_chainer.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from tradestack.audit import service as audit_service
from tradestack.audit.repository import AuditRepository
from tradestack.audit.service import (
    APPEND_RETRIES,
    GENESIS_HASH,
    PERSONAL_COLUMNS,
    AuditService,
    canonical_content,
    canonical_json,
    entry_hash,
    personal_digest,
)
from tradestack.core.clock import SimClock
from tradestack.kit import migrations
from tradestack.kit.aio import ThreadSafeLock
from tradestack.kit.config import Settings
from tradestack.kit.db import Database
from tradestack.models import AuditEntry, AuditOutbox, AuditPersonal

START = datetime(2026, 11, 21, 9, 30, 0, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> SimClock:
    return SimClock(START)


@pytest.fixture
def audit(database: Database, clock: SimClock) -> AuditService:
    return AuditService(database, clock)


async def _record_many(audit: AuditService, clock: SimClock, count: int) -> list[AuditEntry]:
    for number in range(count):
        clock.advance(1.5)
        await audit.record(
            action="order.placed",
            outcome="success",
            actor_user_id=f"user-{number}",
            target=f"order:{number}",
            detail={"n": number},
        )
    assert await audit.drain() == count
    return await _rows(audit.database)


async def _rows(database: Database) -> list[AuditEntry]:
    async with database.session() as session:
        return [entry async for entry, _ in AuditRepository(session).iterate_in_order(batch_size=3)]


async def _personal(database: Database) -> list[AuditPersonal]:
    async with database.session() as session:
        return list((await session.scalars(select(AuditPersonal).order_by(AuditPersonal.entry_id))).all())


async def _staged(database: Database) -> int:
    async with database.session() as session:
        return (await session.execute(select(func.count()).select_from(AuditOutbox))).scalar_one()


async def _execute(database: Database, sql: str, **params: Any) -> None:
    async with database.session() as session:
        await session.execute(text(sql), params)


def _assert_linked(rows: list[AuditEntry]) -> None:
    previous = GENESIS_HASH
    for row in rows:
        assert row.prev_hash == previous
        assert row.hash == entry_hash(row.prev_hash, canonical_content(row))
        previous = row.hash


# --- canonical form (no database) ----------------------------------------------------------------


def _entry(**overrides: Any) -> AuditEntry:
    fields: dict[str, Any] = {
        "id": 7,
        "ts": datetime(2026, 11, 21, 9, 30, 0, 1, tzinfo=UTC),
        "actor_user_id": "u1",
        "actor_api_key_id": None,
        "actor_email": "zoë@example.com",
        "action": "auth.login",
        "outcome": "failure",
        "target": "user:u1",
        "ip": "203.0.113.9",
        "user_agent": "curl/8",
        "detail": '{"reason":"bad password"}',
        "prev_hash": GENESIS_HASH,
        "hash": "f" * 64,
    }
    fields.update(overrides)
    return AuditEntry(**fields)


def test_canonical_content_covers_every_column_but_id_and_hash() -> None:
    content = canonical_content(_entry())
    decoded = json.loads(content)
    # Version 1 (entries chained before i14b_a): the columns of that time, personal ones included.
    assert set(decoded) == {column.name for column in AuditEntry.__table__.columns} - {"id", "hash", "version", "personal_digest"}
    assert list(decoded) == sorted(decoded)
    assert b": " not in content
    assert b", " not in content
    assert decoded["ts"] == "2026-11-21T09:30:00.000001Z"
    assert "zoë".encode() in content  # not \u-escaped
    assert decoded["actor_api_key_id"] is None
    assert decoded["detail"] == '{"reason":"bad password"}'  # the stored text, verbatim


def test_version_2_content_covers_the_personal_digest_instead_of_the_personal_fields() -> None:
    entry = _entry(version=2, actor_email=None, ip=None, user_agent=None, personal_digest="d" * 64)
    decoded = json.loads(canonical_content(entry))
    assert set(decoded) == {column.name for column in AuditEntry.__table__.columns} - {"id", "hash", *PERSONAL_COLUMNS}
    assert (decoded["version"], decoded["personal_digest"]) == (2, "d" * 64)
    assert canonical_content(_entry(version=2, personal_digest="e" * 64)) != canonical_content(
        _entry(version=2, personal_digest="d" * 64)
    )
    # the personal fields themselves are outside a version-2 hash
    assert canonical_content(_entry(version=2, actor_email="a@example.com")) == canonical_content(
        _entry(version=2, actor_email="b@example.com")
    )
    salt = "ab" * 16
    personal = {"actor_email": "a@example.com", "ip": "203.0.113.9", "user_agent": None}
    assert personal_digest(salt, personal) != personal_digest("cd" * 16, personal)
    assert personal_digest(salt, personal) != personal_digest(salt, {**personal, "ip": "203.0.113.10"})


def _historic_canonical_json(fields: dict[str, Any]) -> bytes:
    """How the chain's hashed bytes were always made: entries chained so must keep verifying."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def test_canonical_json_is_byte_for_byte_the_historic_json_dumps_for_every_code_point() -> None:
    code_points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(code_points), 4096):
        text = "".join(chr(c) for c in code_points[start : start + 4096])
        fields = {"version": 2, "detail": '{"a":"\\u00e9\\n"}', "ts": "2026-11-21T09:30:00.000001Z", "z": text, "a": None}
        assert canonical_json(fields) == _historic_canonical_json(fields), hex(code_points[start])
    for control in range(0x20):  # one at a time too: the short escapes (\n, \t...) and the \u00XX ones
        fields = {"ip": f"x{chr(control)}y", "actor_email": "zoë@example.com", "user_agent": None}
        assert canonical_json(fields) == _historic_canonical_json(fields)
    entry = _entry(version=2, personal_digest="d" * 64, detail='{"note":"tab\there \u2028 \\ ""}')
    names = ("action", "outcome", "actor_user_id", "actor_api_key_id", "target", "detail", "prev_hash", "version")
    expected = {name: getattr(entry, name) for name in names} | {
        "personal_digest": "d" * 64,
        "ts": "2026-11-21T09:30:00.000001Z",
    }
    assert canonical_content(entry) == _historic_canonical_json(expected)


def test_canonical_content_ignores_id_and_hash_but_not_the_rest() -> None:
    base = canonical_content(_entry())
    assert canonical_content(_entry(id=8, hash="0" * 64)) == base
    assert canonical_content(_entry(ts=datetime(2026, 11, 21, 9, 30, 0, 2, tzinfo=UTC))) != base
    assert canonical_content(_entry(detail='{"reason": "bad password"}')) != base
    assert canonical_content(_entry(prev_hash="1" * 64)) != base
    assert canonical_content(_entry(actor_api_key_id="k1")) != base


def test_entry_hash_is_sha256_of_prev_hash_then_content() -> None:
    content = canonical_content(_entry())
    assert entry_hash(GENESIS_HASH, content) == hashlib.sha256(GENESIS_HASH.encode() + content).hexdigest()
    assert GENESIS_HASH == "0" * 64


# --- appending ------------------------------------------------------------------------------------


async def test_records_chain_from_genesis(database: Database, audit: AuditService, clock: SimClock) -> None:
    await audit.record(
        action="auth.login",
        outcome="failure",
        actor_email="someone@example.com",
        ip="203.0.113.9",
        user_agent="pytest",
        detail={"reason": "bad password", "amount": Decimal("1E+2"), "b": 1, "a": [1, "é"]},
    )
    clock.advance(0.25)
    await audit.record(action="auth.login", outcome="success", actor_user_id="u1", actor_email="someone@example.com")
    assert await _rows(database) == []  # staged, not chained yet
    assert await _staged(database) == 2
    assert await audit.drain() == 2
    assert await _staged(database) == 0
    first, second = await _rows(database)

    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert second.id > first.id
    assert first.detail == '{"a":[1,"é"],"amount":"100","b":1,"reason":"bad password"}'
    assert second.detail == "{}"

    rows = [first, second]
    assert [row.ts for row in rows] == [START, START.replace(microsecond=250001)]
    _assert_linked(rows)


async def test_verify_passes_on_a_clean_chain(database: Database, audit: AuditService, clock: SimClock) -> None:
    empty = await audit.verify()
    assert empty.ok
    assert (empty.checked, empty.head_hash, empty.first_bad_id, empty.problem) == (0, None, None, None)

    entries = await _record_many(audit, clock, 7)
    report = await audit.verify()
    assert report.ok, report.problem
    assert report.checked == 7
    assert report.head_hash == entries[-1].hash
    assert report.first_bad_id is None
    assert report.problem is None


class RefusedError(Exception):
    """The request failed after recording, so its own transaction rolls back."""


async def _refuse_after_recording(database: Database, audit: AuditService) -> None:
    async with database.session() as session:
        await session.execute(select(func.count()).select_from(AuditEntry))
        await audit.record(action="auth.login", outcome="failure", actor_email="x@example.com")
        raise RefusedError


async def test_record_commits_in_its_own_transaction(database: Database, audit: AuditService) -> None:
    with pytest.raises(RefusedError):
        await _refuse_after_recording(database, audit)
    assert await audit.drain() == 1
    rows = await _rows(database)
    assert [(row.action, row.outcome) for row in rows] == [("auth.login", "failure")]


# --- tampering ------------------------------------------------------------------------------------


async def test_an_edited_row_is_named(database: Database, audit: AuditService, clock: SimClock) -> None:
    entries = await _record_many(audit, clock, 5)
    await _execute(database, "UPDATE audit_entries SET outcome = 'failure' WHERE id = :id", id=entries[2].id)

    report = await audit.verify()
    assert not report.ok
    assert report.first_bad_id == entries[2].id
    assert report.problem == f"row {entries[2].id} was edited: its hash does not match its content"
    assert report.checked == 2
    assert report.head_hash == entries[1].hash


async def test_reformatting_the_detail_json_counts_as_an_edit(database: Database, audit: AuditService, clock: SimClock) -> None:
    entries = await _record_many(audit, clock, 3)
    await _execute(database, """UPDATE audit_entries SET detail = '{"n": 0}' WHERE id = :id""", id=entries[0].id)

    report = await audit.verify()
    assert not report.ok
    assert report.first_bad_id == entries[0].id
    assert report.head_hash is None
    assert report.checked == 0


async def test_a_deleted_middle_row_is_named_by_the_row_after_the_gap(
    database: Database, audit: AuditService, clock: SimClock
) -> None:
    entries = await _record_many(audit, clock, 5)
    await _execute(database, "DELETE FROM audit_entries WHERE id = :id", id=entries[2].id)

    report = await audit.verify()
    assert not report.ok
    assert report.first_bad_id == entries[3].id
    assert report.problem is not None
    assert report.problem.startswith(f"row {entries[3].id} does not follow row {entries[1].id}: a row before it was deleted")
    assert report.checked == 2


async def test_a_deleted_first_row_is_noticed(database: Database, audit: AuditService, clock: SimClock) -> None:
    entries = await _record_many(audit, clock, 3)
    await _execute(database, "DELETE FROM audit_entries WHERE id = :id", id=entries[0].id)

    report = await audit.verify()
    assert not report.ok
    assert report.first_bad_id == entries[1].id
    assert report.problem is not None
    assert "genesis" in report.problem


async def test_reordered_rows_are_noticed(database: Database, audit: AuditService, clock: SimClock) -> None:
    entries = await _record_many(audit, clock, 5)
    a, b = entries[1].id, entries[2].id
    # Swap the two rows' places: each row's content (and so its own hash) is untouched.
    await _execute(database, "UPDATE audit_entries SET id = :tmp WHERE id = :b", tmp=-1, b=b)
    await _execute(database, "UPDATE audit_entries SET id = :b WHERE id = :a", a=a, b=b)
    await _execute(database, "UPDATE audit_entries SET id = :a WHERE id = :tmp", a=a, tmp=-1)

    report = await audit.verify()
    assert not report.ok
    assert report.first_bad_id == a
    assert report.problem is not None
    assert f"does not follow row {entries[0].id}" in report.problem
    assert report.checked == 1


async def test_rewriting_a_row_with_a_recomputed_hash_is_named_by_the_next_row(
    database: Database, audit: AuditService, clock: SimClock
) -> None:
    entries = await _record_many(audit, clock, 4)
    victim = next(row for row in await _rows(database) if row.id == entries[1].id)
    victim.outcome = "denied"
    forged = entry_hash(victim.prev_hash, canonical_content(victim))
    await _execute(database, "UPDATE audit_entries SET outcome = 'denied', hash = :h WHERE id = :id", h=forged, id=victim.id)

    report = await audit.verify()
    assert not report.ok
    assert report.first_bad_id == entries[2].id
    assert report.problem is not None
    assert f"row {entries[1].id} was rewritten" in report.problem


async def test_deleting_the_newest_rows_is_only_visible_in_checked_and_head_hash(
    database: Database, audit: AuditService, clock: SimClock
) -> None:
    entries = await _record_many(audit, clock, 4)
    before = await audit.verify()
    await _execute(database, "DELETE FROM audit_entries WHERE id = :id", id=entries[-1].id)

    after = await audit.verify()
    assert after.ok  # documented limitation: compare with a head recorded elsewhere
    assert (before.checked, after.checked) == (4, 3)
    assert before.head_hash == entries[-1].hash
    assert after.head_hash == entries[-2].hash


# --- personal fields (hash version 2) --------------------------------------------------------------


async def _record_personal(audit: AuditService, clock: SimClock) -> None:
    clock.advance(1)
    await audit.record(action="auth.login", outcome="success", actor_user_id="u1", actor_email="zoë@example.com",
                       ip="203.0.113.9", user_agent="personal-agent/1")  # fmt: skip
    clock.advance(1)
    await audit.record(action="order.placed", outcome="success", actor_user_id="u1", target="order:1")
    assert await audit.drain() == 2


async def test_personal_fields_live_outside_the_hash_and_an_edit_of_them_is_named(
    database: Database, audit: AuditService, clock: SimClock
) -> None:
    await _record_personal(audit, clock)
    login, order = await _rows(database)
    (personal,) = await _personal(database)  # the order entry had no personal field: no row, no digest
    assert (login.version, login.actor_email, login.ip, login.user_agent) == (2, None, None, None)
    assert login.personal_digest == personal_digest(personal.salt, {"actor_email": "zoë@example.com", "ip": "203.0.113.9",
                                                                    "user_agent": "personal-agent/1"})  # fmt: skip
    assert (personal.entry_id, len(personal.salt), order.personal_digest) == (login.id, 32, None)
    listed = {record.id: record for record in await audit.list(settle_seconds=0)}
    assert (listed[login.id].actor_email, listed[login.id].ip, listed[login.id].anonymised) == (
        "zoë@example.com", "203.0.113.9", False)  # fmt: skip
    assert (await audit.verify()).ok

    await _execute(database, "UPDATE audit_personal SET ip = '198.51.100.1' WHERE entry_id = :id", id=login.id)
    report = await audit.verify()
    assert (report.ok, report.first_bad_id, report.checked) == (False, login.id, 0)
    assert report.problem == f"row {login.id}'s personal fields were edited: they do not match the digest its hash covers"

    await _execute(database, "UPDATE audit_personal SET ip = '203.0.113.9' WHERE entry_id = :id", id=login.id)
    await _execute(database, "UPDATE audit_entries SET ip = '203.0.113.9' WHERE id = :id", id=login.id)
    report = await audit.verify()
    assert (report.ok, report.first_bad_id) == (False, login.id)
    assert "keeps its personal fields only in audit_personal" in (report.problem or "")


async def test_erasing_personal_fields_keeps_the_chain_and_is_counted(
    database: Database, audit: AuditService, clock: SimClock
) -> None:
    await _record_personal(audit, clock)
    before = await audit.verify()
    login, _ = await _rows(database)
    await _execute(database, "DELETE FROM audit_personal WHERE entry_id = :id", id=login.id)
    after = await audit.verify()
    assert (after.ok, after.checked, after.head_hash, after.anonymised) == (True, 2, before.head_hash, 1)
    assert before.anonymised == 0
    record = next(record for record in await audit.list(settle_seconds=0) if record.id == login.id)
    assert (record.actor_email, record.ip, record.user_agent, record.anonymised) == (None, None, None, True)


async def test_version_1_entries_chained_before_still_verify(database: Database, audit: AuditService, clock: SimClock) -> None:
    old = _entry(id=None, prev_hash=GENESIS_HASH, version=1)  # chained the old way: personal fields in the hash
    old.hash = entry_hash(GENESIS_HASH, canonical_content(old))
    async with database.session() as session:
        await AuditRepository(session).add(old)
    await _record_personal(audit, clock)
    rows = await _rows(database)
    assert [row.version for row in rows] == [1, 2, 2]
    assert rows[1].prev_hash == old.hash
    report = await audit.verify()
    assert (report.ok, report.checked, report.anonymised) == (True, 3, 0)
    first = next(record for record in await audit.list(settle_seconds=0) if record.id == rows[0].id)
    assert (first.actor_email, first.user_agent, first.anonymised) == ("zoë@example.com", "curl/8", False)

    await _execute(database, "UPDATE audit_entries SET actor_email = 'x@example.com' WHERE id = :id", id=rows[0].id)
    assert (await audit.verify()).first_bad_id == rows[0].id  # a version-1 entry's personal fields are hashed


# --- concurrency and the UNIQUE safety net --------------------------------------------------------


async def test_concurrent_records_form_one_unbroken_chain(database: Database, audit: AuditService) -> None:
    await asyncio.gather(*(audit.record(action="order.placed", outcome="success", detail={"n": n}) for n in range(20)))
    await asyncio.gather(*(audit.drain(limit=3) for _ in range(4)))
    while await audit.drain(limit=3):
        pass

    report = await audit.verify()
    assert report.ok, report.problem
    assert report.checked == 20
    rows = await _rows(database)
    assert sorted(json.loads(row.detail)["n"] for row in rows) == list(range(20))
    _assert_linked(rows)


async def test_concurrent_records_from_two_database_objects(
    database: Database, database_url: str, clock: SimClock, tmp_path: Path
) -> None:
    other = Database(Settings(database_url=database_url, data_dir=tmp_path))
    try:
        services = [AuditService(database, clock), AuditService(other, clock)]
        await asyncio.gather(
            *(services[n % 2].record(action="order.placed", outcome="success", detail={"n": n}) for n in range(20))
        )
        await asyncio.gather(*(services[n % 2].drain(limit=4) for n in range(4)))
        while await services[1].drain(limit=4):
            pass
        report = await AuditService(other, clock).verify()
    finally:
        await other.dispose()
    assert report.ok, report.problem
    assert report.checked == 20
    _assert_linked(await _rows(database))


async def test_the_chain_cannot_fork(database: Database, audit: AuditService, clock: SimClock) -> None:
    first, _ = await _record_many(audit, clock, 2)
    fork = AuditEntry(ts=clock.now(), action="order.placed", outcome="success", detail="{}", prev_hash=first.hash)
    fork.hash = entry_hash(fork.prev_hash, canonical_content(fork))
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            await AuditRepository(session).add(fork)


async def test_a_chainer_that_lost_the_race_retries_on_the_new_head(
    database: Database, audit: AuditService, clock: SimClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = await _record_many(audit, clock, 2)
    real_head = AuditRepository.head_hash
    calls = 0

    async def stale_once(self: AuditRepository) -> str | None:
        nonlocal calls
        calls += 1
        return first.hash if calls == 1 else await real_head(self)

    monkeypatch.setattr(AuditRepository, "head_hash", stale_once)
    await audit.record(action="order.cancelled", outcome="success")
    assert await audit.drain() == 1

    assert calls == 2
    report = await audit.verify()
    assert report.ok, report.problem
    assert report.checked == 3
    assert report.head_hash == (await _rows(database))[-1].hash
    assert await _staged(database) == 0


async def test_gives_up_after_the_retries(
    database: Database, audit: AuditService, clock: SimClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = await _record_many(audit, clock, 2)
    calls = 0

    async def always_stale(self: AuditRepository) -> str | None:
        nonlocal calls
        calls += 1
        return first.hash

    monkeypatch.setattr(AuditRepository, "head_hash", always_stale)
    await audit.record(action="order.cancelled", outcome="success")
    with pytest.raises(IntegrityError):
        await audit.drain()
    assert calls == APPEND_RETRIES + 1
    assert len(await _rows(database)) == 2
    assert await _staged(database) == 1  # rolled back into the outbox, for the next try


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["", "Auth.login", "1auth", "auth login", "auth-login", ".auth", "a" * 65, "auth.login\n"])
async def test_invalid_actions_are_refused(database: Database, audit: AuditService, action: str) -> None:
    with pytest.raises(ValueError, match="invalid audit action"):
        await audit.record(action=action, outcome="success")
    assert await _staged(database) == 0


@pytest.mark.parametrize("outcome", ["", "ok", "SUCCESS", "failed", "success "])
async def test_invalid_outcomes_are_refused(database: Database, audit: AuditService, outcome: str) -> None:
    with pytest.raises(ValueError, match="invalid audit outcome"):
        await audit.record(action="auth.login", outcome=outcome)
    assert await _staged(database) == 0


async def test_longest_valid_action_is_accepted(database: Database, audit: AuditService) -> None:
    await audit.record(action="a" + "b" * 63, outcome="denied")
    await audit.drain()
    assert [entry.action for entry in await _rows(database)] == ["a" + "b" * 63]


@pytest.mark.parametrize("detail", [{"x": object()}, {"x": float("nan")}, {"x": {1, 2}}])
async def test_detail_must_be_json(database: Database, audit: AuditService, detail: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not JSON serialisable"):
        await audit.record(action="auth.login", outcome="success", detail=detail)
    assert await _staged(database) == 0


async def test_client_supplied_text_is_clipped_and_identifiers_are_checked(database: Database, audit: AuditService) -> None:
    await audit.record(
        action="auth.login", outcome="failure", actor_email="x" * 400, user_agent="Mozilla\x00" + "y" * 400, ip="1" * 80
    )
    await audit.drain()
    (entry,) = await _rows(database)
    assert (entry.version, entry.actor_email, entry.ip, entry.user_agent) == (2, None, None, None)
    (personal,) = await _personal(database)
    assert personal.entry_id == entry.id
    assert personal.actor_email is not None
    assert len(personal.actor_email) == 320
    assert personal.user_agent is not None
    assert len(personal.user_agent) == 300
    assert "\x00" not in personal.user_agent
    assert personal.ip is not None
    assert len(personal.ip) == 64
    with pytest.raises(ValueError, match="target"):
        await audit.record(action="auth.login", outcome="failure", target="t" * 201)
    assert (await audit.verify()).checked == 1


# --- listing --------------------------------------------------------------------------------------


async def test_list_is_newest_first_pages_and_filters(database: Database, audit: AuditService, clock: SimClock) -> None:
    for n in range(6):
        clock.advance(1)
        await audit.record(
            action="auth.login" if n % 2 else "order.placed",
            outcome="success",
            actor_user_id="alice" if n < 3 else "bob",
            detail={"n": n, "price": Decimal("1.50")},
        )
    assert await _staged(database) == 6

    page = await audit.list(limit=4)  # waits for (here: does) the chaining of what was committed before it
    assert await _staged(database) == 0
    ids = [row.id for row in await _rows(database)]
    assert [record.id for record in page] == ids[::-1][:4]
    assert page[0].detail == {"n": 5, "price": "1.5"}
    assert page[0].ts == START.replace(second=6)
    assert page[0].hash == (await audit.verify()).head_hash

    older = await audit.list(limit=4, before_id=page[-1].id)
    assert [record.id for record in older] == ids[1::-1]

    logins = await audit.list(action="auth.login")
    assert [record.id for record in logins] == [ids[5], ids[3], ids[1]]
    alice_orders = await audit.list(action="order.placed", actor_user_id="alice")
    assert [record.id for record in alice_orders] == [ids[2], ids[0]]
    assert await audit.list(actor_user_id="carol") == []

    with pytest.raises(ValueError, match="limit"):
        await audit.list(limit=0)
    with pytest.raises(ValueError, match="limit"):
        await audit.list(limit=1001)


# --- staged entries (the outbox) ------------------------------------------------------------------


async def _stage_then_fail(database: Database, audit: AuditService) -> None:
    async with database.session() as session:
        await audit.stage(session, action="order.submit", outcome="success", target="order:2")
        raise RefusedError


async def test_staged_entries_exist_exactly_when_their_transaction_commits(
    database: Database, audit: AuditService, clock: SimClock
) -> None:
    async with database.session() as session:
        await audit.stage(session, action="order.submit", outcome="success", target="order:1", detail={"qty": Decimal("1.5")})
        clock.advance(1)
        await audit.stage(session, action="order.cancel", outcome="success", target="order:1")
    with pytest.raises(RefusedError):
        await _stage_then_fail(database, audit)
    assert await _rows(database) == []  # staged, not yet chained
    assert await audit.drain() == 2
    assert await audit.drain() == 0
    rows = await _rows(database)
    assert [(row.action, row.target, row.ts) for row in rows] == [
        ("order.submit", "order:1", START),
        ("order.cancel", "order:1", START.replace(second=1)),
    ]
    assert rows[0].detail == '{"qty":"1.5"}'
    report = await audit.verify()
    assert report.ok
    assert report.checked == 2


async def test_concurrent_drains_chain_every_staged_entry_once(database: Database, audit: AuditService) -> None:
    for n in range(60):
        async with database.session() as session:
            await audit.stage(session, action="order.submit", outcome="success", target=f"order:{n}")
    await asyncio.gather(*(audit.drain(limit=7) for _ in range(12)))
    while await audit.drain(limit=7):
        pass
    rows = await _rows(database)
    assert sorted(int(row.target.split(":")[1]) for row in rows if row.target) == list(range(60))
    assert (await audit.verify()).ok


_ENTRY_SCANS = text("SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'audit_entries'")


async def test_a_batch_hashes_holding_no_lock_and_chains_only_what_it_read(
    database: Database, audit: AuditService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's Python work (hashing the entries) runs before its write transaction: on SQLite the process's writer
    lock, which every order waits for, is free meanwhile. Entries staged after the batch read the outbox wait for the
    next batch; entries another chainer claimed in between are not chained twice (the batch reads again)."""
    for n in range(5):
        await audit.record(action="order.submit", outcome="success", target=f"order:{n}")
    real_chain_rows = audit_service._chain_rows
    lock = database.writing()
    held_while_hashing: list[bool] = []
    staged_meanwhile = False

    def chain_rows(prev_hash: str, staged: Sequence[str]) -> Any:
        held_while_hashing.append(isinstance(lock, ThreadSafeLock) and lock.locked())
        return real_chain_rows(prev_hash, staged)

    real_oldest = AuditRepository.oldest_staged

    async def oldest_then_others_chain(self: AuditRepository, limit: int) -> list[tuple[int, str]]:
        nonlocal staged_meanwhile
        rows = await real_oldest(self, limit)
        if not staged_meanwhile:  # the first read: another chainer chains these before this batch writes
            staged_meanwhile = True
            monkeypatch.setattr(AuditRepository, "oldest_staged", real_oldest)
            assert await AuditService(database, audit.clock).drain() == 5
            await audit.record(action="order.submit", outcome="success", target="order:5")
        return rows

    monkeypatch.setattr(audit_service, "_chain_rows", chain_rows)
    monkeypatch.setattr(AuditRepository, "oldest_staged", oldest_then_others_chain)
    assert await audit.drain() == 1  # read 0-4, found them chained by the other, read again: only order:5
    assert held_while_hashing == [False, False, False]  # the other chainer's batch, this one's twice
    rows = await _rows(database)
    assert [row.target for row in rows] == [f"order:{n}" for n in range(6)]
    assert (await audit.verify()).ok
    assert await _staged(database) == 0


async def test_postgresql_personal_rows_check_their_entry_by_index_probes_whatever_the_statistics_say(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's personal rows check their entry's key by a probe of the chain's primary key, made once per connection,
    even when the statistics were taken while the chain was empty: a plan of such a check kept for the connection's
    life must not be a scan of the chain as it grows (`kit.db.unnest_insert`'s `probes_after`)."""
    database = Database(Settings(database_url=postgres_url, data_dir=tmp_path))
    try:
        await migrations.upgrade(database.engine)
        audit = AuditService(database, SimClock(START))
        async with database.session() as session:
            await session.execute(text("ANALYZE audit_entries"))
            entries = [{"action": "order.submit", "outcome": "success", "actor_email": f"u{n}@example.com"} for n in range(4)]
            await audit.stage_many(session, entries)
        scans: list[tuple[int, int]] = []
        append = AuditRepository.append

        async def counted(self: AuditRepository, rows: Any, personal: Any = ()) -> None:
            before = (await self.session.execute(_ENTRY_SCANS)).one()  # this backend's counts, not yet reported
            await append(self, rows, personal)
            after = (await self.session.execute(_ENTRY_SCANS)).one()
            scans.append((after[0] - before[0], after[1] - before[1]))

        monkeypatch.setattr(AuditRepository, "append", counted)
        assert await audit.chain_batch() == 4
        assert scans == [(0, 4)]  # one probe of the chain's primary key a personal row
        report = await audit.verify()
        assert report.ok, report.problem
        assert report.checked == 4
    finally:
        await database.dispose()
