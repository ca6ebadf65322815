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
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    """Put `HotRoutes` in front of ``app``'s router (call once every route is added); returns it."""
    hot = HotRoutes(app, app.router.middleware_stack)
    app.router.middleware_stack = hot
    return hot
