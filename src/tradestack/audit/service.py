"""Append to the hash-chained audit log, verify the chain, and list entries.

Every entry stores ``prev_hash`` (the hash of the entry before it, `GENESIS_HASH` for the first)
and ``hash = sha256(prev_hash + canonical_content(entry))``. The content covers every column
except ``id`` (PostgreSQL sequences can skip numbers on rollback; order is given by the chain
itself) and ``hash``. Editing a row breaks its own hash; deleting or reordering rows breaks the
link of the row after them.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import re
from collections.abc import Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.audit.repository import AuditRepository
from tradestack.audit.schemas import AuditRecord, VerifyReport
from tradestack.core.clock import Clock
from tradestack.core.money import plain
from tradestack.kit.db import Database
from tradestack.kit.logging import get_logger
from tradestack.kit.runtime import Runtime
from tradestack.models.audit import AuditEntry

log = get_logger(__name__)

GENESIS_HASH = "0" * 64
OUTCOMES = frozenset({"success", "failure", "denied"})
ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_.]*$")
MAX_ACTION_LENGTH = 64
APPEND_RETRIES = 5
MAX_LIST_LIMIT = 1000
VERIFY_BATCH_SIZE = 1000

# Column limits. Values a client controls are truncated so a hostile request is still recorded;
# over-long identifiers chosen by the server are a programming error and raise.
_TRUNCATED = {"actor_email": 320, "ip": 64, "user_agent": 300}
_CHECKED = {"actor_user_id": 36, "actor_api_key_id": 36, "target": 200}

# The columns hashed, besides ts and prev_hash. An explicit list, never the table's columns: a
# column added later must not change the hash of rows written before it existed.
_HASHED_TEXT_COLUMNS = (
    "actor_user_id",
    "actor_api_key_id",
    "actor_email",
    "action",
    "outcome",
    "target",
    "ip",
    "user_agent",
    "detail",
)

_sqlite_locks: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()


def _sqlite_append_lock() -> asyncio.Lock:
    """The lock that serialises appends on SQLite: one per event loop, so process-wide for the server's loop."""
    loop = asyncio.get_running_loop()
    lock = _sqlite_locks.get(loop)
    if lock is None:
        lock = _sqlite_locks[loop] = asyncio.Lock()
    return lock


