"""The hash-chained audit log: stage entries in the caller's transaction, chain them in batches, verify, list.

Writing never touches the chain. `AuditService.stage` adds the entry to ``audit_outbox`` in the
caller's transaction (it exists exactly when the change it describes commits); `record` does the
same in a transaction of its own (for refusals that roll the caller back). One `AuditChainer` per
installation -- the holder of a lease row, renewed in every batch -- claims outbox rows by deleting
them and appends them to the chain in the same transaction, many per transaction: nothing is lost
(a rollback puts the rows back) and nothing is chained twice (a row is deleted once). Nobody waits
for the chainer on the request path, and no lock is held across an await outside its transactions.

Every entry stores ``prev_hash`` (the hash of the entry before it, `GENESIS_HASH` for the first)
and ``hash = sha256(prev_hash + canonical_content(entry))``. The content covers every column
except ``id`` (PostgreSQL sequences can skip numbers on rollback; order is given by the chain
itself) and ``hash``. Editing a row breaks its own hash; deleting or reordering rows breaks the
link of the row after them.

Personal fields (actor email, IP, User-Agent) are not hashed themselves in version-2 entries (every
entry chained since migration ``i14b_a``): they live in ``audit_personal`` with a random salt, and
the entry hashes ``personal_digest = sha256(salt + canonical JSON of the three fields)`` instead.
Deleting the personal row (retention's anonymisation) leaves the chain intact -- `verify` counts
the entry as anonymised -- while editing it no longer matches the digest. Version-1 entries (chained
before) hash the fields directly, so theirs cannot be erased without breaking the chain.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.audit.repository import AuditRepository
from tradestack.audit.schemas import AuditRecord, VerifyReport
from tradestack.core.clock import Clock
from tradestack.core.money import plain
from tradestack.kit.aio import stop_tasks, wait_event
from tradestack.kit.db import Alongside, Database
from tradestack.kit.logging import get_logger
from tradestack.kit.metrics import (
    AUDIT_CHAINER_LEADER,
    AUDIT_ENTRIES_CHAINED,
    AUDIT_OUTBOX_BACKLOG,
    AUDIT_OUTBOX_OLDEST_AGE,
)
from tradestack.kit.outages import count_failure, is_lock_timeout
from tradestack.kit.runtime import Runtime, Slot
from tradestack.models.audit import AuditEntry, AuditPersonal

log = get_logger(__name__)

GENESIS_HASH = "0" * 64
OUTCOMES = frozenset({"success", "failure", "denied"})
ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_.]*$")
MAX_ACTION_LENGTH = 64
APPEND_RETRIES = 5
MAX_LIST_LIMIT = 1000
VERIFY_BATCH_SIZE = 1000
DRAIN_BATCH = 1000
HASH_SLICE = 100
"""How many staged entries the chainer hashes before it lets the event loop run (`_chain_rows_yielding`)."""
DEFAULT_LEASE_SECONDS = 10.0
SETTLE_POLL_SECONDS = 0.02
LIST_SETTLE_SECONDS = 2.0
CLI_SETTLE_SECONDS = 5.0

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
# Version 2 (`HASH_VERSION`): the personal columns leave the hashed content for `personal_digest`.
PERSONAL_COLUMNS = ("actor_email", "ip", "user_agent")
_HASHED_V2_COLUMNS = tuple(name for name in _HASHED_TEXT_COLUMNS if name not in PERSONAL_COLUMNS)
HASH_VERSION = 2


class LeaseLostError(Exception):
    """Another chainer holds the chainer lease now: this one's batch was rolled back and it must stand by."""


