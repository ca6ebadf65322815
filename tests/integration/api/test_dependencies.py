"""Every dependency of every route is async: FastAPI runs a plain function in its threadpool, on every request."""

from __future__ import annotations

import inspect

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute

from tradestack.api.app import create_app
from tradestack.kit.config import Settings
from tradestack.kit.web import routes_of


def _sync_calls(dependant: Dependant, where: str) -> list[str]:
    found = []
    for dependency in dependant.dependencies:
        call = dependency.call
        if call is not None and not (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)):
            found.append(f"{where}: {getattr(call, '__qualname__', call)}")
        found += _sync_calls(dependency, where)
    return found


def test_no_route_has_a_sync_dependency(settings: Settings) -> None:
    app = create_app(settings)
    sync = []
    routes = [route for route in routes_of(app.routes) if isinstance(route, APIRoute | APIWebSocketRoute)]
    assert len(routes) > 50
    for route in routes:
        sync += _sync_calls(route.dependant, route.path)
    assert sync == []