def format_ts(ts: datetime) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``, e.g. ``2026-11-21T09:30:00.000000Z``."""
    if ts.tzinfo is None:
        raise ValueError(f"naive timestamp refused: {ts!r}")
    return ts.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_content(entry: AuditEntry) -> bytes:
    """The bytes an entry's hash covers: canonical JSON of every column except ``id`` and ``hash``.

    Keys are sorted, separators carry no spaces, text is UTF-8 (not ``\\u`` escaped), absent
    values are ``null``, ``ts`` is `format_ts` and ``detail`` is its stored text, verbatim.
    """
    fields: dict[str, str | None] = {name: getattr(entry, name) for name in _HASHED_TEXT_COLUMNS}
    fields["ts"] = format_ts(entry.ts)
    fields["prev_hash"] = entry.prev_hash
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(prev_hash: str, content: bytes) -> str:
    """Hex SHA-256 of the previous entry's hex hash followed by this entry's `canonical_content`."""
    return hashlib.sha256(prev_hash.encode("utf-8") + content).hexdigest()


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return plain(value) if value.is_finite() else str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def canonical_detail(detail: Mapping[str, Any] | None) -> str:
    """A detail mapping as canonical JSON text (sorted keys, no spaces, UTF-8); Decimals become strings.

    Raises ValueError when a value cannot be represented in JSON (a float NaN, an arbitrary object...).
    """
    try:
        text = json.dumps(
            dict(detail or {}),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_json_default,
        )
        text.encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit detail is not JSON serialisable: {exc}") from exc
    return text


def validate_action(action: str) -> None:
    """Raise ValueError unless `action` is a dotted lower-case name of at most 64 characters."""
    if not action or len(action) > MAX_ACTION_LENGTH or not ACTION_PATTERN.fullmatch(action):
        raise ValueError(
            f"invalid audit action {action!r}: need 1 to {MAX_ACTION_LENGTH} characters matching {ACTION_PATTERN.pattern}"
        )


def validate_outcome(outcome: str) -> None:
    """Raise ValueError unless `outcome` is success, failure or denied."""
    if outcome not in OUTCOMES:
        raise ValueError(f"invalid audit outcome {outcome!r}: need one of {', '.join(sorted(OUTCOMES))}")


def _clean(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    # PostgreSQL text cannot hold NUL, and UTF-8 cannot hold lone surrogates.
    value = value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if name in _TRUNCATED:
        return value[: _TRUNCATED[name]]
    if len(value) > _CHECKED[name]:
        raise ValueError(f"audit {name} is longer than {_CHECKED[name]} characters")
    return value


def to_record(entry: AuditEntry) -> AuditRecord:
    """An entry as the API shows it, ``detail`` parsed back into an object."""
    try:
        detail = json.loads(entry.detail)
    except ValueError:
        detail = None
    if not isinstance(detail, dict):
        detail = {"unparsed": entry.detail}
    return AuditRecord(
        id=entry.id,
        ts=entry.ts,
        actor_user_id=entry.actor_user_id,
        actor_api_key_id=entry.actor_api_key_id,
        actor_email=entry.actor_email,
        action=entry.action,
        outcome=entry.outcome,
        target=entry.target,
        ip=entry.ip,
        user_agent=entry.user_agent,
        detail=detail,
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


def _chain_problem(entry: AuditEntry, previous_id: int | None, previous_hash: str) -> str | None:
    """Why `entry` does not belong after the row `previous_id` (hash `previous_hash`), or None."""
    if entry_hash(entry.prev_hash, canonical_content(entry)) != entry.hash:
        return f"row {entry.id} was edited: its hash does not match its content"
    if entry.prev_hash == previous_hash:
        return None
    if previous_id is None:
        return (
            f"row {entry.id} does not start the chain: its prev_hash is not the genesis hash, "
            "so the rows before it were deleted (or it was rewritten)"
        )
    return (
        f"row {entry.id} does not follow row {previous_id}: a row before it was deleted or rows were reordered "
        f"(or row {previous_id} was rewritten with a recomputed hash)"
    )


class AuditService:
    """Appends entries to the audit chain, verifies it and lists entries."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    async def record(
        self,
        *,
        action: str,
        outcome: str,
        actor_user_id: str | None = None,
        actor_api_key_id: str | None = None,
        actor_email: str | None = None,
        target: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry in its own transaction and return it (committed, detached, id assigned).

        Its own transaction means the entry stays even when the caller's transaction rolls back,
        e.g. a failed login answered with 401. Appends are serialised: on PostgreSQL by a
        transaction-level advisory lock taken before reading the head of the chain, on SQLite by
        an in-process lock held across read, insert and commit. The UNIQUE ``prev_hash`` is the
        safety net: a writer that lost a race gets an IntegrityError and retries (up to
        `APPEND_RETRIES` times) on the new head.

        ``ts`` is the clock's time at the call. ``actor_email``, ``ip`` and ``user_agent`` come
        from the client and are truncated to their column; the other identifiers raise ValueError
        when too long. Raises ValueError for an invalid action or outcome, or a detail that is not
        JSON serialisable (Decimals are written as strings).
        """
        fields = self._fields(
            action=action,
            outcome=outcome,
            actor_user_id=actor_user_id,
            actor_api_key_id=actor_api_key_id,
            actor_email=actor_email,
            target=target,
            ip=ip,
            user_agent=user_agent,
            detail=detail,
        )
        retries = 0
        while True:
            try:
                if self.database.dialect == "sqlite":
                    async with _sqlite_append_lock():
                        return await self._append(fields)
                return await self._append(fields)
            except IntegrityError:
                retries += 1
                if retries > APPEND_RETRIES:
                    raise
                log.warning("audit_append_retry", action=action, retry=retries)

    def _fields(
        self,
        *,
        action: str,
        outcome: str,
        actor_user_id: str | None = None,
        actor_api_key_id: str | None = None,
        actor_email: str | None = None,
        target: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        validate_action(action)
        validate_outcome(outcome)
        fields: dict[str, Any] = {
            "ts": self.clock.now(),
            "action": action,
            "outcome": outcome,
            "actor_user_id": _clean("actor_user_id", actor_user_id),
            "actor_api_key_id": _clean("actor_api_key_id", actor_api_key_id),
            "actor_email": _clean("actor_email", actor_email),
            "target": _clean("target", target),
            "ip": _clean("ip", ip),
            "user_agent": _clean("user_agent", user_agent),
            "detail": canonical_detail(detail),
        }
        format_ts(fields["ts"])  # refuse a naive clock before touching the database
        return fields

    async def stage(self, session: AsyncSession, **entry: Any) -> None:
        """Queue an entry in `session`'s transaction: it exists exactly when that transaction commits.

        Takes the same arguments as `record` and checks them the same way. The entry joins the
        chain at the next `drain` (see `AuditDrainer.flush`, which callers await after committing).
        """
        fields = self._fields(**entry)
        fields["ts"] = fields["ts"].isoformat()
        await AuditRepository(session).stage(json.dumps(fields, sort_keys=True, ensure_ascii=False))

    async def drain(self, limit: int = 1000) -> int:
        """Append queued entries to the chain, oldest first, under one chain lock; returns how many."""
        if self.database.dialect == "sqlite":
            async with _sqlite_append_lock():
                return await self._drain(limit)
        return await self._drain(limit)

    async def _drain(self, limit: int) -> int:
        async with self.database.session() as session:
            repository = AuditRepository(session)
            postgresql = self.database.dialect == "postgresql"
            if postgresql:
                await repository.lock_chain()
            waiting = await repository.waiting(limit, skip_locked=postgresql)
            if not waiting:
                return 0
            head = await repository.last()
            prev_hash = head.hash if head is not None else GENESIS_HASH
            for row in waiting:
                fields = json.loads(row.fields)
                fields["ts"] = datetime.fromisoformat(fields["ts"])
                entry = AuditEntry(**fields, prev_hash=prev_hash)
                entry.hash = prev_hash = entry_hash(entry.prev_hash, canonical_content(entry))
                session.add(entry)
            await session.flush()
            await repository.unstage([row.id for row in waiting])
        return len(waiting)

    async def _append(self, fields: Mapping[str, Any]) -> AuditEntry:
        async with self.database.session() as session:
            repository = AuditRepository(session)
            if self.database.dialect == "postgresql":
                await repository.lock_chain()
            head = await repository.last()
            entry = AuditEntry(**fields, prev_hash=head.hash if head is not None else GENESIS_HASH)
            entry.hash = entry_hash(entry.prev_hash, canonical_content(entry))
            await repository.add(entry)
        return entry

    async def verify(self) -> VerifyReport:
        """Walk the chain in id order and report the first row that breaks it.

        Each row's hash must match its content, and its prev_hash must be the hash of the row
        before it (`GENESIS_HASH` for the first). That catches an edited row, a deleted row
        anywhere but at the end, and reordered rows.

        What it cannot catch from inside the table: deleting the NEWEST rows leaves a shorter
        chain that is still valid, and someone with write access who rewrites every row from an
        edit onwards (recomputing the hashes) leaves a valid chain too. So the report carries
        ``checked`` (rows that verified) and ``head_hash`` (hash of the last of them): record them
        somewhere the database's writers cannot reach (a ticket, a log shipper, another system)
        and compare them on the next run: the old head must still be in the chain, the count
        must not have shrunk.

        Reads the primary, so replica lag cannot hide recent rows.
        """
        checked = 0
        previous_id: int | None = None
        previous_hash = GENESIS_HASH
        async with (
            self.database.session() as session,
            aclosing(AuditRepository(session).iterate_in_order(VERIFY_BATCH_SIZE)) as entries,
        ):
            async for entry in entries:
                problem = _chain_problem(entry, previous_id, previous_hash)
                if problem is not None:
                    return VerifyReport(
                        ok=False,
                        checked=checked,
                        head_hash=previous_hash if previous_id is not None else None,
                        first_bad_id=entry.id,
                        problem=problem,
                    )
                checked += 1
                previous_id, previous_hash = entry.id, entry.hash
        return VerifyReport(ok=True, checked=checked, head_hash=previous_hash if previous_id is not None else None)

    async def list(
        self,
        *,
        limit: int = 100,
        before_id: int | None = None,
        action: str | None = None,
        actor_user_id: str | None = None,
    ) -> builtins.list[AuditRecord]:
        """Entries newest first, on the read replica when one is configured.

        Page with `before_id` (the smallest id of the previous page). Raises ValueError when
        `limit` is not between 1 and `MAX_LIST_LIMIT`.
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        async with self.database.read_session() as session:
            entries = await AuditRepository(session).list(
                limit=limit, before_id=before_id, action=action, actor_user_id=actor_user_id
            )
            # Inside the session: leaving it rolls back, which expires the loaded rows.
            return [to_record(entry) for entry in entries]