def format_ts(ts: datetime) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``, e.g. ``2026-11-21T09:30:00.000000Z``."""
    if ts.tzinfo is None:
        raise ValueError(f"naive timestamp refused: {ts!r}")
    return ts.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_content(entry: AuditEntry) -> bytes:
    """The bytes an entry's hash covers: canonical JSON of every column except ``id`` and ``hash``.

    Keys are sorted, separators carry no spaces, text is UTF-8 (not ``\\u`` escaped), absent
    values are ``null``, ``ts`` is `format_ts` and ``detail`` is its stored text, verbatim.
    Version 2 leaves the personal columns out and covers ``version`` and ``personal_digest`` instead.
    """
    names = (*_HASHED_TEXT_COLUMNS, "ts", "prev_hash", "version", "personal_digest")
    return content_of({name: getattr(entry, name) for name in names})


def content_of(row: Mapping[str, Any]) -> bytes:
    """`canonical_content` of an entry given as a mapping of its columns (how the chainer builds rows)."""
    version = row.get("version") or 1
    fields: dict[str, str | int | None]
    if version == 1:
        fields = {name: row.get(name) for name in _HASHED_TEXT_COLUMNS}
    else:
        fields = {name: row.get(name) for name in _HASHED_V2_COLUMNS}
        fields["version"] = version
        fields["personal_digest"] = row.get("personal_digest")
    fields["ts"] = format_ts(row["ts"])
    fields["prev_hash"] = row["prev_hash"]
    return canonical_json(fields)


def canonical_json(fields: Mapping[str, str | int | None]) -> bytes:
    """Canonical JSON of text, integer and null values: sorted keys, no spaces, UTF-8 (not ``\\u`` escaped).

    The bytes of ``json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``,
    which the chain's hashes have always covered (a test holds the two equal over every code point),
    made by orjson at a fraction of the CPU: the chainer makes two per entry.
    """
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def personal_digest(salt: str, personal: Mapping[str, str | None]) -> str:
    """Hex SHA-256 of the salt (hex text) followed by the canonical JSON of the personal fields."""
    fields = {name: personal.get(name) for name in PERSONAL_COLUMNS}
    return hashlib.sha256(salt.encode("ascii") + canonical_json(fields)).hexdigest()


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


def to_record(entry: AuditEntry, personal: AuditPersonal | None = None) -> AuditRecord:
    """An entry as the API shows it, ``detail`` parsed back into an object.

    A version-2 entry's personal fields come from its `AuditPersonal` row; without one (anonymised)
    they are null and ``anonymised`` is true.
    """
    try:
        detail = json.loads(entry.detail)
    except ValueError:
        detail = None
    if not isinstance(detail, dict):
        detail = {"unparsed": entry.detail}
    source: AuditEntry | AuditPersonal | None = entry if (entry.version or 1) == 1 else personal
    return AuditRecord(
        id=entry.id,
        ts=entry.ts,
        actor_user_id=entry.actor_user_id,
        actor_api_key_id=entry.actor_api_key_id,
        actor_email=source.actor_email if source is not None else None,
        action=entry.action,
        outcome=entry.outcome,
        target=entry.target,
        ip=source.ip if source is not None else None,
        user_agent=source.user_agent if source is not None else None,
        anonymised=_is_anonymised(entry, personal),
        detail=detail,
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


def _is_anonymised(entry: AuditEntry, personal: AuditPersonal | None) -> bool:
    """A version-2 entry whose personal fields (digest set) were erased by deleting their row."""
    return (entry.version or 1) != 1 and entry.personal_digest is not None and personal is None


def _personal_problem(entry: AuditEntry, personal: AuditPersonal | None) -> str | None:
    """Why `entry`'s personal fields (in the row, or in `personal`) do not match what its hash covers, or None."""
    if (entry.version or 1) == 1:
        return None if personal is None else f"row {entry.id} is a version-1 entry but has a personal row"
    if any(getattr(entry, name) is not None for name in PERSONAL_COLUMNS):
        return f"row {entry.id} was edited: a version-2 entry keeps its personal fields only in audit_personal"
    if personal is None:
        return None
    if entry.personal_digest is None or personal_digest(personal.salt, _personal_fields(personal)) != entry.personal_digest:
        return f"row {entry.id}'s personal fields were edited: they do not match the digest its hash covers"
    return None


