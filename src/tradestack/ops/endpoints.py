"""Health, readiness, version and metrics endpoints (open to anonymous callers by design)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from tradestack.kit.metrics import render_latest
from tradestack.kit.web import DrainDep, OrjsonResponse, RuntimeDep, error_body, hot_path
from tradestack.ops.probes import external_health
from tradestack.ops.schemas import DatabaseHealth, ExternalHealth, Health, Readiness, Version
from tradestack.ops.service import HealthService

router = APIRouter(tags=["ops"])


HEALTHY = Health(status="ok").model_dump_json().encode()
"""The liveness answer, serialised once: probes call it several times a second per replica."""


async def _healthy(_: Request) -> Response:
    return Response(HEALTHY, media_type="application/json")


@router.get("/api/health", response_model=Health, summary="The process is alive")
@hot_path(_healthy)
async def health() -> Response:
    return Response(HEALTHY, media_type="application/json")


@router.get(
    "/api/ready",
    response_model=Readiness,
    summary="Ready for traffic: database and cache reachable, schema at head, not draining",
    responses={503: {"description": "Not ready; the failing checks are listed"}},
)
async def ready(runtime: RuntimeDep, drain: DrainDep) -> Readiness | Response:
    report = await HealthService(runtime).readiness(draining=drain.draining)
    if report.status == "not_ready":
        failing = sorted(name for name, check in report.checks.items() if not check.ok)
        body = error_body("NotReadyError", "failing checks: " + ", ".join(failing), **report.model_dump(mode="json"))
        return OrjsonResponse(body, status_code=503)
    return report


@router.get("/api/health/database", response_model=DatabaseHealth, summary="Database round-trip latency and pool usage")
@router.get("/api/db/health", response_model=DatabaseHealth, summary="Alias of /api/health/database")
async def database_health(runtime: RuntimeDep) -> DatabaseHealth | Response:
    report = await HealthService(runtime).database_health()
    if report.status != "ok":
        return OrjsonResponse(
            error_body("DatabaseUnavailableError", "database did not answer", **report.model_dump(mode="json")),
            status_code=503,
        )
    return report


@router.get(
    "/api/health/external",
    response_model=ExternalHealth,
    summary="Every configured venue and feed: reachable, last success, latency, error",
    responses={503: {"description": "A required venue is down; the failing ones are named"}},
)
async def external(runtime: RuntimeDep) -> ExternalHealth | Response:
    report = await external_health(runtime)
    if report.status != "ok":
        failing = [target.name for target in report.targets if target.required and not target.ok]
        body = error_body("ExternalDependencyDownError", "unreachable: " + ", ".join(failing), **report.model_dump(mode="json"))
        return OrjsonResponse(body, status_code=503)
    return report


@router.get("/api/version", response_model=Version, summary="Package version, git commit and schema revision")
async def version(runtime: RuntimeDep) -> Version:
    return await HealthService(runtime).version()


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    body, content_type = render_latest()
    return Response(body, media_type=content_type)
