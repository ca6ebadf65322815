"""The prefix guard answers exactly as FastAPI's own routing, without walking unrelated routers."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI

from tradestack.api.routing import PrefixGuard, guard_included_routers, literal_prefixes


def _app() -> FastAPI:
    app = FastAPI()
    health = APIRouter()
    orders = APIRouter(prefix="/api/orders")
    nested_outer, nested_inner = APIRouter(prefix="/api"), APIRouter(prefix="/inner")

    @health.get("/api/health")
    async def healthy() -> dict[str, str]:
        return {"status": "ok"}

    @orders.get("")
    async def listed() -> list[str]:
        return ["o1"]

    @orders.get("/{order_id}")
    async def one(order_id: str) -> dict[str, str]:
        return {"id": order_id}

    @nested_inner.get("/thing")
    async def thing() -> dict[str, str]:
        return {"thing": "yes"}

    nested_outer.include_router(nested_inner)
    for router in (health, orders, nested_outer):
        app.include_router(router)
    return app


def test_literal_prefixes_stop_at_the_first_parameter_and_refuse_nested_routers() -> None:
    app = _app()
    included = [route for route in app.router.routes if getattr(route, "original_router", None) is not None]
    assert literal_prefixes(included[1].original_router.routes) == ("/api/orders", "/api/orders/")  # type: ignore[attr-defined]
    assert literal_prefixes(included[2].original_router.routes) is None  # type: ignore[attr-defined]


async def test_guarded_app_answers_like_the_unguarded_one() -> None:
    plain, guarded = _app(), _app()
    assert guard_included_routers(guarded) == 3
    assert guard_included_routers(guarded) == 0  # idempotent
    requests = [
        ("GET", "/api/health"), ("GET", "/api/orders"), ("GET", "/api/orders/42"), ("POST", "/api/orders/42"),
        ("GET", "/api/orders/"), ("GET", "/api/inner/thing"), ("GET", "/api/nowhere"), ("DELETE", "/api/health"),
    ]  # fmt: skip
    for app in (plain, guarded):
        app.state.answers = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            for method, path in requests:
                response = await client.request(method, path, follow_redirects=False)
                app.state.answers.append((method, path, response.status_code, response.text))
    assert guarded.state.answers == plain.state.answers
    assert [answer[2] for answer in guarded.state.answers] == [200, 200, 200, 405, 307, 200, 404, 405]


def test_guard_skips_the_router_for_other_paths_and_follows_added_routes() -> None:
    calls: list[str] = []
    routes = APIRouter()

    @routes.get("/api/orders/{order_id}")
    async def one(order_id: str) -> str:
        return order_id

    def inner(scope: dict[str, object]) -> tuple[object, dict[str, object]]:
        calls.append(str(scope["path"]))
        return "inner", {}

    guard = PrefixGuard(routes.routes, inner)  # type: ignore[arg-type]
    assert guard({"type": "http", "path": "/api/market/quotes"})[0].name == "NONE"  # type: ignore[union-attr]
    assert guard({"type": "http", "path": "/api/orders/1"})[0] == "inner"
    assert guard({"type": "http", "path": "/api/market/quotes", "root_path": "/base"})[0] == "inner"  # not guarded

    @routes.get("/api/market/quotes", include_in_schema=False)
    async def late() -> str:
        return "late"

    assert guard({"type": "http", "path": "/api/market/quotes"})[0] == "inner"  # the added route is seen
    assert calls == ["/api/orders/1", "/api/market/quotes", "/api/market/quotes"]
