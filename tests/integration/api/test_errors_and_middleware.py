"""One error shape, request ids, JSON access logs."""

from __future__ import annotations

import httpx
import pytest
import redis.exceptions
from fastapi import FastAPI
from pydantic import BaseModel

from tradestack.core.errors import ConflictError, NotFoundError


class Probe(BaseModel):
    quantity: int


@pytest.fixture
def probe_routes(app: FastAPI) -> None:
    """Routes that raise each kind of error (added to the app under test only)."""

    @app.get("/probe/missing")
    async def missing() -> None:
        raise NotFoundError("order 42 does not exist: check the id")

    @app.get("/probe/conflict")
    async def conflict() -> None:
        raise ConflictError("client_order_id already used with different content", headers={"X-Hint": "new-id"})

    @app.post("/probe/body")
    async def body(probe: Probe) -> Probe:
        return probe

    @app.get("/probe/bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    @app.get("/probe/database-away")
    async def database_away() -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")

    @app.get("/probe/cache-away")
    async def cache_away() -> None:
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


@pytest.mark.usefixtures("probe_routes")
async def test_typed_errors_render_as_error_and_detail(client: httpx.AsyncClient) -> None:
    response = await client.get("/probe/missing")
    assert response.status_code == 404
    assert response.json() == {"error": "NotFoundError", "detail": "order 42 does not exist: check the id"}
    response = await client.get("/probe/conflict")
    assert response.status_code == 409
    assert response.headers["x-hint"] == "new-id"
    assert response.json()["error"] == "ConflictError"


@pytest.mark.usefixtures("probe_routes")
async def test_validation_errors_name_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/probe/body", json={"quantity": "many"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "ValidationFailedError"
    assert body["detail"].startswith("body.quantity:")
    response = await client.post("/probe/body", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


async def test_unknown_route_and_wrong_method(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "NotFoundError"
    response = await client.post("/api/health")
    assert response.status_code == 405
    assert response.json()["error"] == "MethodNotAllowedError"
    # Allow names every method of the path, served by several routes.
    response = await client.request("OPTIONS", "/api/accounts")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


async def test_openapi_advertises_the_error_schema_and_statuses(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    cancel_all = document["paths"]["/api/orders"]["delete"]["responses"]
    assert {"401", "404", "422", "429", "503"} <= set(cancel_all)
    assert cancel_all["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    asks = document["components"]["schemas"]["OrderBookOut"]["properties"]["asks"]
    assert asks["items"]["items"] == {"type": "string"}


@pytest.mark.usefixtures("probe_routes")
async def test_unexpected_error_is_a_500_with_the_request_id(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/probe/bug", headers={"X-Request-ID": "req-bug-1"})
    assert response.status_code == 500
    assert response.json()["error"] == "InternalServerError"
    assert "req-bug-1" in response.json()["detail"]


@pytest.mark.usefixtures("probe_routes")
async def test_errors_end_with_the_answer_so_the_connection_stays_open(client: httpx.AsyncClient) -> None:
    # The client raises if an exception escaped the app after the answer (uvicorn would then close the connection).
    bug = await client.get("/probe/bug")
    assert bug.status_code == 500
    for path, what in (("/probe/database-away", "the database"), ("/probe/cache-away", "the cache")):
        away = await client.get(path)
        assert away.status_code == 503
        assert away.headers["retry-after"] == "2"
        assert away.json()["error"] == "ServiceUnavailableError"
        assert away.json()["detail"].startswith(what)
    metrics = (await client.get("/metrics")).text
    assert 'backend_unavailable_total{backend="database",operation="request"}' in metrics


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    generated = (await client.get("/api/health")).headers["x-request-id"]
    assert len(generated) == 32
    hostile = await client.get("/api/health", headers={"X-Request-ID": "a b\tc" + "x" * 300})
    assert hostile.headers["x-request-id"] != "a b\tc" + "x" * 300
