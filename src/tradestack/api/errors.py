"""One handler renders every error as ``{"error": "<ErrorClass>", "detail": "<what to fix>"}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradestack.core.errors import TradestackError
from tradestack.identity.deps import BEARER_CHALLENGE
from tradestack.kit.logging import get_logger
from tradestack.kit.outages import RETRY_AFTER_SECONDS, count_outage, is_lock_timeout, is_pool_exhausted, unavailable_backend
from tradestack.kit.web import OrjsonResponse, error_body, routes_of

log = get_logger(__name__)

_HTTP_ERROR_NAMES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    406: "NotAcceptableError",
    413: "PayloadTooLargeError",
    415: "UnsupportedMediaTypeError",
    422: "ValidationFailedError",
    429: "RateLimitedError",
    503: "ServiceUnavailableError",
}


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc) or "request"


async def _tradestack_error(_: Request, exc: Exception) -> Response:
    if not isinstance(exc, TradestackError):  # pragma: no cover - registered for this class only
        raise exc
    headers = exc.headers
    if exc.status_code == 401 and not any(name.lower() == "www-authenticate" for name in headers):
        headers = {**headers, **BEARER_CHALLENGE}  # RFC 9110 section 15.5.2: every 401 names how to authenticate
    return OrjsonResponse(error_body(exc.error, exc.detail, **exc.extra), status_code=exc.status_code, headers=headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestValidationError):  # pragma: no cover
        raise exc
    problems = [f"{_location(err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in exc.errors()]
    return OrjsonResponse(
        error_body("ValidationFailedError", "; ".join(problems) or "invalid request", fields=problems), status_code=422
    )


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (a 405's ``Allow``; Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in routes_of(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):  # pragma: no cover
        raise exc
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    name = _HTTP_ERROR_NAMES.get(exc.status_code, "HTTPError")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such endpoint: see /docs for the API"
    elif exc.status_code == 405 and detail == "Method Not Allowed":
        detail = "this endpoint does not accept that HTTP method"
    return OrjsonResponse(error_body(name, detail), status_code=exc.status_code, headers=headers)


def error_response_for(exc: Exception, request_id: str) -> OrjsonResponse:
    """503 + Retry-After when a backend is unreachable (an outage: retry), a row lock was held longer than the
    database's ``lock_timeout`` or no pooled connection came free in time (contention: retry), else 500 (a bug)."""
    if is_lock_timeout(exc):
        return OrjsonResponse(
            error_body(
                "ServiceUnavailableError",
                f"the data this request changes is busy (another transaction held its lock longer than the database's "
                f"lock_timeout): retry in {RETRY_AFTER_SECONDS} s",
            ),
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if is_pool_exhausted(exc):
        count_outage("database", "request_pool_wait", exc)
        return OrjsonResponse(
            error_body(
                "ServiceUnavailableError",
                f"the server is busy (no database connection came free within the pool timeout): "
                f"retry in {RETRY_AFTER_SECONDS} s",
            ),
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    backend = unavailable_backend(exc)
    if backend is not None:
        count_outage(backend, "request", exc)
        what = "the database" if backend == "database" else "the cache"
        return OrjsonResponse(
            error_body("ServiceUnavailableError", f"{what} is unreachable right now: retry in {RETRY_AFTER_SECONDS} s"),
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    log.error("unhandled_error", error=type(exc).__name__, exc_info=exc)
    return OrjsonResponse(
        error_body("InternalServerError", f"unexpected server error; quote request id {request_id} when reporting it"),
        status_code=500,
    )


class ErrorBoundaryMiddleware:
    """Answer any exception that escapes the app or a middleware, and keep the connection.

    Starlette's last-resort handler re-raises after answering, and uvicorn then closes the
    keep-alive connection; here the exception ends with the answer. Once a response has started
    nothing can be answered any more, so the exception goes on (and the connection closes).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            request_id = str(scope.get("state", {}).get("request_id", "unknown"))
            await error_response_for(exc, request_id)(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on `app` (the boundary for everything else is `ErrorBoundaryMiddleware`)."""
    app.add_exception_handler(TradestackError, _tradestack_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
