"""Identity: users, accounts, login with lockout and MFA, token rotation, API keys, admin actions.

Services flush; whoever opened the session commits (`identity_session` for requests and the
CLI). Audit entries are buffered and staged in audit's outbox at the end of that transaction,
in it: they commit with the change they describe, so a crash after the commit loses none. When
the transaction rolls back, entries about refusals are staged in a transaction of their own
afterwards (a refused sign-in answers 401 and rolls back, yet is recorded) and entries about
something that happened ("success") are dropped with it. Staging after the rollback also keeps
SQLite's single writer free of a second, waiting transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tradestack.audit.service import AuditService, after_commit
from tradestack.core.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ValidationFailedError,
)
from tradestack.identity import totp
from tradestack.identity.passwords import Passwords
from tradestack.identity.permissions import Permission, Role, Scope, permissions_of, scopes_allowed
from tradestack.identity.repository import (
    ApiKeyRepository,
    RecoveryCodeRepository,
    RefreshTokenRepository,
    UserRepository,
)
from tradestack.identity.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    MfaChallenge,
    MfaEnabled,
    MfaSetup,
    TokenPair,
)
from tradestack.identity.sessions import RecentPrincipals, VerifiedTokens
from tradestack.identity.tokens import (
    InvalidTokenError,
    TokenClaims,
    TokenSigner,
    digest,
    new_api_key,
    new_opaque_secret,
    same_digest,
    split_api_key,
)
from tradestack.kit.aio import stop_tasks
from tradestack.kit.config import ENV_PREFIX
from tradestack.kit.logging import get_logger
from tradestack.kit.metrics import AUTH_FAILURES, USER_LOGINS
from tradestack.kit.outages import CACHE_ERRORS, count_outage
from tradestack.kit.runtime import Runtime, Slot
from tradestack.models.identity import ApiKey, RecoveryCode, RefreshToken, User

log = get_logger(__name__)
WRONG_CREDENTIALS = "email or password is wrong"
USER_CACHE_SECONDS = 30.0
KEY_TOUCH_SECONDS = 60


@dataclass(frozen=True)
class Principal:
    """Who is calling and what they may do."""

    user_id: str
    email: str
    role: Role
    permissions: frozenset[Permission]
    api_key_id: str | None = None
    token_id: str | None = None
    token_expires_at: datetime | None = None
    family_id: str | None = None  # the sign-in (refresh-token family) of a bearer token
    password_change_required: bool = False
    """Signed in with a temporary password: only the profile (and changing the password) is allowed."""

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions


@dataclass(frozen=True)
class Caller:
    """Where a request comes from, for the audit log and per-IP limits."""

    ip: str | None = None
    user_agent: str | None = None


@dataclass
class IdentityComponents:
    """Per-process objects: the password hasher (with its semaphore), the token signer and the request path's memory."""

    passwords: Passwords
    signer: TokenSigner
    tokens: VerifiedTokens
    principals: RecentPrincipals[Principal]
    keys: RecentPrincipals[RememberedKey] = field(default_factory=RecentPrincipals)
    """What an API key (by its digest) resolved to, reused like `principals`: revoking the key, or a change to its
    owner, reaches this process at once when made here and within `PRINCIPAL_REUSE_SECONDS` when made elsewhere."""


@dataclass(frozen=True, slots=True)
class RememberedKey:
    """An API key as it resolved moments ago: its principal, and until when the key is valid (None: no expiry)."""

    principal: Principal
    expires_at: datetime | None


IDENTITY: Slot[IdentityComponents] = Slot("identity")


def components(runtime: Runtime) -> IdentityComponents:
    """The identity components of this process, created on first use."""

    def create() -> IdentityComponents:
        signer = TokenSigner(runtime.settings)
        return IdentityComponents(Passwords(runtime.settings), signer, VerifiedTokens(signer), RecentPrincipals())

    return runtime.components.get_or_create(IDENTITY, create)


def remembered_api_key(runtime: Runtime, value: str, now: datetime) -> Principal | None:
    """The principal this process resolved the API key ``value`` to moments ago, unless it has expired since; no I/O."""
    remembered = components(runtime).keys.get(digest(value))
    if remembered is None or (remembered.expires_at is not None and remembered.expires_at <= now):
        return None  # the full check answers, in its words
    return remembered.principal


def revoked_key(token_id: str) -> str:
    """Cache key set by a logout: this access token is refused until it would have expired."""
    return f"auth:revoked:{token_id}"


def user_state_key(user_id: str) -> str:
    """Cache key of a user's state as authentication needs it (`USER_CACHE_SECONDS`)."""
    return f"auth:user:{user_id}"


