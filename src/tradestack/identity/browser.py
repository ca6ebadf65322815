"""Sign-in for the web dashboard: the refresh token in a cookie, the access token in memory.

The JSON token API (``/api/auth/login`` …) is for API clients and is unchanged. A browser uses
``/api/auth/browser/*`` instead:

* login / MFA verify answer the access token (kept in memory by the page) and set the refresh
  token as ``ts_refresh``: ``HttpOnly``, ``SameSite=Strict``, ``Secure`` on HTTPS, ``Path`` =
  this prefix, so scripts never see it and no other request carries it;
* ``refresh`` rotates it (the same rotation and reuse detection as the JSON API) and needs the
  CSRF token in ``X-CSRF-Token``: an HMAC of the refresh token under the server secret, also set
  as the readable cookie ``ts_csrf`` so a reloaded page can send it (signed double submit).
  A cross-site page can neither read that cookie nor compute it; a cross-origin ``Origin`` or
  ``Sec-Fetch-Site`` is refused besides;
* ``logout`` (bearer + cookie + CSRF) revokes the access token and the refresh family and
  clears both cookies; a refused refresh clears them too.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Literal

from fastapi import APIRouter, Cookie, Header, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from tradestack.core.errors import AuthenticationError, ConfigurationError, PermissionDeniedError
from tradestack.identity.deps import caller_of, require
from tradestack.identity.endpoints import FORBIDDEN, UNAUTHORISED, ServiceDep
from tradestack.identity.permissions import Permission
from tradestack.identity.schemas import LoginRequest, MfaChallenge, MfaVerifyRequest, TokenPair
from tradestack.identity.service import Principal
from tradestack.kit.config import Settings
from tradestack.kit.web import OrjsonResponse, RuntimeDep

PREFIX = "/api/auth/browser"
REFRESH_COOKIE = "ts_refresh"
CSRF_COOKIE = "ts_csrf"
CSRF_HEADER = "X-CSRF-Token"

browser = APIRouter(prefix=PREFIX, tags=["browser session"])


class BrowserSession(BaseModel):
    """What the page keeps in memory; the refresh token is only in the HttpOnly cookie."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires: refresh before.")
    csrf_token: str = Field(description=f"Send as {CSRF_HEADER} to refresh and logout (also in the {CSRF_COOKIE} cookie).")


def csrf_token_for(settings: Settings, refresh_token: str) -> str:
    """The CSRF token bound to ``refresh_token`` (changes with every rotation)."""
    if settings.secret_key is None:  # Runtime.open reads or generates it before any request
        raise ConfigurationError("TRADESTACK_SECRET_KEY is not set")
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, b"csrf:" + refresh_token.encode(), hashlib.sha256).hexdigest()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _session(settings: Settings, request: Request, pair: TokenPair) -> Response:
    csrf = csrf_token_for(settings, pair.refresh_token)
    body = BrowserSession(access_token=pair.access_token, expires_in=pair.expires_in, csrf_token=csrf)
    response = OrjsonResponse(body.model_dump(), headers={"Cache-Control": "no-store"})
    max_age = settings.refresh_token_ttl_seconds
    secure = _secure(request)
    response.set_cookie(
        REFRESH_COOKIE, pair.refresh_token, max_age=max_age, path=PREFIX, secure=secure, httponly=True, samesite="strict"
    )
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, path="/", secure=secure, httponly=False, samesite="strict")
    return response


def _clear(response: Response, request: Request) -> Response:
    secure = _secure(request)
    response.delete_cookie(REFRESH_COOKIE, path=PREFIX, secure=secure, httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, httponly=False, samesite="strict")
    return response


def _expired_refresh_cookie(request: Request) -> str:
    cleared = Response()
    cleared.delete_cookie(REFRESH_COOKIE, path=PREFIX, secure=_secure(request), httponly=True, samesite="strict")
    return cleared.headers["set-cookie"]


def _same_origin(request: Request) -> None:
    """Refuse requests a browser marks as coming from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise PermissionDeniedError(f"cross-site request refused (Sec-Fetch-Site: {site[:20]}): use the dashboard itself")
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
        raise PermissionDeniedError("cross-origin request refused: the Origin header does not match this server")


def _checked_refresh_token(settings: Settings, request: Request, cookie: str | None, csrf: str | None) -> str:
    _same_origin(request)
    if not cookie:
        raise AuthenticationError("no browser session (the refresh cookie is missing): sign in again")
    if not csrf or not hmac.compare_digest(csrf, csrf_token_for(settings, cookie)):
        raise PermissionDeniedError(f"missing or wrong {CSRF_HEADER} header: reload the page and sign in again")
    return cookie


RefreshCookie = Annotated[str | None, Cookie(alias=REFRESH_COOKIE, max_length=512)]
CsrfHeader = Annotated[str | None, Header(alias=CSRF_HEADER, max_length=128)]
SESSION_RESPONSES = {200: {"model": BrowserSession, "description": "Signed in; the refresh cookie is set"}}


@browser.post(
    "/login",
    response_model=BrowserSession | MfaChallenge,
    responses={**UNAUTHORISED, 429: {"description": "Too many failed sign-ins; see Retry-After"}},
)
async def browser_login(body: LoginRequest, service: ServiceDep, runtime: RuntimeDep, request: Request) -> Response:
    """Sign in from the dashboard: an access token and the refresh cookie, or an MFA challenge."""
    _same_origin(request)
    result = await service.login(body.email, body.password, caller_of(request))
    if isinstance(result, MfaChallenge):
        return OrjsonResponse(result.model_dump(), headers={"Cache-Control": "no-store"})
    return _session(runtime.settings, request, result)


@browser.post("/mfa/verify", response_model=BrowserSession, responses=UNAUTHORISED)
async def browser_mfa_verify(body: MfaVerifyRequest, service: ServiceDep, runtime: RuntimeDep, request: Request) -> Response:
    """Complete a dashboard sign-in with a TOTP code or a recovery code."""
    _same_origin(request)
    return _session(runtime.settings, request, await service.verify_mfa(body.mfa_token, body.code, caller_of(request)))


@browser.post(
    "/refresh", response_model=BrowserSession, responses={**UNAUTHORISED, 403: {"description": "Missing or wrong CSRF token"}}
)
async def browser_refresh(
    service: ServiceDep, runtime: RuntimeDep, request: Request, refresh_cookie: RefreshCookie = None, csrf: CsrfHeader = None
) -> Response:
    """Rotate the refresh cookie and get a new access token (needs the CSRF header)."""
    token = _checked_refresh_token(runtime.settings, request, refresh_cookie, csrf)
    try:
        pair = await service.refresh(token, caller_of(request))
    except AuthenticationError as exc:
        # Re-raised so the request's transaction rolls back as for the JSON API; the browser drops the cookie.
        exc.headers = {**exc.headers, "Set-Cookie": _expired_refresh_cookie(request)}
        raise
    return _session(runtime.settings, request, pair)


@browser.post("/logout", status_code=204, responses={**FORBIDDEN})
async def browser_logout(
    service: ServiceDep,
    runtime: RuntimeDep,
    request: Request,
    principal: Annotated[Principal, require(Permission.PROFILE)],
    refresh_cookie: RefreshCookie = None,
    csrf: CsrfHeader = None,
) -> Response:
    """End the dashboard session: revoke the access token and the refresh family, clear the cookies."""
    token = _checked_refresh_token(runtime.settings, request, refresh_cookie, csrf) if refresh_cookie else None
    await service.logout(principal, token, caller_of(request))
    return _clear(Response(status_code=204), request)
