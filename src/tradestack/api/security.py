"""HTTP hardening: trusted hosts, security headers, CORS, body size limit and per-IP rate limits.

Pure ASGI middleware; every refusal uses the project's error body. Order, outermost first:
request context (request id, access log) → trusted host → security headers → CORS → body
limit → per-IP rate limit → the app.
"""

from __future__ import annotations

import math

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradestack.core.errors import BadRequestError, PayloadTooLargeError, RateLimitedError, TradestackError
from tradestack.kit.config import Settings
from tradestack.kit.logging import get_logger
from tradestack.kit.metrics import RATE_LIMITED
from tradestack.kit.ratelimit import parse_limit, rate_limit_headers
from tradestack.kit.web import OrjsonResponse, error_body

log = get_logger(__name__)
# Load-balancer probes and scrapes are never rate limited.
EXEMPT_FROM_RATE_LIMITS = frozenset({"/api/health", "/api/ready", "/api/version", "/metrics"})
AUTH_PREFIX = "/api/auth/"


async def _refuse(send: Send, error: TradestackError) -> None:
    response = OrjsonResponse(error_body(error.error, error.detail), status_code=error.status_code, headers=error.headers)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - responses never read the body
    return {"type": "http.disconnect"}


def _adding_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """`send` that appends `extra` headers to the response, unless the app already set them."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in present)]
        await send(message)

    return wrapped


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class TrustedHostMiddleware:
    """400 for a Host header not in ``allowed_hosts`` (``*`` and ``*.example.com`` allowed; port ignored)."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.any = "*" in allowed_hosts
        self.exact = {h.lower() for h in allowed_hosts if not h.startswith("*.")}
        self.suffixes = tuple(h[1:].lower() for h in allowed_hosts if h.startswith("*."))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = (_header(scope, b"host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host in self.exact or (self.suffixes and host.endswith(self.suffixes)):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await _refuse(send, BadRequestError(f"host {host!r} is not allowed: set TRADESTACK_ALLOWED_HOSTS"))


class SecurityHeadersMiddleware:
    """Adds the security headers to every response; HSTS only over HTTPS."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
            (b"content-security-policy", settings.content_security_policy.encode()),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        self.hsts = f"max-age={settings.hsts_seconds}; includeSubDomains".encode() if settings.hsts_seconds > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(self.headers)
        if self.hsts and scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", self.hsts))
        await self.app(scope, receive, _adding_headers(send, extra))


class BodySizeLimitMiddleware:
    """413 for a body larger than ``max_bytes``, declared (Content-Length) or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(f"request body is larger than {self.max_bytes} bytes (TRADESTACK_MAX_REQUEST_BODY_BYTES)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _refuse(send, self._error())
            return
        received = 0
        started = refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now and tell the app the client went away; it never sees the excess.
                    if not started and not refused:
                        refused = True
                        await _refuse(send, self._error())
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 has been sent; drop whatever the app answers after the disconnect
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


class RateLimitMiddleware:
    """Per client IP: every route gets ``rate_limit_per_ip``; ``/api/auth/*`` also ``rate_limit_auth``.

    Fails open: if the limiter's backend (Redis) is down the request goes through and a
    warning is logged — an outage of the limiter should not become an outage of the API.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.per_ip = settings.rate_limit_per_ip
        self.auth = settings.rate_limit_auth
        parse_limit(self.per_ip)  # refuse a bad setting at start-up, not at the first request
        parse_limit(self.auth)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in EXEMPT_FROM_RATE_LIMITS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        checks = [(self.per_ip, "ip", "ip")]
        if path.startswith(AUTH_PREFIX):
            checks.append((self.auth, "auth_ip", "auth-ip"))
        headers: dict[str, str] | None = None
        tightest = math.inf
        try:
            limiter = scope["app"].state.runtime.rate_limiter
            for limit, label, key in checks:
                result = await limiter.hit(limit, key, ip)
                if not result.allowed:
                    retry = max(1, math.ceil(result.reset_after_seconds))
                    RATE_LIMITED.labels(limit=label).inc()
                    item = parse_limit(limit)
                    where = "/api/auth" if label == "auth_ip" else "this API"
                    detail = (
                        f"more than {item.amount} requests per {item.get_expiry()} s to {where} from {ip}: retry after {retry} s"
                    )
                    await _refuse(
                        send, RateLimitedError(detail, headers={**rate_limit_headers(result), "Retry-After": str(retry)})
                    )
                    return
                if result.remaining < tightest:
                    tightest, headers = result.remaining, rate_limit_headers(result)
        except (ConnectionError, OSError, TimeoutError) as exc:
            log.warning("rate_limiter_unavailable", error=f"{type(exc).__name__}: {exc}")
            headers = None

        if headers is None:
            await self.app(scope, receive, send)
            return
        encoded = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        await self.app(scope, receive, _adding_headers(send, encoded))


def install_security(app: FastAPI, settings: Settings) -> None:
    """Add the hardening middleware (``add_middleware`` prepends, so innermost first)."""
    app.add_middleware(RateLimitMiddleware, settings=settings)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"],
            allow_credentials=False,
        )
    app.add_middleware(SecurityHeadersMiddleware, settings=settings)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)


__all__ = ["EXEMPT_FROM_RATE_LIMITS", "install_security"]
