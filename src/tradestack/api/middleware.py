"""Pure ASGI middleware: request id, access log and request metrics in one pass."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradestack.kit.logging import ACCESS_LOG
from tradestack.kit.metrics import API_REQUEST_DURATION, API_REQUESTS, BATCHED

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/orders/{id}``), never the raw path."""
    route: Any = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED_ROUTE


class RequestContextMiddleware:
    """Give each request an id, log it once as JSON and record its duration by route template.

    Labels are bounded: unmatched paths share one route label and unknown methods are "OTHER",
    so a scanner cannot create new time series.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def _record(self, method: str, route: str, status_class: str, duration: float) -> None:
        key = (method, route, status_class)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (API_REQUEST_DURATION.labels(*key), API_REQUESTS.labels(*key))
        BATCHED.observe(series[0], duration)
        BATCHED.inc(series[1])

    def begin(self, scope: Scope) -> str:
        """Start a request: its id (the caller's valid ``X-Request-ID``, else a random one), kept in the request
        state and bound to the log context until `finish`."""
        request_id = ""
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(value):
                request_id = value.decode("ascii")
                break
        if not request_id:
            request_id = os.urandom(16).hex()  # 32 hex digits, random (as a UUID4's, without building one)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        return request_id

    def finish(self, scope: Scope, request_id: str, status: int, started: float) -> None:
        """End a request begun by `begin`: its duration recorded by route template, its access-log line written."""
        duration = time.perf_counter() - started
        route = route_template(scope)
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
        self._record(method, route, f"{status // 100}xx", duration)
        ACCESS_LOG.request(
            request_id,
            route=route,
            method=scope["method"],
            path=scope["path"],
            status=status,
            duration_ms=round(duration * 1000, 3),
        )
        structlog.contextvars.unbind_contextvars("request_id")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = self.begin(scope)
        status = 500
        header_value = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, header_value)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.finish(scope, request_id, status, started)
