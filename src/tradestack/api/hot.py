"""Hot routes: the busiest routes answered without FastAPI's routing and dependency solving.

FastAPI spends, per request, more CPU finding the route (every included router is asked in
turn) and solving its dependencies (a recursive walk of the dependency tree, query parameters
parsed and validated through pydantic) than the quotes or health endpoints spend on their
work. A route marked with `tradestack.kit.web.hot_path` is therefore looked up here by
(method, path) in one dictionary read and answered by its hot path, which checks the same
things in straight code: authentication and permission (`tradestack.identity.deps.authorize`),
the usual query or body; anything unusual is handed to the route itself, so every refusal
reads exactly as FastAPI's own. Errors raised by a hot path travel the same way as the
route's (the app's exception handlers render them).

`HotRoutes` sits where FastAPI's router was, inside the exception middleware; `install_hot_routes`
puts it there once the routes are final. With ``app.dependency_overrides`` set (tests), every
request takes the full route. Routes with path parameters are not looked up here.

The middleware in front of the router costs a hot request as much again; `HotFront`, at the
entrance of the middleware stack, does those layers' work for a hot request in one pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi._body_limit import AppBodyLimitMiddleware
from fastapi.routing import APIRoute
from fastapi.telemetry._asgi import ExceptionTelemetryMiddleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradestack.api.errors import ErrorBoundaryMiddleware, error_response_for
from tradestack.api.middleware import REQUEST_ID_HEADER, RequestContextMiddleware
from tradestack.api.security import (
    RATE_LIMIT_EXEMPT_PATHS,
    BodySizeLimitMiddleware,
    JsonCORSMiddleware,
    RateLimitMiddleware,
    SecurityHeadersMiddleware,
    TrustedHostMiddleware,
    host_is_allowed,
    with_missing,
)
from tradestack.kit.web import HotHandler, hot_path_of, routes_of


class HotRoutes:
    """ASGI app answering the hot routes of ``app`` itself and handing every other request to ``inner``."""

    def __init__(self, app: FastAPI, inner: ASGIApp) -> None:
        self._app = app
        self._inner = inner
        self.routes: dict[tuple[str, str], tuple[APIRoute, HotHandler]] = {}
        for route in routes_of(app.router.routes):
            handler = hot_path_of(route.endpoint) if isinstance(route, APIRoute) else None
            if handler is None or not isinstance(route, APIRoute) or "{" in route.path:
                continue
            for method in route.methods or ():
                self.routes[(method, route.path)] = (route, handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path") and not self._app.dependency_overrides:
            hot = self.routes.get((scope["method"], scope["path"]))
            if hot is not None:
                await self._answer(hot[0], hot[1], scope, receive, send)
                return
        await self._inner(scope, receive, send)

    async def _answer(self, route: APIRoute, handler: HotHandler, scope: Scope, receive: Receive, send: Send) -> None:
        # What FastAPI's router leaves in the scope for a match: the access log and per-route limits read the route.
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope.setdefault("path_params", {})
        scope.setdefault("router", self._app.router)
        request = Request(scope, receive, send)
        response = await handler(request)
        if response is not None:
            await response(scope, receive, send)
            return
        body: bytes | None = getattr(request, "_body", None)
        await self._inner(scope, receive if body is None else _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that first hands over ``body`` again (read by a hot path that then handed the request over)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def install_hot_routes(app: FastAPI) -> HotRoutes:
    """Put `HotRoutes` in front of ``app``'s router (call once every route is added), and `HotFront` at the entrance
    of its middleware stack once that is built (on the first request); returns the `HotRoutes`."""
    hot = HotRoutes(app, app.router.middleware_stack)
    app.router.middleware_stack = hot
    build = app.build_middleware_stack

    def build_with_front() -> ASGIApp:
        return HotFront(app, build(), hot)

    app.build_middleware_stack = build_with_front  # type: ignore[method-assign]
    return hot


class HotFront:
    """The entrance of the app's middleware stack: hot-route requests through it in one pass.

    The stack a request crosses before `HotRoutes` is a dozen layers (Starlette's and FastAPI's
    outer middleware, then ours: request context, error boundary, trusted hosts, security headers,
    CORS, body size, rate limits), each a coroutine and most wrapping ``send``; for the busiest
    routes that cost about as much CPU as the route's own work. A request for a hot route that
    none of them would treat specially - a path and method `HotRoutes` answers, an allowed Host,
    no CORS ``Origin`` when CORS is on, a body declared by a ``Content-Length`` within the limit,
    no ``root_path``, no ``app.dependency_overrides`` - gets here what those layers give it, by the
    layers' own code: its request id, log context, access-log line and request metrics
    (`RequestContextMiddleware.begin`/``finish``), its limits counted in one go
    (`RateLimitMiddleware.check`, 429 included), the ``RateLimit-*``, security and request-id headers
    added by one ``send`` wrapper, the app's exception handlers (Starlette's exception middleware,
    called as the next layer) and the error boundary's 500/503. Every other request goes through
    the whole stack. If the stack holds a layer this class does not know (middleware added by a
    deployment, FastAPI's own body limit), every request does.
    """

    def __init__(self, app: FastAPI, stack: ASGIApp, hot: HotRoutes) -> None:
        self.app = stack  # what walks the stack by ``.app`` (e.g. instrumentation) finds the layers behind
        self._fastapi = app
        self._hot = hot
        self._layers = _known_layers(stack)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        layers = self._layers
        if (
            layers is not None
            and scope["type"] == "http"
            and (scope["method"], scope["path"]) in self._hot.routes
            and not scope.get("root_path")
            and not self._fastapi.dependency_overrides
            and _fits(scope, layers)
        ):
            await self._serve(layers, scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _serve(self, layers: _Layers, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        context = layers.context
        request_id = context.begin(scope)
        id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        security = layers.security.headers_for(scope)
        status = 0
        applied: list[dict[str, str]] = []

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                RateLimitMiddleware.with_limit_headers(scope, applied, headers)
                message["headers"] = [*with_missing(headers, security), id_header]
            await send(message)

        try:
            exempt = scope["path"] in RATE_LIMIT_EXEMPT_PATHS
            counted = [] if exempt else await layers.limits.check(scope, send_with_headers)
            if counted is not None:
                applied = counted
                await layers.exceptions(scope, receive, send_with_headers)
        except Exception as exc:
            if status:
                raise  # the answer has started: nothing else can be sent (the connection closes)

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", []), id_header]
                await send(message)

            # As `ErrorBoundaryMiddleware` answers (outside the security headers).
            await error_response_for(exc, request_id)(scope, receive, send_with_id)
        finally:
            context.finish(scope, request_id, status or 500, started)


@dataclass(frozen=True, slots=True)
class _Layers:
    """The layers of a middleware stack whose work `HotFront` does for them."""

    context: RequestContextMiddleware
    trusted: TrustedHostMiddleware
    security: SecurityHeadersMiddleware
    cors: bool
    max_body: int
    limits: RateLimitMiddleware
    exceptions: ASGIApp


# Layers that add nothing to a hot-route request `HotFront` serves: they only act on an exception
# escaping everything else (answered by the error boundary's code here), or on a request it does not serve.
_PASSIVE_LAYERS = (ServerErrorMiddleware, ExceptionTelemetryMiddleware, ErrorBoundaryMiddleware)


def _known_layers(stack: ASGIApp) -> _Layers | None:
    """The layers of ``stack`` down to Starlette's exception middleware; None if it holds one unknown here."""
    found: dict[type, Any] = {}
    layer: Any = stack
    while not isinstance(layer, ExceptionMiddleware):
        kind = type(layer)
        if kind is AppBodyLimitMiddleware:
            if not isinstance(layer.app, (RequestContextMiddleware, *_PASSIVE_LAYERS)):
                return None  # FastAPI's own body limit is set: its wrapper counts the body
        elif kind not in (*_PASSIVE_LAYERS, *_SERVED_LAYERS):
            return None
        found[kind] = layer
        layer = getattr(layer, "app", None)
        if layer is None:
            return None
    if not all(kind in found for kind in _REQUIRED_LAYERS):
        return None
    return _Layers(
        context=found[RequestContextMiddleware],
        trusted=found[TrustedHostMiddleware],
        security=found[SecurityHeadersMiddleware],
        cors=JsonCORSMiddleware in found,
        max_body=found[BodySizeLimitMiddleware].max_bytes,
        limits=found[RateLimitMiddleware],
        exceptions=layer,
    )


_REQUIRED_LAYERS = (
    RequestContextMiddleware,
    ErrorBoundaryMiddleware,
    TrustedHostMiddleware,
    SecurityHeadersMiddleware,
    BodySizeLimitMiddleware,
    RateLimitMiddleware,
)
_SERVED_LAYERS = (*_REQUIRED_LAYERS, JsonCORSMiddleware)


def _fits(scope: Scope, layers: _Layers) -> bool:
    """Whether none of the layers `HotFront` stands in for would treat this request specially."""
    host = b""
    for name, value in scope["headers"]:
        if name == b"host":
            if not host:
                host = value
        elif name == b"content-length":
            if not value.isdigit() or int(value) > layers.max_body:
                return False  # refused by the body size limit
        elif name == b"transfer-encoding" or (name == b"origin" and layers.cors):
            return False  # a body counted as it is read; a CORS request
    trusted = layers.trusted
    return trusted.allow_any or host_is_allowed(host.decode("latin-1"), trusted.allowed_hosts)
