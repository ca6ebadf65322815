"""SQL of the identity module."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select, update

from tradestack.kit.repository import Repository
from tradestack.models.identity import ApiKey, RecoveryCode, RefreshToken, User


class UserRepository(Repository):
    async def get(self, user_id: str) -> User | None:
        return await self.session.get(User, user_id)

    async def by_email(self, email: str) -> User | None:
        result = await self.session.execute(select(User).where(User.email == email.lower()))
        return result.scalar_one_or_none()

    async def add(self, user: User) -> User:
        self.session.add(user)
        await self.session.flush()
        return user

    async def list(self, *, limit: int, offset: int) -> Sequence[User]:
        result = await self.session.execute(select(User).order_by(User.created_at, User.id).limit(limit).offset(offset))
        return result.scalars().all()

    async def count(self) -> int:
        return int((await self.session.execute(select(func.count()).select_from(User))).scalar_one())

    async def claim_totp_step(self, user_id: str, step: int) -> bool:
        """Compare-and-set: record `step` as used only if it is later than the last one; True if it was."""
        result = await self.session.execute(
            update(User)
            .where(User.id == user_id, or_(User.mfa_last_step.is_(None), User.mfa_last_step < step))
            .values(mfa_last_step=step)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]

    async def count_admins(self) -> int:
        query = select(func.count()).select_from(User).where(User.role == "admin", User.is_active.is_(True))
        return int((await self.session.execute(query)).scalar_one())


class RefreshTokenRepository(Repository):
    async def add(self, token: RefreshToken) -> None:
        self.session.add(token)
        await self.session.flush()

    async def by_hash(self, token_hash: str) -> RefreshToken | None:
        query = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def mark_used(self, token_id: str, now: datetime) -> bool:
        """Compare-and-set: True only for the one caller that flips it from unused to used."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None), RefreshToken.revoked_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]

    async def _revoke(self, condition: ColumnElement[bool], now: datetime, reason: str) -> int:
        result = await self.session.execute(
            update(RefreshToken).where(condition, RefreshToken.revoked_at.is_(None)).values(revoked_at=now, revoked_reason=reason)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def family_revoked(self, family_id: str) -> bool:
        """True if any token of the family was revoked (logout, reuse, disabled user): its access tokens are dead too."""
        query = select(RefreshToken.id).where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_not(None)).limit(1)
        return (await self.session.execute(query)).first() is not None

    async def revoke_family(self, family_id: str, now: datetime, reason: str) -> int:
        return await self._revoke(RefreshToken.family_id == family_id, now, reason)

    async def revoke_user(self, user_id: str, now: datetime, reason: str) -> int:
        return await self._revoke(RefreshToken.user_id == user_id, now, reason)


class ApiKeyRepository(Repository):
    async def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        await self.session.flush()
        return key

    async def by_prefix(self, prefix: str) -> ApiKey | None:
        return (await self.session.execute(select(ApiKey).where(ApiKey.prefix == prefix))).scalar_one_or_none()

    async def get(self, key_id: str) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def of_user(self, user_id: str) -> Sequence[ApiKey]:
        query = select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at)
        return (await self.session.execute(query)).scalars().all()

    async def touch(self, key_id: str, now: datetime) -> None:
        await self.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))

    async def lock_keys_of(self, user_id: str) -> None:
        """Keep the user's keys as they are until this transaction ends: another transaction that calls this waits.

        A no-op update of the user's row: a row lock on PostgreSQL, the database's write lock on SQLite (the
        first write of the transaction), so a count of the keys stays true until this transaction inserts one.
        """
        statement = update(User).where(User.id == user_id).values(updated_at=User.updated_at)
        await self.session.execute(statement, execution_options={"synchronize_session": False})

    async def live_count(self, user_id: str, now: datetime) -> int:
        """How many of the user's keys work at ``now``: neither revoked nor expired."""
        query = (
            select(func.count())
            .select_from(ApiKey)
            .where(
                ApiKey.user_id == user_id,
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            )
        )
        return int((await self.session.execute(query)).scalar_one())


class RecoveryCodeRepository(Repository):
    async def replace(self, user_id: str, codes: list[RecoveryCode]) -> None:
        for old in (await self.session.execute(select(RecoveryCode).where(RecoveryCode.user_id == user_id))).scalars():
            await self.session.delete(old)
        await self.session.flush()
        self.session.add_all(codes)
        await self.session.flush()

    async def spend(self, user_id: str, code_hash: str, now: datetime) -> bool:
        """Compare-and-set: mark an unused code used; True only for the one caller that did."""
        result = await self.session.execute(
            update(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.code_hash == code_hash, RecoveryCode.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]

    async def remaining(self, user_id: str) -> int:
        query = (
            select(func.count()).select_from(RecoveryCode).where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        )
        return int((await self.session.execute(query)).scalar_one())
