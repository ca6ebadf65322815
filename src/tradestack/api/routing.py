"""Route lookup without walking every router: a path-prefix guard on each included router.

FastAPI (0.165) keeps an included router as one entry of the app's routes and, for each request,
asks every entry in turn whether it matches; an included router answers by trying each of its
routes (regex, scope bookkeeping). A request for the eighth router's third route therefore tried
~40 routes - a third of the app's own CPU per authenticated request. A route can only match
(fully, or partially for a 405) a path that starts with the literal part of its template
(``/api/market/quotes``, ``/api/orders/`` for ``/api/orders/{order_id}``), so each included
router first checks the path against the literal prefixes of its routes and answers "no match"
at once when none fits. The result of a match is exactly FastAPI's own whenever a prefix fits.

The prefixes are recomputed if routes are added to a guarded router later. A router holding
anything whose path cannot be read statically (a nested router, a mount, a host, a frontend
group) is left unguarded, and so is a request under a ``root_path``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute
from starlette.types import Scope

Matcher = Callable[[Scope], tuple[Match, Scope]]


def literal_prefixes(routes: list[BaseRoute]) -> tuple[str, ...] | None:
    """The literal start of every route's path template; None if one of them has no readable template.

    A nested included router counts as unreadable: its routes' paths lack the prefix it was included with.
    """
    prefixes = set()
    for route in routes:
        if not isinstance(route, Route | WebSocketRoute):
            return None
        prefixes.add(route.path.split("{", 1)[0])
    return tuple(sorted(prefixes))


class PrefixGuard:
    """`matches` of one included router, answering NONE for a path none of its routes can match."""

    def __init__(self, router_routes: list[BaseRoute], matches: Matcher) -> None:
        self._routes = router_routes
        self._matches = matches
        self._count = -1
        self._prefixes: tuple[str, ...] | None = None

    def __call__(self, scope: Scope) -> tuple[Match, Scope]:
        if len(self._routes) != self._count:
            self._prefixes = literal_prefixes(self._routes)
            self._count = len(self._routes)
        prefixes = self._prefixes
        if prefixes is not None and not scope.get("root_path") and not scope["path"].startswith(prefixes):
            return Match.NONE, {}
        return self._matches(scope)


def guard_included_routers(app: FastAPI) -> int:
    """Put a `PrefixGuard` in front of each included router of ``app``; return how many were guarded."""
    guarded = 0
    for route in app.router.routes:
        inner: Any = getattr(route, "original_router", None)
        if inner is None or isinstance(route.matches, PrefixGuard):
            continue
        # An instance attribute, so the router keeps its type (OpenAPI and the tests unwrap it).
        route.matches = PrefixGuard(inner.routes, route.matches)  # type: ignore[method-assign]
        guarded += 1
    return guarded