def principal_of(claims: TokenClaims, state: dict[str, Any] | None) -> Principal:
    """Who a verified access token speaks for, given its user's state; `AuthenticationError` if nobody any more."""
    if state is None or not state["active"]:
        raise AuthenticationError("this user is disabled or no longer exists")
    generation = claims.extra.get("gen", 0)
    if not isinstance(generation, int) or generation < state.get("generation", 0):
        raise AuthenticationError("access token was revoked by a password change or reset: sign in again")
    family = claims.extra.get("fam")
    family_id = family if isinstance(family, str) else None
    role = Role(state["role"])
    if state.get("must_change"):
        return Principal(
            claims.subject,
            state["email"],
            role,
            frozenset({Permission.PROFILE}),
            None,
            claims.token_id,
            claims.expires_at,
            family_id,
            password_change_required=True,
        )
    return Principal(
        claims.subject, state["email"], role, permissions_of(role), None, claims.token_id, claims.expires_at, family_id
    )


def normalise_email(email: str) -> str:
    return email.strip().lower()


class IdentityService:
    """Everything about who a caller is."""

    def __init__(self, session: AsyncSession, runtime: Runtime, caller: Caller | None = None) -> None:
        self.session = session
        self.caller = caller or Caller()
        self.runtime = runtime
        self.settings = runtime.settings
        self.clock = runtime.clock
        parts = components(runtime)
        self.passwords = parts.passwords
        self.signer = parts.signer
        self.audit = AuditService(runtime.database, runtime.clock)
        self.pending_audit: list[tuple[bool, dict[str, Any]]] = []  # (only if committed, entry)
        self.staged_refusals: list[dict[str, Any]] = []  # staged in the transaction; restaged if it rolls back
        self.staged_any = False
        self.after_end: list[Any] = []
        self.users = UserRepository(session)
        self.refresh_tokens = RefreshTokenRepository(session)
        self.api_keys = ApiKeyRepository(session)
        self.recovery_codes = RecoveryCodeRepository(session)

    # --- users and accounts -------------------------------------------------------------

    async def create_user(self, email: str, password: str, role: Role, *, actor: Principal | None = None) -> User:
        email = normalise_email(email)
        problems = self.passwords.problems(password)
        if problems:
            raise ValidationFailedError("; ".join(problems))
        if await self.users.by_email(email) is not None:
            raise ConflictError(f"a user with email {email} already exists")
        now = self.clock.now()
        user = User(
            id=str(uuid.uuid4()),
            email=email,
            password_hash=await self.passwords.hash(password),
            role=role.value,
            is_active=True,
            mfa_enabled=False,
            created_at=now,
            updated_at=now,
        )
        try:
            await self.users.add(user)
        except IntegrityError as exc:
            raise ConflictError(f"a user with email {email} already exists") from exc
        # No email in the detail: the chain hashes the detail, and retention must be able to erase a
        # user's email (it can erase the actor fields, which the chain covers by digest only).
        await self._audit("user.created", "success", actor, target=f"user:{user.id}", detail={"role": role.value})
        return user

    async def list_users(self, *, limit: int, offset: int) -> list[User]:
        return list(await self.users.list(limit=limit, offset=offset))

    async def get_user(self, user_id: str) -> User:
        user = await self.users.get(user_id)
        if user is None:
            raise NotFoundError(f"no user with id {user_id}")
        return user

    async def update_user(self, user_id: str, *, role: Role | None, is_active: bool | None, actor: Principal) -> User:
        user = await self.get_user(user_id)
        if user.id == actor.user_id and (is_active is False or (role is not None and role != Role.ADMIN)):
            raise ConflictError("you cannot disable yourself or remove your own admin role; ask another admin")
        demoting = is_active is False or (role is not None and role != Role.ADMIN)
        if user.role == Role.ADMIN and demoting and await self.users.count_admins() <= 1:
            raise ConflictError("this is the last active admin; make another admin first")
        now = self.clock.now()
        if role is not None and role.value != user.role:
            await self._audit(
                "user.role_changed", "success", actor, target=f"user:{user.id}", detail={"from": user.role, "to": role.value}
            )
            user.role = role.value
        if is_active is not None and is_active != user.is_active:
            user.is_active = is_active
            if not is_active:
                await self.refresh_tokens.revoke_user(user.id, now, "user disabled")
            await self._audit("user.disabled" if not is_active else "user.enabled", "success", actor, target=f"user:{user.id}")
        user.updated_at = now
        await self.session.flush()
        await self._forget_user_state(user.id)
        return user

    async def reset_mfa(self, user_id: str, *, actor: Principal) -> User:
        user = await self.get_user(user_id)
        user.mfa_enabled = False
        user.mfa_secret = None
        user.mfa_pending_secret = None
        user.mfa_last_step = None
        user.updated_at = self.clock.now()
        await self.recovery_codes.replace(user.id, [])
        await self._audit("mfa.reset", "success", actor, target=f"user:{user.id}")
        return user

    @staticmethod
    def _limits(spec: str) -> list[str]:
        return [part.strip() for part in spec.split(";") if part.strip()]

    async def _count_attempt(self, email: str, caller: Caller) -> None:
        """Count a sign-in attempt BEFORE checking the password; 429 once a window is full.

        Counting first (an atomic hit) bounds how many attempts can reach argon2 even when a
        burst arrives concurrently; a successful sign-in resets the account's windows.
        """
        limiter = self.runtime.rate_limiter
        checks = [(limit, "email", email) for limit in self._limits(self.settings.login_failure_limits)]
        if caller.ip not in self.settings.rate_limit_exempt_ips:  # a load-test generator's address is exempt
            checks += [(limit, "ip", caller.ip or "unknown") for limit in self._limits(self.settings.login_ip_limits)]
        for limit, kind, value in checks:
            state = await limiter.hit(limit, "login-attempts", kind, value)
            if not state.allowed:
                retry = max(1, int(state.reset_after_seconds + 0.999))
                USER_LOGINS.labels(result="locked").inc()
                await self._audit(
                    "auth.login", "denied", None, caller=caller, actor_email=email, detail={"reason": f"locked by {kind}"}
                )
                raise RateLimitedError(f"too many sign-in attempts: try again in {retry} s", headers={"Retry-After": str(retry)})

    async def _reset_attempts(self, email: str) -> None:
        for limit in self._limits(self.settings.login_failure_limits):
            await self.runtime.rate_limiter.clear(limit, "login-attempts", "email", email)

    async def login(self, email: str, password: str, caller: Caller) -> TokenPair | MfaChallenge:
        email = normalise_email(email)
        await self._count_attempt(email, caller)
        user = await self.users.by_email(email)
        valid = await self.passwords.verify(user.password_hash if user else None, password)
        if user is None or not valid or not user.is_active:
            reason = "unknown email" if user is None else ("wrong password" if not valid else "user disabled")
            USER_LOGINS.labels(result="failure").inc()
            AUTH_FAILURES.labels(reason="login").inc()
            await self._audit("auth.login", "failure", None, caller=caller, actor_email=email, detail={"reason": reason})
            raise AuthenticationError(WRONG_CREDENTIALS)
        if self.passwords.needs_rehash(user.password_hash):
            user.password_hash = await self.passwords.hash(password)
            await self.session.flush()
        if not user.mfa_enabled:
            await self._reset_attempts(email)
        if user.mfa_enabled:
            token, _ = self.signer.issue(user.id, "mfa", self.clock.now(), self.settings.mfa_token_ttl_seconds)
            USER_LOGINS.labels(result="mfa_required").inc()
            await self._audit("auth.login", "success", self._principal_of(user), caller=caller, detail={"mfa": "required"})
            return MfaChallenge(mfa_token=token, expires_in=self.settings.mfa_token_ttl_seconds)
        USER_LOGINS.labels(result="success").inc()
        await self._audit("auth.login", "success", self._principal_of(user), caller=caller)
        return await self._issue_pair(user, family_id=None)

    async def verify_mfa(self, mfa_token: str, code: str, caller: Caller) -> TokenPair:
        try:
            claims = self.signer.decode(mfa_token, "mfa", self.clock.now())
        except InvalidTokenError as exc:
            AUTH_FAILURES.labels(reason="mfa_token").inc()
            raise AuthenticationError("the MFA token is invalid or expired: sign in again") from exc
        user = await self.users.get(claims.subject)
        if user is None or not user.is_active or not user.mfa_enabled:
            raise AuthenticationError("the MFA token is invalid or expired: sign in again")
        await self._count_attempt(user.email, caller)
        if not await self._accept_second_factor(user, code):
            AUTH_FAILURES.labels(reason="mfa_code").inc()
            USER_LOGINS.labels(result="mfa_failure").inc()
            await self._audit("auth.mfa", "failure", self._principal_of(user), caller=caller)
            raise AuthenticationError("the code is wrong or was already used")
        used_key = f"auth:mfa-token-used:{claims.token_id}"
        if not await self.runtime.cache.add(used_key, b"1", ttl_seconds=self.settings.mfa_token_ttl_seconds + 60):
            raise AuthenticationError("this MFA token was already used: sign in again")
        await self._reset_attempts(user.email)
        USER_LOGINS.labels(result="success").inc()
        await self._audit("auth.mfa", "success", self._principal_of(user), caller=caller)
        return await self._issue_pair(user, family_id=None)

    async def _accept_second_factor(self, user: User, code: str) -> bool:
        """A TOTP code for a step not used before, or an unused recovery code (which is then spent).

        Both are compare-and-set updates, so of concurrent requests with one code exactly one wins
        (the row lock is held until this request's transaction ends).
        """
        code = code.strip()
        if code.isdigit() and user.mfa_secret:
            step = totp.matching_step(user.mfa_secret, code, self.clock.now(), after_step=user.mfa_last_step)
            return step is not None and await self.users.claim_totp_step(user.id, step)
        return await self.recovery_codes.spend(user.id, totp.hash_recovery_code(code), self.clock.now())

    async def _issue_pair(self, user: User, *, family_id: str | None) -> TokenPair:
        now = self.clock.now()
        family_id = family_id or str(uuid.uuid4())
        # The access token names its sign-in (refresh family): revoking the family in the database
        # revokes it too, which is what authentication checks while Redis is away.
        # It also names the user's session generation: a password change or reset moves that on, revoking it.
        access, _ = self.signer.issue(
            user.id, "access", now, self.settings.access_token_ttl_seconds, fam=family_id, gen=user.session_generation
        )
        refresh = new_opaque_secret()
        await self.refresh_tokens.add(
            RefreshToken(
                id=str(uuid.uuid4()),
                family_id=family_id,
                user_id=user.id,
                token_hash=digest(refresh),
                issued_at=now,
                expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
            )
        )
        return TokenPair(access_token=access, refresh_token=refresh, expires_in=self.settings.access_token_ttl_seconds)

    async def refresh(self, refresh_token: str, caller: Caller) -> TokenPair:
        now = self.clock.now()
        stored = await self.refresh_tokens.by_hash(digest(refresh_token))
        if stored is None:
            AUTH_FAILURES.labels(reason="refresh_unknown").inc()
            raise AuthenticationError("refresh token is not valid: sign in again")
        if stored.revoked_at is not None and stored.used_at is None:
            raise AuthenticationError("refresh token was revoked: sign in again")
        if stored.expires_at <= now:
            raise AuthenticationError("refresh token has expired: sign in again")
        # Mark it used atomically: of two concurrent refreshes with one token, exactly one wins.
        if stored.used_at is not None or not await self.refresh_tokens.mark_used(stored.id, now):
            # A rotated token came back: it was stolen, or the client is broken. Kill the whole family
            # once this request's transaction has ended (the request fails with 401 and rolls back).
            family_id = stored.family_id
            self.after_end.append(lambda: self._revoke_family_now(family_id, "rotated token reused"))
            AUTH_FAILURES.labels(reason="refresh_reuse").inc()
            reuse = {"family": family_id, "user_id": stored.user_id}
            await self._audit("auth.refresh_reuse", "denied", None, caller=caller, detail=reuse)
            raise AuthenticationError("refresh token was already used: every session of this sign-in is revoked, sign in again")
        user = await self.users.get(stored.user_id)
        if user is None or not user.is_active:
            raise AuthenticationError("refresh token is not valid: sign in again")
        return await self._issue_pair(user, family_id=stored.family_id)

    async def _revoke_family_now(self, family_id: str, reason: str) -> None:
        async with self.runtime.database.session() as session:
            await RefreshTokenRepository(session).revoke_family(family_id, self.clock.now(), reason)

    async def logout(self, principal: Principal, refresh_token: str | None, caller: Caller) -> None:
        now = self.clock.now()
        if refresh_token:
            stored = await self.refresh_tokens.by_hash(digest(refresh_token))
            if stored is not None and stored.user_id == principal.user_id:
                await self.refresh_tokens.revoke_family(stored.family_id, now, "logout")
        if principal.family_id:
            await self.refresh_tokens.revoke_family(principal.family_id, now, "logout")
        if principal.token_id and principal.token_expires_at:
            remaining = (principal.token_expires_at - now).total_seconds()
            if remaining > 0:
                try:
                    await self.runtime.cache.set(revoked_key(principal.token_id), b"1", ttl_seconds=remaining + 5)
                except CACHE_ERRORS as exc:  # the family revoked above refuses the token meanwhile
                    count_outage("cache", "logout", exc)
            components(self.runtime).principals.forget_token(principal.token_id)  # at once on this process
        await self._audit("auth.logout", "success", principal, caller=caller)

    # --- authenticating requests -----------------------------------------------------------

    async def _user_state(
        self, user_id: str, cached: bytes | None = None, *, use_cache: bool = True, read: bool = False
    ) -> dict[str, Any] | None:
        """The user's state from ``cached`` (what the caller read: ``read``), else the cache, else the database."""
        key = user_state_key(user_id)
        if cached is None and use_cache and not read:
            try:
                cached = await self.runtime.cache.get(key)
            except CACHE_ERRORS as exc:
                count_outage("cache", "auth", exc)
                use_cache = False
        if cached is not None:
            state: dict[str, Any] = orjson.loads(cached)
            return state
        user = await self.users.get(user_id)
        if user is None:
            return None
        state = {
            "email": user.email,
            "role": user.role,
            "active": user.is_active,
            "must_change": user.must_change_password,
            "generation": user.session_generation,
        }
        if use_cache:
            with contextlib.suppress(*CACHE_ERRORS):
                await self.runtime.cache.set(key, orjson.dumps(state), ttl_seconds=USER_CACHE_SECONDS)
        return state

    async def authenticate_bearer(self, token: str, *, prefetched: list[bytes | None] | None = None) -> Principal:
        """The principal of an access token: verified (remembered until it expires), not revoked, its user active.

        ``prefetched`` is [revoked marker, cached user state] when the caller already read both
        keys (the rate-limit middleware does, in the same Redis round trip as the limits).
        """
        now = self.clock.now()
        parts = components(self.runtime)
        try:
            claims = parts.tokens.verify(token, "access", now)
        except InvalidTokenError as exc:
            AUTH_FAILURES.labels(reason="bad_token").inc()
            log.info("token_refused", reason=str(exc))
            raise AuthenticationError("access token is invalid or expired: refresh it or sign in again") from exc
        recent = parts.principals.get(claims.token_id)
        if recent is not None:
            return recent
        family = claims.extra.get("fam")
        family_id = family if isinstance(family, str) else None
        try:
            # One round trip for both: is this token revoked, and the user's cached state.
            revoked, cached_state = prefetched or await self.runtime.cache.get_many(
                [revoked_key(claims.token_id), user_state_key(claims.subject)]
            )
        except CACHE_ERRORS as exc:
            # Degraded: the database answers both (a logout revoked the token's family there).
            count_outage("cache", "auth", exc)
            if family_id is None or await self.refresh_tokens.family_revoked(family_id):
                raise AuthenticationError("access token was revoked by logout: sign in again") from exc
            state = await self._user_state(claims.subject, use_cache=False)
        else:
            if revoked is not None:
                raise AuthenticationError("access token was revoked by logout: sign in again")
            state = await self._user_state(claims.subject, cached_state, read=True)
        principal = principal_of(claims, state)
        parts.principals.put(claims.token_id, claims.subject, principal)
        return principal

    async def authenticate_api_key(self, value: str) -> Principal:
        """The principal of an API key: valid, not revoked, not expired, its owner active; remembered for
        `PRINCIPAL_REUSE_SECONDS` (see `IdentityComponents.keys`)."""
        now = self.clock.now()
        principal = remembered_api_key(self.runtime, value, now)
        if principal is not None:
            return principal
        prefix = split_api_key(value)
        key = await self.api_keys.by_prefix(prefix) if prefix else None
        if key is None or not same_digest(value, key.secret_hash):
            AUTH_FAILURES.labels(reason="bad_api_key").inc()
            raise AuthenticationError("API key is not valid")
        if key.revoked_at is not None:
            raise AuthenticationError("API key was revoked")
        if key.expires_at is not None and key.expires_at <= now:
            raise AuthenticationError("API key has expired: create a new one")
        state = await self._user_state(key.user_id)
        if state is None or not state["active"]:
            raise AuthenticationError("the owner of this API key is disabled")
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() >= KEY_TOUCH_SECONDS:
            async with self.runtime.database.session() as session:
                await ApiKeyRepository(session).touch(key.id, now)
        role = Role(state["role"])
        scopes = frozenset(Scope(scope) for scope in key.scopes.split(",") if scope)
        if state.get("must_change"):
            principal = Principal(key.user_id, state["email"], role, frozenset(), key.id, password_change_required=True)
        else:
            principal = Principal(key.user_id, state["email"], role, permissions_of(role, scopes), key.id)
        components(self.runtime).keys.put(digest(value), key.user_id, RememberedKey(principal, key.expires_at))
        return principal

    async def acting_principal(self, user_id: str) -> Principal:
        """Who the user's own automation (a deployed strategy) acts as now: the user's current role.

        `AuthenticationError` when the user is disabled or gone, so an admin disabling a user stops
        their strategies' orders at once (the state is cached as for bearer tokens and forgotten on
        every change). A user who must change their password acts with no trading permission.
        """
        state = await self._user_state(user_id)
        if state is None or not state["active"]:
            raise AuthenticationError(f"the owner {user_id} is disabled or no longer exists")
        role = Role(state["role"])
        if state.get("must_change"):
            return Principal(user_id, state["email"], role, frozenset({Permission.PROFILE}), password_change_required=True)
        return Principal(user_id, state["email"], role, permissions_of(role))

    # --- passwords -----------------------------------------------------------------------

    async def change_password(self, principal: Principal, current: str, new: str) -> TokenPair:
        """Replace your password (the current one, temporary or not, proves it is you).

        Every refresh token of the user is revoked, so other sessions end when their access token
        expires; the caller gets a fresh token pair to carry on with.
        """
        if principal.api_key_id is not None:
            raise PermissionDeniedError("an API key cannot change a password: sign in with your password")
        user = await self._user_of(principal)
        await self._count_attempt(user.email, self.caller)  # the same lockout as sign-in guards guessing here
        if not await self.passwords.verify(user.password_hash, current):
            AUTH_FAILURES.labels(reason="password_change").inc()
            await self._audit(
                "auth.password_change", "failure", principal, target=f"user:{user.id}", detail={"reason": "wrong password"}
            )
            raise ValidationFailedError("current_password is wrong: give the password you signed in with")
        await self._reset_attempts(user.email)
        problems = self.passwords.problems(new)
        if new == current:
            problems.append("the new password must differ from the current one")
        if problems:
            raise ValidationFailedError("; ".join(problems))
        now = self.clock.now()
        user.password_hash = await self.passwords.hash(new)
        user.must_change_password = False
        user.session_generation += 1  # every access token issued before now is refused
        user.updated_at = now
        revoked = await self.refresh_tokens.revoke_user(user.id, now, "password changed")
        await self.session.flush()
        await self._forget_user_state(user.id)
        await self._audit(
            "auth.password_change", "success", principal, target=f"user:{user.id}", detail={"sessions_revoked": revoked}
        )
        return await self._issue_pair(user, family_id=None)

    async def reset_password(self, user_id: str, *, actor: Principal | None) -> str:
        """Give a user a one-time temporary password (returned once) that must be changed at next sign-in.

        Every session and refresh token of the user is revoked; `actor` None means the CLI.
        """
        user = await self.get_user(user_id)
        temporary = new_opaque_secret()[:24]
        now = self.clock.now()
        user.password_hash = await self.passwords.hash(temporary)
        user.must_change_password = True
        user.session_generation += 1  # every access token issued before now is refused
        user.updated_at = now
        await self.refresh_tokens.revoke_user(user.id, now, "password reset")
        await self.session.flush()
        await self._forget_user_state(user.id)
        await self._reset_attempts(user.email)
        await self._audit(
            "auth.password_reset", "success", actor, target=f"user:{user.id}", detail={"by": "admin" if actor else "cli"}
        )
        return temporary

    async def _forget_user_state(self, user_id: str) -> None:
        """Drop the user's cached state everywhere, and what this process remembers of their tokens (at once here).

        Done now and again once the transaction has ended: a request resolving the user in between
        still reads the old committed state and could remember it.
        """

        async def forget() -> None:
            await self.runtime.cache.delete(user_state_key(user_id))
            parts = components(self.runtime)
            parts.principals.forget_user(user_id)
            parts.keys.forget_user(user_id)

        await forget()
        self.after_end.append(forget)

    def _forget_keys_of(self, user_id: str) -> None:
        """Drop what this process remembers of the user's API keys, now and again once the transaction has ended
        (a request resolving a key in between still reads the committed row and could remember it)."""

        async def forget() -> None:
            components(self.runtime).keys.forget_user(user_id)

        components(self.runtime).keys.forget_user(user_id)
        self.after_end.append(forget)

    async def user_by_email(self, email: str) -> User:
        user = await self.users.by_email(normalise_email(email))
        if user is None:
            raise NotFoundError(f"no user with email {normalise_email(email)}")
        return user

    # --- MFA -----------------------------------------------------------------------------

    async def _user_of(self, principal: Principal) -> User:
        user = await self.users.get(principal.user_id)
        if user is None:
            raise AuthenticationError("this user no longer exists")
        return user

    async def mfa_setup(self, principal: Principal) -> MfaSetup:
        user = await self._user_of(principal)
        if user.mfa_enabled:
            raise ConflictError("MFA is already enabled: disable it first to set up a new authenticator")
        secret = totp.new_secret()
        user.mfa_pending_secret = secret
        user.updated_at = self.clock.now()
        await self.session.flush()
        uri = totp.provisioning_uri(secret, user.email)
        await self._audit("mfa.setup", "success", principal)
        return MfaSetup(otpauth_uri=uri, qr_png=totp.qr_png_data_uri(uri))

    async def mfa_enable(self, principal: Principal, code: str) -> MfaEnabled:
        user = await self._user_of(principal)
        if user.mfa_enabled:
            raise ConflictError("MFA is already enabled")
        if not user.mfa_pending_secret:
            raise ConflictError("start with POST /api/auth/mfa/setup")
        step = totp.matching_step(user.mfa_pending_secret, code.strip(), self.clock.now(), after_step=None)
        if step is None:
            await self._audit("mfa.enable", "failure", principal)
            raise ValidationFailedError("the code does not match: check the authenticator's clock and try the current code")
        codes = totp.new_recovery_codes()
        user.mfa_secret, user.mfa_pending_secret = user.mfa_pending_secret, None
        user.mfa_enabled = True
        user.mfa_last_step = step
        user.updated_at = self.clock.now()
        await self.recovery_codes.replace(
            user.id, [RecoveryCode(id=str(uuid.uuid4()), user_id=user.id, code_hash=totp.hash_recovery_code(c)) for c in codes]
        )
        await self._audit("mfa.enabled", "success", principal)
        return MfaEnabled(recovery_codes=codes)

    async def mfa_disable(self, principal: Principal, code: str) -> None:
        user = await self._user_of(principal)
        if not user.mfa_enabled:
            raise ConflictError("MFA is not enabled")
        if not await self._accept_second_factor(user, code):
            await self._audit("mfa.disable", "failure", principal)
            raise AuthenticationError("the code is wrong or was already used")
        user.mfa_enabled = False
        user.mfa_secret = None
        user.mfa_last_step = None
        user.updated_at = self.clock.now()
        await self.recovery_codes.replace(user.id, [])
        await self._audit("mfa.disabled", "success", principal)

    # --- API keys ------------------------------------------------------------------------

    @staticmethod
    def _key_out(key: ApiKey) -> dict[str, Any]:
        return {
            "id": key.id,
            "name": key.name,
            "prefix": key.prefix,
            "scopes": [Scope(s) for s in key.scopes.split(",") if s],
            "created_at": key.created_at,
            "expires_at": key.expires_at,
            "revoked_at": key.revoked_at,
            "last_used_at": key.last_used_at,
        }

    async def create_api_key(self, principal: Principal, body: ApiKeyCreate) -> ApiKeyCreated:
        allowed = scopes_allowed(principal.role)
        refused = sorted(scope.value for scope in body.scopes if scope not in allowed)
        if refused:
            raise PermissionDeniedError(
                f"your role {principal.role.value} cannot grant scope(s) {', '.join(refused)}; allowed: "
                + ", ".join(sorted(s.value for s in allowed))
            )
        now = self.clock.now()
        if body.expires_at is not None and body.expires_at <= now:
            raise ValidationFailedError("expires_at must be in the future")
        await self.api_keys.lock_keys_of(principal.user_id)  # two creations at once cannot both pass the count
        held = await self.api_keys.live_count(principal.user_id, now)
        most = self.runtime.settings.max_api_keys_per_user
        if held >= most:
            raise ConflictError(
                f"you have {held} API keys, the most one user may hold ({ENV_PREFIX}MAX_API_KEYS_PER_USER={most}): "
                "revoke one you no longer use with DELETE /api/keys/{id} (GET /api/keys lists them) and create this one "
                "again; revoked and expired keys do not count"
            )
        secret, prefix = new_api_key()
        key = await self.api_keys.add(
            ApiKey(
                id=str(uuid.uuid4()),
                user_id=principal.user_id,
                name=body.name,
                prefix=prefix,
                secret_hash=digest(secret),
                scopes=",".join(sorted({scope.value for scope in body.scopes})),
                created_at=now,
                expires_at=body.expires_at,
            )
        )
        await self._audit("api_key.created", "success", principal, target=f"api_key:{key.id}", detail={"scopes": key.scopes})
        return ApiKeyCreated(key=secret, **self._key_out(key))

    async def list_api_keys(self, principal: Principal) -> list[ApiKeyOut]:
        return [ApiKeyOut(**self._key_out(key)) for key in await self.api_keys.of_user(principal.user_id)]

    async def revoke_api_key(self, principal: Principal, key_id: str) -> ApiKeyOut:
        key = await self.api_keys.get(key_id)
        if key is None or (key.user_id != principal.user_id and not principal.can(Permission.USERS_MANAGE)):
            raise NotFoundError(f"no API key with id {key_id}")
        if key.revoked_at is None:
            key.revoked_at = self.clock.now()
            await self.session.flush()
            self._forget_keys_of(key.user_id)
            await self._audit("api_key.revoked", "success", principal, target=f"api_key:{key.id}")
        return ApiKeyOut(**self._key_out(key))

    # --- helpers ---------------------------------------------------------------------------

    def _principal_of(self, user: User) -> Principal:
        role = Role(user.role)
        return Principal(user.id, user.email, role, permissions_of(role))

    async def _audit(
        self,
        action: str,
        outcome: str,
        actor: Principal | None,
        *,
        caller: Caller | None = None,
        actor_email: str | None = None,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        caller = caller or self.caller
        entry = {
            "action": action,
            "outcome": outcome,
            "actor_user_id": actor.user_id if actor else None,
            "actor_api_key_id": actor.api_key_id if actor else None,
            "actor_email": actor.email if actor else actor_email,
            "target": target,
            "ip": caller.ip,
            "user_agent": caller.user_agent,
            "detail": detail,
        }
        self.pending_audit.append((outcome == "success", entry))

    async def stage_audit(self) -> None:
        """Stage the buffered audit entries in this service's transaction (just before it commits)."""
        pending, self.pending_audit = self.pending_audit, []
        if pending:
            await self.audit.stage_many(self.session, [entry for _, entry in pending])
            self.staged_any = True
            self.staged_refusals.extend(entry for only_if_committed, entry in pending if not only_if_committed)

    async def finish(self, *, committed: bool) -> None:
        """After the transaction ended: stage the audit entries that stand and are not staged yet, run deferred actions.

        Committed: entries staged by `stage_audit` are in the outbox already. Rolled back: entries
        about refusals (their staging rolled back too) are staged again, in a transaction of their own.
        """
        for action in self.after_end:
            await action()
        self.after_end.clear()
        standing = [] if committed else self.staged_refusals
        standing = standing + [entry for only_if_committed, entry in self.pending_audit if committed or not only_if_committed]
        self.staged_refusals = []
        self.pending_audit.clear()
        if standing:
            async with self.runtime.database.session() as session:
                await self.audit.stage_many(session, standing)
        if standing or (committed and self.staged_any):
            await after_commit(self.runtime)
        self.staged_any = False


@asynccontextmanager
async def identity_session(runtime: Runtime, caller: Caller | None = None) -> AsyncIterator[IdentityService]:
    """An `IdentityService` in its own transaction; its audit entries are staged in it, then it commits."""
    service: IdentityService | None = None
    try:
        async with runtime.database.session() as session:
            service = IdentityService(session, runtime, caller)
            yield service
            await service.stage_audit()
    except BaseException:
        if service is not None:
            await service.finish(committed=False)
        raise
    assert service is not None  # noqa: S101 - the block above always creates it
    await service.finish(committed=True)


@dataclass(frozen=True)
class SeededUser:
    email: str
    role: Role
    password: str | None  # set only when generated here, to be shown once


ADMIN_EMAIL = "admin@tradestack.local"
DEMO_TRADER_EMAIL = "trader@tradestack.local"


async def seed_users(service: IdentityService) -> tuple[list[SeededUser], str | None]:
    """On an installation without users: an admin and a demo trader; (who was seeded, the trader's user id).

    In the caller's transaction. The admin's password comes from ``TRADESTACK_ADMIN_PASSWORD`` or is
    generated; generated passwords are returned so the caller can print them once. Later runs change
    nothing. The demo trader's paper account is the books' to open (`books.flows.seed_first_users`).
    """
    runtime = service.runtime
    if await service.users.count() > 0:
        return [], None
    seeded = []
    configured = runtime.settings.admin_password.get_secret_value() if runtime.settings.admin_password else None
    admin_password = configured or new_opaque_secret()[:24]
    await service.create_user(ADMIN_EMAIL, admin_password, Role.ADMIN)
    seeded.append(SeededUser(ADMIN_EMAIL, Role.ADMIN, None if configured else admin_password))
    trader_password = new_opaque_secret()[:24]
    trader = await service.create_user(DEMO_TRADER_EMAIL, trader_password, Role.TRADER)
    seeded.append(SeededUser(DEMO_TRADER_EMAIL, Role.TRADER, trader_password))
    return seeded, trader.id


async def start_identity(runtime: Runtime) -> None:
    """Create this process's identity components before the first request, and make the decoy password hash in a
    thread beside start-up (readiness does not wait for it; a sign-in before it is done waits for it off the loop)."""
    task = asyncio.create_task(components(runtime).passwords.prepare(), name="decoy-password-hash")

    async def stop() -> None:
        await stop_tasks([task], "decoy password hash")

    runtime.closers.append(stop)
