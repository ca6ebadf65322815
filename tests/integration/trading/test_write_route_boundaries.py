"""Every write route, every field of its body, fed the boundary values: never a 5xx.

The routes and their body fields are read from the app's own OpenAPI document, so a route added
later is walked too. Each request starts from a valid body (hand-written for the routes whose
success matters; built from the schema otherwise) with one field replaced by one boundary value.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from tradestack.identity.permissions import Role

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote  # type: ignore[import-not-found]
from .test_orders import limit_buy, open_account  # type: ignore[import-not-found]

NUMBERS: list[Any] = [
    "0",
    "-1",
    "-0",
    "1e30",
    "1E+20",
    "1e-30",
    "1e999999",
    "-1e999999",
    str(10**14),  # one digit more than a price column holds
    str(10**20),  # one digit more than an amount column holds
    "99999999999999999999999999999999",
    "0.00000000001",  # one decimal place more than a price column holds
    "0.0000000000000000001",  # one decimal place more than an amount column holds
    "NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    0,
    -1,
    10**40,
    1e308,
]
STRINGS: list[Any] = ["", " ", "x" * 101, "x" * 5000, "\u0000", "é🙂", None, True, [], {}]

WRITE_METHODS = ("post", "put", "patch", "delete")
LAST = ("/api/auth/logout", "/api/risk/halt")  # walked last: they end the session or stop trading


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _from_schema(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A plausible value for `schema` (its example or default when it has one)."""
    schema = _resolve(spec, schema)
    if "examples" in schema:
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return _from_schema(spec, option)
    kind = schema.get("type")
    if kind == "object":
        return {name: _from_schema(spec, sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [_from_schema(spec, schema.get("items", {}))]
    return {"integer": 1, "number": "1", "boolean": False}.get(str(kind), "x")


def _field_paths(spec: dict[str, Any], schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every property of the body, nested objects' properties included."""
    schema = _resolve(spec, schema)
    paths: list[tuple[str, ...]] = []
    for name, sub in schema.get("properties", {}).items():
        paths.append((*prefix, name))
        resolved = _resolve(spec, sub)
        if resolved.get("type") == "object" and "properties" in resolved:
            paths.extend(_field_paths(spec, resolved, (*prefix, name)))
    return paths


def _with(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = dict(body)
    if len(path) == 1:
        changed[path[0]] = value
    else:
        changed[path[0]] = _with(dict(changed.get(path[0]) or {}), path[1:], value)
    return changed


async def test_no_write_route_answers_5xx_to_boundary_values(
    app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://testserver"
    ) as walking:
        await _walk(app, client, walking, make_user, publish_quote)


async def _walk(
    app: FastAPI, client: httpx.AsyncClient, walking: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    walker = await make_user(Role.TRADER)  # signs in and out on the auth routes
    admin = await make_user(Role.ADMIN)
    subject = await make_user(Role.VIEWER)  # the user the admin routes act on
    account = await open_account(client, trader, "1000000")
    await publish_quote("AAPL", "150.00", "150.02")
    working = await client.post("/api/orders", json=limit_buy(account, "working", price="140.00"), headers=trader.headers)
    assert working.status_code == 201, working.text
    key = await client.post("/api/keys", json={"name": "k", "scopes": ["read"]}, headers=trader.headers)
    assert key.status_code == 201, key.text
    limits = {
        "max_order_notional": "1000000",
        "max_position_quantity": "100000",
        "max_gross_exposure": "10000000",
        "price_collar_pct": "10",
        "max_orders_per_minute": 100000,
        "daily_loss_limit": "100000",
    }
    valid: dict[str, dict[str, Any]] = {
        "OrderCreate": limit_buy(account, "x", price="140.00", quantity="1"),
        "OrderReplace": {"quantity": "5", "limit_price": "139.00"},
        "AccountCreate": {"name": "walk", "base_currency": "USD", "deposit": {"currency": "USD", "amount": "1000"}},
        "RiskLimitsBody": limits,
        "LoginRequest": {"email": walker.email, "password": walker.password},
        "RefreshRequest": {"refresh_token": walker.refresh_token},
        "LogoutRequest": {"refresh_token": walker.refresh_token},
        "HaltRequest": {"scope": account, "state": "reducing", "reason": "walk"},
        "ResumeRequest": {"scope": account, "reason": "walk"},
        "UserCreate": {"email": "walk@example.com", "password": "correct horse battery staple", "role": "viewer"},
        "ApiKeyCreate": {"name": "walk", "scopes": ["read"]},
    }
    unique = {"OrderCreate": "client_order_id", "UserCreate": "email"}
    must_succeed = {"OrderCreate", "OrderReplace", "AccountCreate", "RiskLimitsBody", "UserCreate", "ApiKeyCreate"}
    path_values = {"account_id": account, "order_id": working.json()["id"], "key_id": key.json()["id"], "user_id": subject.id}

    spec = app.openapi()
    routes = sorted(
        ((path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items() if method in WRITE_METHODS),
        key=lambda route: (route[0] in LAST, route[1] == "delete", route[0]),
    )
    failures: list[str] = []
    walked = 0
    for path, method, op in routes:
        url = path
        query: dict[str, str] = {}
        for parameter in op.get("parameters", []):
            value = path_values.get(parameter["name"], "x")
            if parameter["in"] == "path":
                url = url.replace("{" + parameter["name"] + "}", value)
            elif parameter.get("required"):
                query[parameter["name"]] = value
        headers = admin.headers if path.startswith(("/api/users", "/api/risk")) else trader.headers
        if path.startswith("/api/auth"):
            headers = walker.headers
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            response = await walking.request(method, url, params=query, headers=headers)
            walked += 1
            if response.status_code >= 500:
                failures.append(f"{method.upper()} {url}: {response.status_code} {response.text[:200]}")
            continue
        name = schema.get("$ref", "").rsplit("/", 1)[-1]
        base = valid.get(name) or _from_schema(spec, schema)

        def fresh(body: dict[str, Any], *, schema_name: str = name) -> dict[str, Any]:
            field = unique.get(schema_name)
            if field is None:
                return body
            tag = uuid.uuid4().hex[:12]
            return body | {field: f"walk-{tag}@example.com" if field == "email" else f"walk-{tag}"}

        if name in must_succeed:
            response = await client.request(method, url, params=query, json=fresh(base), headers=headers)
            assert response.status_code < 300, f"{method.upper()} {url} with a valid body: {response.text}"
        for field in _field_paths(spec, schema):
            for value in [*NUMBERS, *STRINGS]:
                body = fresh(_with(base, field, value)) if field[-1] != unique.get(name) else _with(base, field, value)
                response = await walking.request(method, url, params=query, json=body, headers=headers)
                walked += 1
                if response.status_code >= 500:
                    failures.append(f"{method.upper()} {url} {'.'.join(field)}={value!r}: {response.status_code}")
    assert walked > 1000
    assert not failures, "\n".join(failures)
