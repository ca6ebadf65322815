"""The web dashboard: the built single-page app (``web/`` → ``api/static``) served at ``/``.

It is served as the router's fallback, so it can never shadow a route: a request that matches
any route (even with another method) is that route's; only what matches nothing reaches here.
GET/HEAD of a file in the build is that file (hashed ``/assets/*`` cached for a year); any other
GET/HEAD outside the API paths is ``index.html`` (client-side routes such as ``/orders``), never
cached so a new release is picked up at once. API-like paths (``/api``, ``/ws``, ``/metrics``,
``/docs``) and other methods keep the JSON 404. Without a build, ``/`` says how to make one.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tradestack.kit.web import OrjsonResponse, error_body

STATIC_DIR = Path(__file__).parent / "static"
RESERVED_PREFIXES = ("/api/", "/ws", "/metrics", "/docs", "/redoc", "/openapi.json")
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"

mimetypes.add_type("application/javascript", ".js")
mimetypes.add_type("text/css", ".css")
mimetypes.add_type("image/svg+xml", ".svg")


def _reserved(path: str) -> bool:
    return path == "/api" or any(path == prefix.rstrip("/") or path.startswith(prefix) for prefix in RESERVED_PREFIXES)


class Dashboard:
    """ASGI fallback serving the built dashboard, delegating everything else to ``not_found``."""

    def __init__(self, not_found: ASGIApp, root: Path = STATIC_DIR) -> None:
        self.not_found = not_found
        self.root = root.resolve()

    def _file(self, path: str) -> Path | None:
        relative = path.lstrip("/")
        if not relative:
            return None
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "/")
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or _reserved(path):
            await self.not_found(scope, receive, send)
            return
        response: Response
        found = self._file(path)
        index = self.root / "index.html"
        if found is not None:
            cache = IMMUTABLE if path.startswith("/assets/") else NO_CACHE
            response = FileResponse(found, headers={"Cache-Control": cache})
        elif path.startswith("/assets/"):
            response = OrjsonResponse(error_body("NotFoundError", f"no such asset {path}: reload the page"), status_code=404)
        elif index.is_file():
            response = FileResponse(index, media_type="text/html", headers={"Cache-Control": NO_CACHE})
        else:
            detail = "the web dashboard is not built: run `make web` (or `make install`), the API is at /docs"
            response = OrjsonResponse(error_body("ServiceUnavailableError", detail), status_code=503)
        await response(scope, receive, send)


def install_dashboard(app: FastAPI, root: Path = STATIC_DIR) -> None:
    """Make the dashboard the fallback of ``app``'s router: it only sees what no route matches."""
    app.router.default = Dashboard(app.router.default, root)