def _personal_fields(source: AuditPersonal | Mapping[str, Any]) -> dict[str, str | None]:
    if isinstance(source, AuditPersonal):
        return {name: getattr(source, name) for name in PERSONAL_COLUMNS}
    return {name: source.get(name) for name in PERSONAL_COLUMNS}


def _chain_problem(entry: AuditEntry, personal: AuditPersonal | None, previous_id: int | None, previous_hash: str) -> str | None:
    """Why `entry` does not belong after the row `previous_id` (hash `previous_hash`), or None."""
    if entry_hash(entry.prev_hash, canonical_content(entry)) != entry.hash:
        return f"row {entry.id} was edited: its hash does not match its content"
    problem = _personal_problem(entry, personal)
    if problem is not None:
        return problem
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


def _outbox_text(fields: Mapping[str, Any]) -> str:
    """An entry's columns as the outbox stores them: JSON, ``ts`` in ISO 8601 with its offset."""
    return orjson.dumps({**fields, "ts": fields["ts"].isoformat()}, option=orjson.OPT_SORT_KEYS).decode()


def _chain_rows(
    prev_hash: str, staged: Iterable[str]
) -> tuple[builtins.list[dict[str, Any]], builtins.list[tuple[str, dict[str, Any]]]]:
    """Version-2 chain rows for staged entries (outbox JSON), linked one after the other from `prev_hash`,
    and the personal rows to write with them as (entry hash, row without ``entry_id``)."""
    rows = []
    personal_rows = []
    for text in staged:
        fields = orjson.loads(text)
        row: dict[str, Any] = {name: fields.get(name) for name in _HASHED_V2_COLUMNS}
        row["detail"] = row["detail"] if row["detail"] is not None else "{}"
        row["ts"] = datetime.fromisoformat(fields["ts"])
        row["prev_hash"] = prev_hash
        row["version"] = HASH_VERSION
        personal = _personal_fields(fields)
        if any(value is not None for value in personal.values()):
            salt = secrets.token_hex(16)
            row["personal_digest"] = personal_digest(salt, personal)
        else:
            salt, row["personal_digest"] = "", None
        row["hash"] = prev_hash = entry_hash(prev_hash, content_of(row))
        rows.append(row)
        if row["personal_digest"] is not None:
            personal_rows.append((row["hash"], {"salt": salt, **personal}))
    return rows, personal_rows


async def _chain_rows_yielding(
    prev_hash: str, staged: Sequence[str]
) -> tuple[builtins.list[dict[str, Any]], builtins.list[tuple[str, dict[str, Any]]]]:
    """`_chain_rows` in slices of `HASH_SLICE`, letting the event loop run between them (a batch of 500 is ~10-20 ms
    of Python: requests wait a slice at most)."""
    rows: builtins.list[dict[str, Any]] = []
    personal: builtins.list[tuple[str, dict[str, Any]]] = []
    for start in range(0, len(staged), HASH_SLICE):
        if start:
            await asyncio.sleep(0)
        more, more_personal = _chain_rows(rows[-1]["hash"] if rows else prev_hash, staged[start : start + HASH_SLICE])
        rows += more
        personal += more_personal
    return rows, personal


class _StaleBatchError(Exception):
    """Some entries a batch read were claimed by another chainer before it wrote (`AuditService._chain_batch`)."""


