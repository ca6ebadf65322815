"""Authentication, MFA, API keys and user administration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from tradestack.books.service import BooksService
from tradestack.identity.deps import caller_of, require
from tradestack.identity.permissions import Permission
from tradestack.identity.schemas import (
    AccountOut,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    LoginRequest,
    LogoutRequest,
    Me,
    MfaChallenge,
    MfaCode,
    MfaEnabled,
    MfaSetup,
    MfaVerifyRequest,
    PasswordChange,
    RefreshRequest,
    TemporaryPassword,
    TokenPair,
    UserCreate,
    UserOut,
    UserUpdate,
)
from tradestack.identity.service import IdentityService, Principal, identity_session
from tradestack.kit.web import RuntimeDep

auth = APIRouter(prefix="/api/auth", tags=["auth"])
keys = APIRouter(prefix="/api/keys", tags=["api keys"])
users = APIRouter(prefix="/api/users", tags=["users"])

UNAUTHORISED: dict[int | str, dict[str, Any]] = {401: {"description": "Missing, invalid or expired credentials"}}
FORBIDDEN: dict[int | str, dict[str, Any]] = {
    **UNAUTHORISED,
    403: {"description": "The caller's role or key scopes do not allow this"},
}


async def _service(runtime: RuntimeDep, request: Request) -> AsyncIterator[IdentityService]:
    """The request's identity service; its transaction commits before the response is sent."""
    async with identity_session(runtime, caller_of(request)) as service:
        yield service


ServiceDep = Annotated[IdentityService, Depends(_service, scope="function")]
SignedIn = Annotated[Principal, require(Permission.PROFILE)]
OwnSecurity = Annotated[Principal, require(Permission.SECURITY_MANAGE_OWN)]
UserAdmin = Annotated[Principal, require(Permission.USERS_MANAGE)]


@auth.post(
    "/login",
    response_model=TokenPair | MfaChallenge,
    responses={**UNAUTHORISED, 429: {"description": "Too many failed sign-ins; see Retry-After"}},
)
async def login(body: LoginRequest, service: ServiceDep, request: Request) -> TokenPair | MfaChallenge:
    """Exchange email and password for tokens, or for an MFA challenge when MFA is on."""
    return await service.login(body.email, body.password, caller_of(request))


@auth.post("/mfa/verify", response_model=TokenPair, responses=UNAUTHORISED)
async def mfa_verify(body: MfaVerifyRequest, service: ServiceDep, request: Request) -> TokenPair:
    """Complete a sign-in with a TOTP code (each code works once) or a recovery code."""
    return await service.verify_mfa(body.mfa_token, body.code, caller_of(request))


@auth.post("/refresh", response_model=TokenPair, responses=UNAUTHORISED)
async def refresh(body: RefreshRequest, service: ServiceDep, request: Request) -> TokenPair:
    """Rotate a refresh token. Reusing a rotated token revokes its whole family."""
    return await service.refresh(body.refresh_token, caller_of(request))


@auth.post("/logout", status_code=204, responses=FORBIDDEN)
async def logout(service: ServiceDep, request: Request, principal: SignedIn, body: LogoutRequest | None = None) -> Response:
    """Revoke this access token and, when given, the refresh token's family (the body is optional)."""
    await service.logout(principal, body.refresh_token if body else None, caller_of(request))
    return Response(status_code=204)


@auth.post("/password", response_model=TokenPair, responses=FORBIDDEN)
async def change_password(body: PasswordChange, service: ServiceDep, principal: SignedIn) -> TokenPair:
    """Change your password; every other session is signed out and you get fresh tokens."""
    return await service.change_password(principal, body.current_password, body.new_password)


@auth.get("/me", response_model=Me, responses=FORBIDDEN)
async def me(service: ServiceDep, principal: SignedIn) -> Me:
    """Who you are, your trading accounts and what you may do."""
    user = await service.get_user(principal.user_id)
    accounts = [AccountOut.model_validate(a) for a in await BooksService(service.session, service.clock).accounts_of(user.id)]
    return Me(
        **UserOut.model_validate(user).model_dump(),
        accounts=accounts,
        via_api_key=principal.api_key_id is not None,
        permissions=sorted(p.value for p in principal.permissions),
    )


@auth.post("/mfa/setup", response_model=MfaSetup, responses=FORBIDDEN)
async def mfa_setup(service: ServiceDep, principal: OwnSecurity) -> MfaSetup:
    """Start MFA: scan the otpauth URI (or QR code), then confirm with /mfa/enable."""
    return await service.mfa_setup(principal)


