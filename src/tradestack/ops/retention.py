"""`tradestack data retention`: prune fine-grained market data and anonymise long-deactivated users.

The policy comes from settings:

- ``retention_bar_days`` (resolution -> days): bars of that resolution older than that many days are
  deleted, but only where the same symbol has bars of a coarser resolution covering them (from
  the coarser series' first bar to the end of its last), so coarser history is kept and no
  period loses its last bars. Daily bars are never pruned.
- ``retention_anonymise_after_days``: a user deactivated (``is_active`` false) and unchanged for
  that many days has their personal data replaced: the email becomes
  ``anonymised-<id>@anonymised.invalid``, the password hash an unusable marker, MFA secrets are
  cleared, recovery codes deleted, API keys and refresh tokens revoked. The user row, its id,
  its trading accounts, orders, fills, journal and balances stay as they are, so the books and
  every invariant of `check integrity` are untouched. The personal fields (actor email, IP,
  User-Agent) of the audit entries the user made, or that carry their email (e.g. failed logins),
  are erased by deleting their ``audit_personal`` rows: the chain hashes only a salted digest of
  them, so it still verifies with the same head, and `AuditService.verify` counts those entries
  as anonymised. Each anonymisation stages a ``user.anonymised`` audit entry in the same
  transaction.

What stays personal: audit entries chained before migration ``i14b_a`` (hash version 1) hash the
actor email, IP and User-Agent themselves, so erasing them would break the chain; they stay until
those entries leave the audit log's own retention. The ``detail`` of entries is not scanned (it
holds no email or IP by convention, but nothing enforces that). Entries still waiting in the
outbox (not chained yet) keep their fields; the retention age makes that case theoretical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update

from tradestack.audit.service import AuditService
from tradestack.domain.marketdata import Timeframe
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import delete_bars
from tradestack.models.identity import ApiKey, RecoveryCode, RefreshToken, User
from tradestack.models.marketdata import BarRow as Bar

ANONYMOUS_DOMAIN = "anonymised.invalid"
UNUSABLE_PASSWORD = "!anonymised"  # noqa: S105 - not a PHC string: argon2 refuses it, so no password ever matches


@dataclass
class BarPrune:
    """Bars of one series deleted (or, in a dry run, that would be)."""

    symbol: str
    resolution: str
    before: datetime
    covered_by: str
    bars: int


@dataclass
class RetentionReport:
    """What `apply_retention` did (or would do, with ``dry_run``)."""

    dry_run: bool
    pruned: list[BarPrune] = field(default_factory=list)
    anonymised: list[str] = field(default_factory=list)
    audit_personal_erased: int = 0

    @property
    def bars(self) -> int:
        """Bars deleted in total."""
        return sum(prune.bars for prune in self.pruned)


def anonymous_email(user_id: str) -> str:
    """The email an anonymised user keeps: unique, and in a domain that can never receive mail."""
    return f"anonymised-{user_id}@{ANONYMOUS_DOMAIN}"


async def _prune_bars(runtime: Runtime, report: RetentionReport, now: datetime) -> None:
    policy = {Timeframe(resolution): days for resolution, days in runtime.settings.retention_bar_days.items()}
    async with runtime.database.session() as session:
        series = (
            await session.execute(
                select(Bar.symbol, Bar.resolution, func.min(Bar.ts), func.max(Bar.ts)).group_by(Bar.symbol, Bar.resolution)
            )
        ).all()
        by_symbol: dict[str, dict[Timeframe, tuple[datetime, datetime]]] = {}
        for symbol, resolution, first, last in series:
            by_symbol.setdefault(symbol, {})[Timeframe(resolution)] = (first, last)
        for symbol, present in sorted(by_symbol.items()):
            for resolution, days in sorted(policy.items(), key=lambda item: item[0].seconds):
                if resolution not in present or resolution is Timeframe.D1:
                    continue
                cutoff = now - timedelta(days=days)
                for coarser, (first, last) in sorted(present.items(), key=lambda item: -item[0].seconds):
                    if coarser.seconds <= resolution.seconds:
                        continue
                    end = min(cutoff, last + coarser.delta)
                    count = await delete_bars(session, symbol, resolution, first, end, dry_run=report.dry_run)
                    if count:
                        report.pruned.append(BarPrune(symbol, resolution.value, cutoff, coarser.value, count))
        if report.dry_run:
            await session.rollback()


async def _anonymise_users(runtime: Runtime, report: RetentionReport, now: datetime) -> None:
    days = runtime.settings.retention_anonymise_after_days
    audit = AuditService(runtime.database, runtime.clock)
    async with runtime.database.session() as session:
        due = (
            await session.scalars(
                select(User.id)
                .where(
                    User.is_active.is_(False),
                    User.updated_at < now - timedelta(days=days),
                    User.email.not_like(f"%@{ANONYMOUS_DOMAIN}"),
                )
                .order_by(User.id)
            )
        ).all()
        report.anonymised = list(due)
        if report.dry_run or not due:
            await session.rollback()
            return
        emails = {row[0]: row[1] for row in await session.execute(select(User.id, User.email).where(User.id.in_(due)))}
        for user_id in due:
            report.audit_personal_erased += await audit.erase_personal(session, user_id, [emails[user_id]])
            await session.execute(
                update(User)
                .where(User.id == user_id)
                .values(
                    email=anonymous_email(user_id), password_hash=UNUSABLE_PASSWORD, mfa_enabled=False, mfa_secret=None,
                    mfa_pending_secret=None, mfa_last_step=None, must_change_password=False, updated_at=now,
                )
            )  # fmt: skip
            await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
            await session.execute(
                update(ApiKey).where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
            )
            await session.execute(
                update(RefreshToken)
                .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason="user anonymised")
            )
            await audit.stage(
                session,
                action="user.anonymised",
                outcome="success",
                target=f"user:{user_id}",
                detail={"policy": "retention", "after_days": days},
            )
    for user_id in due:
        await runtime.cache.delete(f"auth:user:{user_id}")


async def apply_retention(runtime: Runtime, *, dry_run: bool = False) -> RetentionReport:
    """Apply the retention policy of `runtime.settings` (each part in its own transaction)."""
    report = RetentionReport(dry_run=dry_run)
    now = runtime.clock.now()
    await _prune_bars(runtime, report, now)
    await _anonymise_users(runtime, report, now)
    return report