def new_holder_name(role: str = "chainer") -> str:
    """A name no other chainer uses: role, host, process id and a random part."""
    return f"{role}:{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class AuditService:
    """Stages audit entries, chains them in batches (for the chainer), verifies the chain and lists entries."""

    def __init__(self, database: Database, clock: Clock, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.database = database
        self.clock = clock
        self.lease_seconds = lease_seconds

    # --- writing: the outbox ------------------------------------------------------------------

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
    ) -> None:
        """Stage one entry in a transaction of its own (committed when this returns); the chainer chains it.

        Its own transaction means the entry stays even when the caller's transaction rolls back,
        e.g. a failed login answered with 401. Use `stage` for an entry about a change, so both
        commit or neither. Nothing here waits for the chain: `settle` does, for readers and tools.

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
        async with self.database.session() as session:
            await AuditRepository(session).stage([_outbox_text(fields)])

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

    def outbox_row(self, **entry: Any) -> dict[str, str]:
        """An entry (the arguments of `record`, checked the same way) as a row of ``audit_outbox``.

        For writers that insert many rows with one Core ``executemany`` (group commit):
        ``insert(AuditOutbox)`` with a list of these rows stages them all.
        """
        return {"fields": _outbox_text(self._fields(**entry))}

    async def stage(self, session: AsyncSession, **entry: Any) -> None:
        """Queue an entry in `session`'s transaction: it exists exactly when that transaction commits.

        Takes the same arguments as `record` and checks them the same way. One INSERT, no lock
        and no wait: the chainer chains the entry after the commit (wake it with `wake_chainer`).
        """
        await AuditRepository(session).stage([_outbox_text(self._fields(**entry))])

    async def stage_many(self, session: AsyncSession, entries: Iterable[Mapping[str, Any]]) -> None:
        """Queue several entries (each the arguments of `record`) in `session`'s transaction, one executemany."""
        await AuditRepository(session).stage([_outbox_text(self._fields(**entry)) for entry in entries])

    def stage_alongside(self, entries: Iterable[Mapping[str, Any]]) -> Alongside:
        """`stage_many` as rows of another module's INSERT statement, on PostgreSQL: the caller runs them in its
        transaction, in the statement it writes its own rows with (`kit.db.Alongside`), both committed or neither."""
        return AuditRepository.stage_alongside([_outbox_text(self._fields(**entry)) for entry in entries])

    async def erase_personal(self, session: AsyncSession, actor_user_id: str, emails: Iterable[str]) -> int:
        """Erase (in `session`'s transaction) the personal fields of the chained entries `actor_user_id` made or
        that carry one of `emails` as actor email; returns how many entries. The chain still verifies:
        version-2 entries hash only a digest of those fields (version-1 entries keep theirs)."""
        return await AuditRepository(session).erase_personal(actor_user_id, builtins.list(emails))

    # --- chaining -------------------------------------------------------------------------------

    async def chain_batch(self, limit: int = DRAIN_BATCH, *, holder: str | None = None) -> int:
        """Chain up to `limit` staged entries, oldest first, in one transaction; returns how many.

        With `holder`, the transaction first renews that holder's lease (raising `LeaseLostError`
        when another chainer took it); the renewal locks the lease row until the commit, so the
        lease cannot change hands during the batch. Without it (tools, tests) the batch is still
        safe next to a running chainer: rows are claimed by deleting them, so each is chained once,
        and the UNIQUE ``prev_hash`` refuses a second row after the same head -- the loser rolls
        back (its rows return to the outbox) and retries, reading the outbox and the head again, up to
        `APPEND_RETRIES` times. A batch whose entries another chainer claimed first reads again without
        counting a retry: each time it does, that other chainer chained them.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        retries = 0
        while True:
            try:
                chained = await self._chain_batch(limit, holder)
            except _StaleBatchError:
                log.debug("audit_chain_batch_claimed_by_another")
                continue
            except IntegrityError:
                retries += 1
                if retries > APPEND_RETRIES:
                    raise
                log.warning("audit_chain_retry", retry=retries)
                continue
            if chained:
                AUDIT_ENTRIES_CHAINED.inc(chained)
            return chained

    async def _chain_batch(self, limit: int, holder: str | None) -> int:
        """Read the oldest staged entries and the head, hash them into chain rows, and only then write: renew the lease,
        claim exactly those entries, append the rows. The reading and the hashing (the batch's Python work, ~a third of
        it on SQLite) hold no lock; on SQLite the process's writer lock, which every order waits for, is held only for
        the writes. An entry claimed meanwhile raises `_StaleBatchError` (the batch is read again); a head that moved
        fails the append on the unique ``prev_hash`` (`IntegrityError`, likewise retried)."""
        async with self.database.session() as session:  # the primary: a replica's outbox and head may lag behind it
            repository = AuditRepository(session)
            staged = await repository.oldest_staged(limit)
            if not staged:
                return 0
            head = await repository.head_hash() or GENESIS_HASH
        rows, personal = await _chain_rows_yielding(head, [text for _, text in staged])
        now = self.clock.now()
        async with self.database.writing(), self._writes() as session:
            repository = AuditRepository(session)
            if self.database.dialect == "postgresql":
                # A chainer stopped mid-batch is ended by the server well before its lease lapses.
                await repository.bound_batch_waits(
                    lock_timeout_ms=round(self.lease_seconds * 250), idle_timeout_ms=round(self.lease_seconds * 500)
                )
            if holder is not None and not await repository.renew_lease(holder, now + timedelta(seconds=self.lease_seconds)):
                raise LeaseLostError(f"the audit chainer lease is no longer held by {holder}")
            if not await repository.claim([entry_id for entry_id, _ in staged]):
                raise _StaleBatchError
            await repository.append(rows, personal)
        return len(rows)

    def _writes(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """The session of a chainer's write transaction, held inside `Database.writing`. On SQLite the process's writer
        connection (`Database.writer_session`), whose statements run on the event loop's thread: on a pooled connection
        each statement hopped to a thread of its own and back, and under load each hop waited for the interpreter lock,
        so a batch held the writer lock, which every order waits for, ~4x as long (measured under 16 connections of
        orders: a batch 72 ms median on a pooled connection, 17 ms on this one; an order group 4-5 ms). On PostgreSQL,
        which has no process-wide writer lock, a pooled connection: the writer connection's session settings are made for
        the order desk's statements."""
        if self.database.dialect == "sqlite":
            return self.database.writer_session()
        return self.database.session()

    async def drain(self, limit: int = DRAIN_BATCH) -> int:
        """Chain up to `limit` staged entries now, in this process, without the lease (see `chain_batch`)."""
        return await self.chain_batch(limit)

    async def take_lease(self, holder: str) -> bool:
        """Become (or stay) the chainer: True when `holder` holds the lease for the next `lease_seconds`."""
        now = self.clock.now()
        try:
            async with self.database.writing(), self._writes() as session:
                repository = AuditRepository(session)
                if self.database.dialect == "postgresql":
                    await repository.bound_batch_waits(
                        lock_timeout_ms=round(self.lease_seconds * 250), idle_timeout_ms=round(self.lease_seconds * 500)
                    )
                await repository.ensure_lease_row(now)
                return await repository.take_lease(holder, now, now + timedelta(seconds=self.lease_seconds))
        except IntegrityError:
            return False  # another chainer created the lease row at the same moment; try again next time
        except DBAPIError as exc:
            if is_lock_timeout(exc):
                return False  # the leader is in the middle of a batch: it holds the lease
            raise

    async def has_staged(self) -> bool:
        """Whether any entry waits in the outbox (one indexed read)."""
        async with self.database.session() as session:
            return await AuditRepository(session).newest_staged_id() is not None

    async def lease_is_held(self) -> bool:
        """Whether a chainer holds a lease that has not lapsed (read on the primary: no lock, no wait)."""
        async with self.database.session() as session:
            lease = await AuditRepository(session).lease()
        return lease is not None and lease.holder is not None and lease.expires_at > self.clock.now()

    async def release_lease(self, holder: str) -> None:
        """Give the lease up (when stopping), so another chainer takes over at once."""
        async with self.database.session() as session:
            await AuditRepository(session).release_lease(holder, self.clock.now())

    async def backlog(self) -> tuple[int, float]:
        """Entries waiting in the outbox, and the age in seconds of the oldest (0 when none waits)."""
        async with self.database.session() as session:
            count, oldest = await AuditRepository(session).backlog()
        if oldest is None:
            return count, 0.0
        staged_at = datetime.fromisoformat(orjson.loads(oldest)["ts"])
        return count, max(0.0, (self.clock.now() - staged_at).total_seconds())

    async def settle(self, wait_seconds: float = 5.0) -> bool:
        """Wait until every entry committed to the outbox before the call is in the chain; False on timeout.

        While a chainer holds the lease this only watches the outbox (the leader chains). When the
        lease is free or has lapsed -- no chainer runs, e.g. in a CLI or after the leader died --
        this call takes the lease, chains the backlog itself and gives the lease back.
        """
        async with self.database.session() as session:
            newest = await AuditRepository(session).newest_staged_id()
        if newest is None:
            return True
        deadline = time.monotonic() + wait_seconds
        holder = new_holder_name("settle")
        while True:
            async with self.database.session() as session:
                if not await AuditRepository(session).any_staged_up_to(newest):
                    return True
            if not await self.lease_is_held() and await self.take_lease(holder):
                try:
                    while await self.chain_batch(DRAIN_BATCH, holder=holder) == DRAIN_BATCH:
                        pass
                except LeaseLostError:
                    pass
                finally:
                    await self.release_lease(holder)
                continue
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(SETTLE_POLL_SECONDS)

    # --- reading --------------------------------------------------------------------------------

    async def verify(self) -> VerifyReport:
        """Walk the chain in id order and report the first row that breaks it.

        Each row's hash must match its content, and its prev_hash must be the hash of the row
        before it (`GENESIS_HASH` for the first). That catches an edited row, a deleted row
        anywhere but at the end, and reordered rows. A version-2 row's personal fields must match
        the digest it hashes; a row whose personal fields were erased (retention) is counted in
        ``anonymised``, not reported.

        What it cannot catch from inside the table: deleting the NEWEST rows leaves a shorter
        chain that is still valid, and someone with write access who rewrites every row from an
        edit onwards (recomputing the hashes) leaves a valid chain too. So the report carries
        ``checked`` (rows that verified) and ``head_hash`` (hash of the last of them): record them
        somewhere the database's writers cannot reach (a ticket, a log shipper, another system)
        and compare them on the next run: the old head must still be in the chain, the count
        must not have shrunk. Entries still waiting in the outbox are not part of the chain yet
        (`backlog` counts them).

        Reads the primary, so replica lag cannot hide recent rows.
        """
        checked = anonymised = 0
        previous_id: int | None = None
        previous_hash = GENESIS_HASH
        async with (
            self.database.session() as session,
            aclosing(AuditRepository(session).iterate_in_order(VERIFY_BATCH_SIZE)) as entries,
        ):
            async for entry, personal in entries:
                problem = _chain_problem(entry, personal, previous_id, previous_hash)
                if problem is not None:
                    return VerifyReport(
                        ok=False,
                        checked=checked,
                        anonymised=anonymised,
                        head_hash=previous_hash if previous_id is not None else None,
                        first_bad_id=entry.id,
                        problem=problem,
                    )
                checked += 1
                anonymised += _is_anonymised(entry, personal)
                previous_id, previous_hash = entry.id, entry.hash
        return VerifyReport(
            ok=True, checked=checked, anonymised=anonymised, head_hash=previous_hash if previous_id is not None else None
        )

    async def list(
        self,
        *,
        limit: int = 100,
        before_id: int | None = None,
        action: str | None = None,
        actor_user_id: str | None = None,
        settle_seconds: float = LIST_SETTLE_SECONDS,
    ) -> builtins.list[AuditRecord]:
        """Entries newest first, on the read replica when one is configured.

        First waits (up to `settle_seconds`, see `settle`) for entries committed before the call to
        be chained, so a reader sees what just happened; past that it lists what is chained.
        Page with `before_id` (the smallest id of the previous page). Raises ValueError when
        `limit` is not between 1 and `MAX_LIST_LIMIT`.
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        if settle_seconds > 0:
            try:
                if not await self.settle(settle_seconds):
                    log.warning("audit_list_unsettled", seconds=settle_seconds)
            except DBAPIError as exc:  # reading must not fail because chaining did: list what is chained
                log.warning("audit_list_unsettled", error=f"{type(exc).__name__}: {exc}"[:300])
        async with self.database.read_session() as session:
            entries = await AuditRepository(session).list(
                limit=limit, before_id=before_id, action=action, actor_user_id=actor_user_id
            )
            # Inside the session: leaving it rolls back, which expires the loaded rows.
            return [to_record(entry, personal) for entry, personal in entries]


# --- the chainer ---------------------------------------------------------------------------------

OBSERVE_EVERY_SECONDS = 1.0
COALESCE_SECONDS = 0.25
"""After a tick that chained, how long the leader lets commits gather before the next (a dozen statements a tick).