@auth.post("/mfa/enable", response_model=MfaEnabled, responses=FORBIDDEN)
async def mfa_enable(body: MfaCode, service: ServiceDep, principal: OwnSecurity) -> MfaEnabled:
    """Turn MFA on with a current code; returns one-time recovery codes."""
    return await service.mfa_enable(principal, body.code)


@auth.post("/mfa/disable", status_code=204, responses=FORBIDDEN)
async def mfa_disable(body: MfaCode, service: ServiceDep, principal: OwnSecurity) -> Response:
    """Turn MFA off; needs a current TOTP code or a recovery code."""
    await service.mfa_disable(principal, body.code)
    return Response(status_code=204)


@keys.post(
    "",
    response_model=ApiKeyCreated,
    status_code=201,
    responses={**FORBIDDEN, 409: {"description": "The user holds TRADESTACK_MAX_API_KEYS_PER_USER keys already"}},
)
async def create_key(body: ApiKeyCreate, service: ServiceDep, principal: OwnSecurity) -> ApiKeyCreated:
    """Create an API key (the secret is returned once). Send it as X-API-Key. At most TRADESTACK_MAX_API_KEYS_PER_USER
    unrevoked, unexpired keys per user (409 beyond)."""
    return await service.create_api_key(principal, body)


@keys.get("", response_model=list[ApiKeyOut], responses=FORBIDDEN)
async def list_keys(service: ServiceDep, principal: OwnSecurity) -> list[ApiKeyOut]:
    """Your API keys, with last-used times (never the secrets)."""
    return await service.list_api_keys(principal)


@keys.delete("/{key_id}", response_model=ApiKeyOut, responses={**FORBIDDEN, 404: {"description": "No such key"}})
async def revoke_key(key_id: str, service: ServiceDep, principal: OwnSecurity) -> ApiKeyOut:
    """Revoke an API key at once."""
    return await service.revoke_api_key(principal, key_id)


@users.get("", response_model=list[UserOut], responses=FORBIDDEN)
async def list_users(
    service: ServiceDep,
    _: UserAdmin,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[UserOut]:
    """Every user (admin)."""
    return [UserOut.model_validate(user) for user in await service.list_users(limit=limit, offset=offset)]


@users.post("", response_model=UserOut, status_code=201, responses={**FORBIDDEN, 409: {"description": "Email taken"}})
async def create_user(body: UserCreate, service: ServiceDep, principal: UserAdmin) -> UserOut:
    """Create a user with a role (admin)."""
    return UserOut.model_validate(await service.create_user(body.email, body.password, body.role, actor=principal))


@users.get("/{user_id}", response_model=UserOut, responses={**FORBIDDEN, 404: {"description": "No such user"}})
async def get_user(user_id: str, service: ServiceDep, _: UserAdmin) -> UserOut:
    """One user (admin)."""
    return UserOut.model_validate(await service.get_user(user_id))


@users.patch("/{user_id}", response_model=UserOut, responses={**FORBIDDEN, 404: {"description": "No such user"}})
async def update_user(user_id: str, body: UserUpdate, service: ServiceDep, principal: UserAdmin) -> UserOut:
    """Change a user's role, or disable (is_active=false) and re-enable them (admin)."""
    user = await service.update_user(user_id, role=body.role, is_active=body.is_active, actor=principal)
    return UserOut.model_validate(user)


@users.post(
    "/{user_id}/password/reset", response_model=TemporaryPassword, responses={**FORBIDDEN, 404: {"description": "No such user"}}
)
async def reset_password(user_id: str, service: ServiceDep, principal: UserAdmin) -> TemporaryPassword:
    """Give a user a one-time temporary password they must change at their next sign-in (admin)."""
    temporary = await service.reset_password(user_id, actor=principal)
    return TemporaryPassword(user_id=user_id, temporary_password=temporary)


@users.post("/{user_id}/mfa/reset", response_model=UserOut, responses={**FORBIDDEN, 404: {"description": "No such user"}})
async def reset_mfa(user_id: str, service: ServiceDep, principal: UserAdmin) -> UserOut:
    """Remove a user's MFA (lost device); they can set it up again (admin)."""
    return UserOut.model_validate(await service.reset_mfa(user_id, actor=principal))