DRAIN_BATCH = 1000


class AuditDrainer:
    """Moves staged entries into the chain for one process, grouping concurrent callers into one drain.

    `flush` returns once every entry staged (and committed) before the call is in the chain. While
    one drain runs, later callers wait and share the next one: with many requests at once the
    chain lock is taken once per batch, not once per entry (group commit).
    """

    def __init__(self, service: AuditService) -> None:
        self._service = service
        self._lock = asyncio.Lock()
        self._requested = 0
        self._done = 0

    async def flush(self) -> None:
        self._requested += 1
        ticket = self._requested
        async with self._lock:
            if self._done >= ticket:
                return  # a drain that started after this call's entries were committed took them
            covered = self._requested
            while await self._service.drain(DRAIN_BATCH) == DRAIN_BATCH:
                pass  # a full batch: there may be more
            self._done = covered


DRAINER_COMPONENT = "audit.drainer"
DRAIN_EVERY_SECONDS = 2.0


def drainer_of(runtime: Runtime) -> AuditDrainer:
    """This process's drainer, created on first use."""
    existing = runtime.components.get(DRAINER_COMPONENT)
    if isinstance(existing, AuditDrainer):
        return existing
    created = AuditDrainer(AuditService(runtime.database, runtime.clock))
    runtime.components[DRAINER_COMPONENT] = created
    return created


async def start_audit_drainer(runtime: Runtime) -> None:
    """Drain in the background too, so entries a crashed process staged and never drained join the chain."""
    drainer = drainer_of(runtime)

    async def run() -> None:
        while True:
            try:
                await drainer.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried at the next tick
                log.warning("audit drain failed; retrying", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(DRAIN_EVERY_SECONDS)

    task = asyncio.create_task(run(), name="audit-drainer")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await drainer.flush()  # what this process staged last

    runtime.closers.append(stop)