A tick runs on the API process's event loop and, on SQLite, holds the writer lock the order desk
needs: with 0.02 s a stream of sequential orders (one every ~10 ms) got a tick every second or
third order, its statements costing about as much CPU as the desk's own and its transaction
delaying the next order's. A quarter second (the default idle interval) makes it one tick for
dozens of orders; the entries wait committed in the outbox meanwhile, off the request path."""


STOP_TICK_SECONDS = 5.0
"""How long `AuditChainer.stop` lets a tick under way finish before cancelling it."""


class AuditChainer:
    """Chains the outbox while it holds the lease; stands by (watching the backlog) while another does.

    One runs in every API process; the lease row makes one of them the leader. The leader wakes
    on `wake` (this process committed an entry) or every `interval` seconds (other processes'
    entries), chains everything waiting in batches of `batch_size`, and renews the lease in each
    batch. The others ignore `wake` and try to take the lease every quarter lease: a leader that died or stalled is
    replaced once its lease lapses, and on PostgreSQL a leader stopped inside a batch is ended by
    the server (idle-in-transaction timeout) so its rows return to the outbox.
    """

    def __init__(
        self,
        service: AuditService,
        *,
        batch_size: int = 500,
        interval: float = 0.25,
        holder: str | None = None,
    ) -> None:
        self.service = service
        self.batch_size = batch_size
        self.interval = interval
        self.holder = holder or new_holder_name()
        self.leading = False
        self._renewed_at = 0.0
        self._observed_at = 0.0
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Ask the chainer to look at the outbox now (after committing a staged entry). Never waits."""
        self._wake.set()

    async def tick(self, *, staged: bool = False) -> int:
        """Take or keep the lease, chain what waits if leading, refresh the backlog gauges; returns how many chained.

        `staged`: this process committed entries since the last tick (it was woken), so the outbox is
        not read first to find out."""
        lease = self.service.lease_seconds
        if not self.leading or time.monotonic() - self._renewed_at > lease / 2:
            self.leading = await self.service.take_lease(self.holder)
            if self.leading:
                self._renewed_at = time.monotonic()
        chained = 0
        if self.leading and (staged or await self.service.has_staged()):  # a read: an idle leader writes only to renew
            try:
                while True:
                    count = await self.service.chain_batch(self.batch_size, holder=self.holder)
                    self._renewed_at = time.monotonic()
                    chained += count
                    if count < self.batch_size:
                        break
            except LeaseLostError:
                log.warning("audit_chainer_lease_lost", holder=self.holder)
                self.leading = False
        AUDIT_CHAINER_LEADER.set(1 if self.leading else 0)
        if time.monotonic() - self._observed_at >= OBSERVE_EVERY_SECONDS:  # not after every batch: two more reads
            count, age = await self.service.backlog()
            AUDIT_OUTBOX_BACKLOG.set(count)
            AUDIT_OUTBOX_OLDEST_AGE.set(age)
            self._observed_at = time.monotonic()
        return chained

    async def run(self) -> None:
        """Tick until stopped; errors (database away, lock timeouts) are logged and retried at the next tick."""
        woken = False
        while not self._stop.is_set():
            chained = 0
            try:
                chained = await self.tick(staged=woken)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried at the next tick
                self.leading = False
                count_failure("audit_chainer", exc, "audit chainer tick failed; retrying")
            if not self.leading:  # commits here are the leader's to chain: only try for the lease, every quarter lease
                await wait_event(self._stop, self.service.lease_seconds / 4)
                self._wake.clear()
                continue
            if chained:  # let a stream of commits gather for a moment: one batch for many of them, not one each
                await wait_event(self._stop, COALESCE_SECONDS)
            woken = await wait_event(self._wake, self.interval)
            self._wake.clear()

    @property
    def running(self) -> bool:
        """Whether this chainer runs in the background of this process."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Run in the background of the current event loop (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="audit-chainer")

    async def stop(self) -> None:
        """Stop; if leading, chain what this process staged last, then hand the lease over.

        The loop is asked to stop after its current tick rather than cancelled inside it: a cancelled
        statement on SQLite leaves its connection's write lock behind until the pool is disposed, and the
        last tick below then waited out the busy timeout (seen: 15-20 s teardowns).
        """
        if self._task is not None:
            self._stop.set()
            self._wake.set()
            await asyncio.wait({self._task}, timeout=STOP_TICK_SECONDS)
            await stop_tasks([self._task], "audit chainer")
            self._task = None
            self._stop.clear()
        if self.leading:
            with contextlib.suppress(Exception):
                await self.tick()
            with contextlib.suppress(Exception):
                await self.service.release_lease(self.holder)
            self.leading = False
            AUDIT_CHAINER_LEADER.set(0)


CHAINER: Slot[AuditChainer] = Slot("audit.chainer")


def chainer_of(runtime: Runtime) -> AuditChainer:
    """This process's chainer (configured from the settings), created on first use; `start_audit_chainer` runs it."""

    def create() -> AuditChainer:
        settings = runtime.settings
        service = AuditService(runtime.database, runtime.clock, lease_seconds=settings.audit_chainer_lease_seconds)
        return AuditChainer(service, batch_size=settings.audit_chain_batch_size, interval=settings.audit_chain_interval_seconds)

    return runtime.components.get_or_create(CHAINER, create)


def wake_chainer(runtime: Runtime) -> None:
    """After committing staged entries: have this process's chainer (if it leads) chain them now. Never waits."""
    existing = runtime.components.get(CHAINER)
    if existing is not None:
        existing.wake()


async def after_commit(runtime: Runtime) -> None:
    """After committing staged entries: wake this process's chainer; a process that runs none settles instead.

    API processes run a chainer, so a request never waits. A process without one -- a CLI command,
    a script -- waits (up to `CLI_SETTLE_SECONDS`) until its entries are chained: by the leader of a
    running installation, or by itself when no chainer holds the lease. Past that they stay in the
    outbox, committed, for the next chainer.
    """
    existing = runtime.components.get(CHAINER)
    if existing is not None and existing.running:
        existing.wake()
        return
    if not await AuditService(runtime.database, runtime.clock).settle(wait_seconds=CLI_SETTLE_SECONDS):
        log.warning("audit_entries_left_in_outbox", seconds=CLI_SETTLE_SECONDS)


async def start_audit_chainer(runtime: Runtime) -> None:
    """Run this process's chainer in the background; `Runtime.close` stops it and hands the lease over."""
    chainer = chainer_of(runtime)
    chainer.start()
    runtime.closers.append(chainer.stop)
