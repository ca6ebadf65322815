"""The OpenAPI document says what the server really answers.

FastAPI advertises its own ``HTTPValidationError`` (``detail`` an array) for 422, while every
error here is ``{"error", "detail": "<text>", "fields"?}``. This replaces it with our `Error`
schema and lists, on every operation, each error status it can answer:

* 400 (Host header refused), 429 (rate limits apply to every route) and 503 (a backend is
  unreachable, with ``Retry-After``) everywhere;
* 422 where there is anything to validate (parameters or a body), 413 where there is a body;
* 401 and 403 where a caller must authenticate; 404 and 409 where the operation names or
  changes something.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from tradestack.identity.deps import get_principal, permission_of
from tradestack.kit.web import routes_of

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "description": "Every error: the error class and what to do about it.",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "examples": ["ValidationFailedError"]},
        "detail": {"type": "string", "description": "What went wrong and what to fix."},
        "fields": {"type": "array", "items": {"type": "string"}, "description": "422: one entry per invalid field."},
    },
}
DESCRIPTIONS = {
    "400": "Bad request (e.g. a Host header this server does not serve)",
    "401": "Not signed in, or the credentials are invalid or expired",
    "403": "Signed in, but without the permission this needs",
    "404": "Not found, or not yours",
    "409": "Conflicts with the current state",
    "413": "Request body too large",
    "422": "Invalid input: the detail names what to fix",
    "429": "Rate limited: see Retry-After",
    "503": "A backend is unreachable or the server is not ready: retry after Retry-After",
}
CHANGING = {"post", "put", "patch", "delete"}


def _needs_principal(dependant: Dependant) -> bool:
    return any(
        dep.call is get_principal or (dep.call is not None and permission_of(dep.call) is not None) or _needs_principal(dep)
        for dep in dependant.dependencies
    )


def _error_statuses(route: APIRoute, method: str, operation: dict[str, Any]) -> list[str]:
    statuses = ["400", "429", "503"]
    has_body = "requestBody" in operation
    if operation.get("parameters") or has_body:
        statuses.append("422")
    if has_body:
        statuses.append("413")
    if _needs_principal(route.dependant):
        statuses += ["401", "403", "404"]
        if method in CHANGING:
            statuses.append("409")
    elif "{" in route.path_format:
        statuses.append("404")
    return statuses


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The document FastAPI generates, with our error schema and every error status."""
    document = get_openapi(title=app.title, version=app.version, routes=app.routes, description=app.description)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    routes = {
        (route.path_format, method.lower()): route
        for route in routes_of(app.routes)
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            route = routes.get((path, method))
            if route is None or not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            for status in _error_statuses(route, method, operation):
                existing = responses.get(status, {})
                responses[status] = {
                    "description": existing.get("description") or DESCRIPTIONS[status],
                    "content": error_content,
                }
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve `build_openapi` at /openapi.json (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
