"""Pure ASGI security middleware: trusted hosts, security headers, CORS, body size and rate limits.

Every refusal is rendered in the project's error shape,
``{"error": "<ErrorClass>", "detail": "<what to fix>"}``. `install_security` adds the
middleware in this order, outermost first (inside `RequestContextMiddleware`, so every answer,
refusals included, carries a request id and gets an access-log line):

1. `TrustedHostMiddleware` - 400 for a Host header outside ``TRADESTACK_ALLOWED_HOSTS``;
2. `SecurityHeadersMiddleware` - ``X-Content-Type-Options``, CSP, HSTS on HTTPS, ...;
3. `JsonCORSMiddleware` - Starlette's CORS, only when ``TRADESTACK_CORS_ORIGINS`` is set;
4. `BodySizeLimitMiddleware` - 413 above ``TRADESTACK_MAX_REQUEST_BODY_BYTES``;
5. `RateLimitMiddleware` - 429 above the per-IP and ``/api/auth/`` limits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradestack.core.errors import ConfigurationError, PayloadTooLargeError, RateLimitedError
from tradestack.identity.deps import PREFETCH_STATE, AuthPrefetch, bearer_token
from tradestack.identity.service import components, remembered_api_key, revoked_key, user_state_key
from tradestack.identity.tokens import InvalidTokenError, TokenClaims
from tradestack.kit.cache import RedisCache, counted_lookups
from tradestack.kit.config import ENV_PREFIX, Settings
from tradestack.kit.logging import get_logger
from tradestack.kit.ratelimit import LimitCheck, RateLimitResult, check_limit, headers_or_refusal, parse_limit
from tradestack.kit.runtime import Runtime
from tradestack.kit.web import (
    PREFETCHED_STATE,
    CachePrefetch,
    CallerLimit,
    OrjsonResponse,
    cache_prefetches_of,
    caller_limits_of,
    error_body,
)

__all__ = [
    "AUTH_PATH_PREFIX",
    "CORS_ALLOW_HEADERS",
    "CORS_ALLOW_METHODS",
    "CORS_EXPOSE_HEADERS",
    "RATE_LIMIT_EXEMPT_PATHS",
    "BodySizeLimitMiddleware",
    "JsonCORSMiddleware",
    "RateLimitMiddleware",
    "SecurityHeadersMiddleware",
    "TrustedHostMiddleware",
    "check_limit",
    "host_is_allowed",
    "install_security",
]

log = get_logger(__name__)

RATE_LIMIT_EXEMPT_PATHS = frozenset({"/api/health", "/api/ready", "/api/version", "/metrics"})
"""Paths load balancers and scrapers probe; never rate limited so a busy client cannot fail them."""

AUTH_PATH_PREFIX = "/api/auth/"
"""Paths under this prefix also get the stricter ``TRADESTACK_RATE_LIMIT_AUTH``."""

CORS_ALLOW_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
CORS_ALLOW_HEADERS = ("Authorization", "Content-Type", "X-API-Key", "X-Request-ID")
CORS_EXPOSE_HEADERS = ("X-Request-ID", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")

_PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=()"
_MAX_ECHOED_HOST = 100
_RATE_LIMIT_HEADER_NAMES = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
_BACKEND_WARNING_INTERVAL_SECONDS = 10.0
_CALLER = "caller"  # marks a route's own caller limit among the checks (its metric label is its own)


def _setting_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


async def _send_error(send: Send, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
    response = OrjsonResponse(error_body(error, detail), status_code=status, headers=headers)
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


# --- trusted hosts -------------------------------------------------------------------------------


def _host_without_port(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal: [::1]:8000
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0] if ":" in host else host


def host_is_allowed(host: str, patterns: Iterable[str]) -> bool:
    """True if ``host`` (port ignored, case-insensitive) matches one of ``patterns``.

    A pattern is ``"*"`` (any host), ``"*.example.com"`` (any subdomain of example.com, at any
    depth, but not example.com itself) or an exact host name.
    """
    name = _host_without_port(host)
    if not name:
        return False
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if pattern == "*":
            return True
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]):
                return True
        elif name == _host_without_port(pattern):
            return True
    return False


class TrustedHostMiddleware:
    """Refuse requests whose Host header is not in ``allowed_hosts`` with 400 ``BadRequestError``.

    Protects against Host-header injection (poisoned absolute URLs, cache keys). WebSocket
    handshakes with a disallowed host are closed with code 1008 (policy violation).
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)
        self.allow_any = "*" in {pattern.strip() for pattern in self.allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or self.allow_any:
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host", "")
        if host_is_allowed(host, self.allowed_hosts):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        shown = host if len(host) <= _MAX_ECHOED_HOST else host[:_MAX_ECHOED_HOST] + "…"
        detail = f"host '{shown}' is not allowed: set {_setting_name('allowed_hosts')}"
        await _send_error(send, 400, "BadRequestError", detail)


# --- security headers ----------------------------------------------------------------------------


class SecurityHeadersMiddleware:
    """Add browser-hardening headers to every HTTP response, keeping any the app already set.

    ``Strict-Transport-Security`` is sent only on HTTPS requests (the scheme uvicorn reports,
    which honours ``X-Forwarded-Proto`` from trusted proxies) and only when
    ``hsts_seconds`` is positive.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        headers = {
            "x-content-type-options": "nosniff",
            "x-frame-options": "DENY",
            "referrer-policy": "strict-origin-when-cross-origin",
            "content-security-policy": settings.content_security_policy,
            "permissions-policy": _PERMISSIONS_POLICY,
            "cross-origin-opener-policy": "same-origin",
        }
        self.headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        self.hsts: tuple[bytes, bytes] | None = None
        if settings.hsts_seconds > 0:
            self.hsts = (b"strict-transport-security", f"max-age={settings.hsts_seconds}; includeSubDomains".encode("latin-1"))

    def headers_for(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The headers an answer to this request gets unless it has them already (`with_missing`)."""
        if self.hsts is not None and scope.get("scheme") == "https":
            return [*self.headers, self.hsts]
        return self.headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.headers_for(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_missing(message.get("headers", []), extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def with_missing(headers: Iterable[tuple[bytes, bytes]], extra: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` followed by each of ``extra`` whose name (lower case) they do not have."""
    headers = list(headers)
    present = {bytes(name).lower() for name, _ in headers}
    headers.extend(header for header in extra if header[0] not in present)
    return headers


# --- CORS ----------------------------------------------------------------------------------------


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's `CORSMiddleware`, with refused preflights rendered in the project's error shape."""

    def preflight_response(self, request_headers: Headers) -> Response:
        """Starlette's preflight answer; a refusal (400) becomes a ``BadRequestError`` body."""
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        reason = bytes(response.body).decode("utf-8", "replace")
        headers = {name: value for name, value in response.headers.items() if name not in {"content-length", "content-type"}}
        detail = (
            f"{reason}: this API allows cross-origin requests from the origins in {_setting_name('cors_origins')}, "
            f"methods {', '.join(CORS_ALLOW_METHODS)} and headers {', '.join(CORS_ALLOW_HEADERS)}"
        )
        return OrjsonResponse(error_body("BadRequestError", detail), status_code=400, headers=headers)


# --- body size -----------------------------------------------------------------------------------


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413 ``PayloadTooLargeError``.

    A declared ``Content-Length`` above the limit is refused before the app runs. A body
    without one (chunked, streamed) is counted while the app reads it: the chunk that crosses
    the limit is never handed over; `receive` raises `PayloadTooLargeError` instead, and
    whatever the app answers then is replaced by the 413 if its response has not started. If
    it has already started, the error propagates and the server aborts the connection.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail = (
            f"request body is larger than the limit of {max_bytes} bytes "
            f"({_setting_name('max_request_body_bytes')}): send a smaller body"
        )

    async def _reject(self, send: Send) -> None:
        # The rest of the body is left unread, so the connection cannot be reused.
        await _send_error(send, 413, "PayloadTooLargeError", self.detail, {"Connection": "close"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return

        received = 0
        exceeded = False
        response_started = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise PayloadTooLargeError(self.detail)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise PayloadTooLargeError(self.detail)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started, replaced
            if replaced:
                return  # the app's answer to the oversized body was replaced by the 413
            if message["type"] == "http.response.start":
                if exceeded and not response_started:
                    response_started = replaced = True
                    await self._reject(send)
                    return
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if replaced:
                return
            if exceeded and not response_started:
                await self._reject(send)
                return
            raise
        if exceeded and not response_started:
            await self._reject(send)


# --- rate limits ---------------------------------------------------------------------------------


def _tightness(headers: dict[str, str]) -> tuple[int, int]:
    """Sort key: fewest remaining hits first, then the longest wait for a free slot."""
    try:
        return int(headers["RateLimit-Remaining"]), -int(headers["RateLimit-Reset"])
    except (KeyError, ValueError):
        return (2**63, 0)


class RateLimitMiddleware:
    """Moving-window request limits per client IP, shared by every replica when Redis is configured.

    Every request counts against ``rate_limit_per_ip`` (identified by ``scope["client"][0]``,
    which uvicorn rewrites from ``X-Forwarded-For`` for trusted proxies; ``"unknown"`` when
    absent); paths under ``/api/auth/`` also count against the stricter ``rate_limit_auth``.
    `RATE_LIMIT_EXEMPT_PATHS` are never limited. A refused request gets 429
    ``RateLimitedError`` with ``Retry-After`` and ``RateLimit-*`` headers; an allowed one gets
    the ``RateLimit-*`` headers of the tightest limit that applied, including a per-principal
    limit the endpoint stored in ``request.state.rate_limit_headers``, unless the response
    already carries them.

    A request with a bearer token this process has verified (`VerifiedTokens`, no I/O) also
    counts its per-principal limit here, together with the IP limits, and reads the token's
    auth state unless the principal is remembered (`RecentPrincipals`): in process without
    awaiting, on Redis in ONE round trip, and so does the route's own per-caller limit if it
    has one (`tradestack.kit.web.caller_limit`, e.g. ``POST /predict``); so does a request with an
    API key this process resolved moments ago (`remembered_api_key`). `get_principal` and
    `count_caller_limit` then find all of it in the request state (`AuthPrefetch`) instead of
    asking again. The principal is counted whether or not
    the route needs one; with per-route overrides (``rate_limit_routes``) configured, it is
    counted by `get_principal` once the route is known.

    The limiter is the runtime's (``app.state.runtime.rate_limiter``), looked up per request.
    If it fails (Redis unreachable), the request is let through - the middleware fails OPEN -
    and a warning is logged (at most once every 10 s per process, with the number of requests
    let through unchecked). Availability wins here: these limits shed abusive load, while
    credentials are protected separately by the per-account login lockout, so an outage of
    the limiter's storage must not take the whole API down with it.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.per_ip = settings.rate_limit_per_ip
        self.auth = settings.rate_limit_auth
        self.exempt_ips = frozenset(settings.rate_limit_exempt_ips)
        if self.exempt_ips:
            log.warning(
                "rate_limit_exempt_ips",
                ips=sorted(self.exempt_ips),
                action="no per-IP limits for these clients (a load-test target only; per-user limits still apply)",
            )
        self._last_warning = -math.inf
        self._unchecked = 0
        # Read from the app's routes on first use (they are final by then).
        self._caller_limits: dict[tuple[str, str], CallerLimit] | None = None
        self._prefetches: dict[tuple[str, str], CachePrefetch] | None = None

    def _warn_backend_failure(self, exc: Exception, path: str) -> None:
        self._unchecked += 1
        now = time.monotonic()
        if now - self._last_warning < _BACKEND_WARNING_INTERVAL_SECONDS:
            return
        log.warning(
            "rate_limiter_unavailable",
            error=type(exc).__name__,
            detail=str(exc),
            path=path,
            unchecked_requests=self._unchecked,
            action="request let through without rate limiting (fail open)",
        )
        self._last_warning = now
        self._unchecked = 0

    def _checks(self, ip: str, path: str) -> list[tuple[LimitCheck, str, str]]:
        """The per-IP limits of a request: (limit check, metric label, description); none for an exempt load generator."""
        if ip in self.exempt_ips:
            return []
        checks: list[tuple[LimitCheck, str, str]] = [((self.per_ip, ("ip", ip)), "ip", f"client {ip}")]
        if path.startswith(AUTH_PATH_PREFIX):
            checks.append(((self.auth, ("auth_ip", ip)), "auth_ip", f"{AUTH_PATH_PREFIX}* from client {ip}"))
        return checks

    def _caller_limit(self, scope: Scope, runtime: Runtime) -> CallerLimit | None:
        """The route's own per-caller limit (`tradestack.kit.web.caller_limit`) unless ``rate_limit_routes`` replaces it."""
        if self._caller_limits is None:
            self._read_routes(scope)
        if not self._caller_limits or scope.get("root_path"):
            return None  # mounted elsewhere: the route counts it itself
        method, path = scope["method"], scope["path"]
        found = self._caller_limits.get((method, path))
        if found is None or f"{method} {path}" in runtime.settings.rate_limit_routes:
            return None
        return found

    def _read_routes(self, scope: Scope) -> None:
        routes = scope["app"].router.routes
        self._caller_limits, self._prefetches = caller_limits_of(routes), cache_prefetches_of(routes)

    def _wanted(self, scope: Scope) -> list[str]:
        """The cache keys the route reads (`tradestack.kit.web.cache_prefetch`), to read with the limits."""
        if self._prefetches is None:
            self._read_routes(scope)
        if not self._prefetches or scope.get("root_path"):
            return []
        prefetch = self._prefetches.get((scope["method"], scope["path"]))
        return (prefetch.keys_of(scope) or []) if prefetch is not None else []

    def _principal_checks(
        self, scope: Scope, runtime: Runtime, token: str
    ) -> tuple[list[tuple[LimitCheck, str, str]], list[str], TokenClaims | None]:
        """For a bearer token this process has verified: its principal limit (unless a route override may
        apply), the route's own caller limit, the auth-state keys to read if its principal is not
        remembered (cache keys unprefixed), and its claims (None for a token that does not verify)."""
        parts = components(runtime)
        try:
            claims = parts.tokens.verify(token, "access", runtime.clock.now())
        except InvalidTokenError:
            return [], [], None  # get_principal refuses it, with the reason logged
        reads = (
            []
            if parts.principals.get(claims.token_id) is not None
            else [revoked_key(claims.token_id), user_state_key(claims.subject)]
        )
        return self._identity_checks(scope, runtime, f"user:{claims.subject}"), reads, claims

    def _identity_checks(self, scope: Scope, runtime: Runtime, identity: str) -> list[tuple[LimitCheck, str, str]]:
        """The per-principal limit (unless a route override may apply) and the route's own caller limit of ``identity``."""
        checks: list[tuple[LimitCheck, str, str]] = []
        settings = runtime.settings
        if not settings.rate_limit_routes:  # overrides depend on the route: then get_principal counts it
            checks.append(((settings.rate_limit_per_principal, ("principal", identity)), "principal", identity))
        own = self._caller_limit(scope, runtime)
        if own is not None:
            checks.append(((own.limit, (own.label, identity)), _CALLER, identity))
        return checks

    async def _check(self, scope: Scope, ip: str, path: str) -> list[dict[str, str]]:
        """Count the request's limits - and a bearer's principal limit and auth state, or a remembered API key's
        principal limit - in one go.

        In process (embedded) nothing is awaited; on Redis it is one round trip (one script).
        Raises `RateLimitedError` for the first limit that refuses the request.
        """
        runtime: Runtime = scope["app"].state.runtime
        limiter = runtime.rate_limiter
        checks = self._checks(ip, path)
        token = None
        claims = None
        reads: list[str] = []
        api_key = None
        authorization = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = True
                token = bearer_token(value.decode("latin-1"))
                break
            if name == b"x-api-key" and api_key is None:
                api_key = value.decode("latin-1")
        if token is not None:
            principal_checks, reads, claims = self._principal_checks(scope, runtime, token)
            checks += principal_checks
        elif api_key is not None and not authorization:
            # An API key this process resolved moments ago: its principal is counted here too (get_principal
            # resolves any other key itself, and counts its limit then).
            remembered = remembered_api_key(runtime, api_key, runtime.clock.now())
            if remembered is not None:
                checks += self._identity_checks(scope, runtime, f"key:{remembered.api_key_id}")
                token = api_key
        if token is None and not checks:
            return []  # an exempt load generator without credentials to count: nothing to count
        if limiter.counts_in_process:
            results: list[RateLimitResult | None] = [limiter.hit_now(limit, *ids) for (limit, ids), _, _ in checks]
            values = None  # get_principal reads the in-process cache itself, without awaiting
        else:
            cache = runtime.cache
            wanted = self._wanted(scope) if isinstance(cache, RedisCache) else []
            redis_reads = [cache.redis_key(key) for key in (*reads, *wanted)] if isinstance(cache, RedisCache) else []
            results, values = await limiter.hit_many([check for check, _, _ in checks], redis_reads)
            if values is not None and wanted:
                found = counted_lookups(values[len(reads) :])
                scope.setdefault("state", {})[PREFETCHED_STATE] = dict(zip(wanted, found, strict=True))
            values = values[: len(reads)] if values is not None and reads else None
        applied = []
        principal_limit = None
        caller_limit = None
        for (check, label, description), result in zip(checks, results, strict=True):
            if result is None:
                break  # not counted: an earlier limit refused the request
            if label == _CALLER:
                caller_limit = (description, headers_or_refusal(result, check[0], label=check[1][0], description=description))
                continue
            headers = headers_or_refusal(result, check[0], label=label, description=description)
            if label == "principal":
                principal_limit = headers
            else:
                applied.append(headers)
        if token is not None:
            scope.setdefault("state", {})[PREFETCH_STATE] = AuthPrefetch(token, principal_limit, values, caller_limit, claims)
        return applied

    async def check(self, scope: Scope, send: Send) -> list[dict[str, str]] | None:
        """Count an HTTP request's limits (not for `RATE_LIMIT_EXEMPT_PATHS`): the ``RateLimit-*`` headers of the
        limits that applied, for `with_limit_headers`; None once it has answered 429 through ``send``, [] when the
        limiter failed (the request goes on, see the docstring)."""
        path: str = scope["path"]
        client = scope.get("client")
        ip = str(client[0]) if client else "unknown"
        try:
            return await self._check(scope, ip, path)
        except RateLimitedError as exc:
            await _send_error(send, exc.status_code, exc.error, exc.detail, exc.headers)
            return None
        except Exception as exc:  # noqa: BLE001 - fail open on any limiter failure, see the docstring
            self._warn_backend_failure(exc, path)
            return []

    @staticmethod
    def with_limit_headers(scope: Scope, applied: list[dict[str, str]], headers: list[tuple[bytes, bytes]]) -> None:
        """Add to an answer's ``headers`` the ``RateLimit-*`` of the tightest limit applied, unless it has them."""
        if all(bytes(name).lower() != b"ratelimit-limit" for name, _ in headers):
            candidates = list(applied)
            from_endpoint: Any = scope.get("state", {}).get("rate_limit_headers")
            if isinstance(from_endpoint, dict) and all(name in from_endpoint for name in _RATE_LIMIT_HEADER_NAMES):
                candidates.append(from_endpoint)
            if not candidates:
                return
            tightest = min(candidates, key=_tightness)
            headers.extend(
                (name.lower().encode("latin-1"), str(tightest[name]).encode("latin-1")) for name in _RATE_LIMIT_HEADER_NAMES
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in RATE_LIMIT_EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        applied = await self.check(scope, send)
        if applied is None:
            return
        # Wrapped even when no per-IP limit applied (the limiter failed, or an exempt load generator): the
        # principal's limit, counted here and applied by the endpoint, still sends its headers.

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                self.with_limit_headers(scope, applied, headers)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- installation --------------------------------------------------------------------------------


def _validate_limits(settings: Settings) -> None:
    for field in ("rate_limit_per_ip", "rate_limit_auth"):
        try:
            parse_limit(getattr(settings, field))
        except ValueError as exc:
            raise ConfigurationError(f"{_setting_name(field)} is not a valid rate limit: {exc}") from exc


def install_security(app: FastAPI, settings: Settings) -> None:
    """Add the security middleware to ``app``; call it right after adding `RequestContextMiddleware`.

    Resulting order, outermost first: trusted host, security headers, CORS (only when
    ``cors_origins`` is set), body size limit, rate limit. Raises `ConfigurationError` if a
    rate limit setting is not valid `limits` notation.
    """
    _validate_limits(settings)
    # add_middleware prepends: add innermost first.
    app.add_middleware(RateLimitMiddleware, settings=settings)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            JsonCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=CORS_ALLOW_METHODS,
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            allow_credentials=False,  # bearer tokens and API keys, never cookies
        )
    app.add_middleware(SecurityHeadersMiddleware, settings=settings)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
