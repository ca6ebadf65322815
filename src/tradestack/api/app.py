"""The application factory."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

import tradestack
from tradestack.api.dashboard import install_dashboard
from tradestack.api.errors import ErrorBoundaryMiddleware, install_error_handlers
from tradestack.api.hot import install_hot_routes
from tradestack.api.lifecycle import lifespan_for, start_checkpoints
from tradestack.api.middleware import RequestContextMiddleware
from tradestack.api.openapi import install_openapi
from tradestack.api.routing import guard_included_routers
from tradestack.api.security import install_security
from tradestack.api.ws import router as ws_router
from tradestack.audit.endpoints import router as audit_router
from tradestack.audit.service import start_audit_chainer
from tradestack.books.endpoints import books as books_router
from tradestack.books.endpoints import router as accounts_router
from tradestack.books.tasks import start_equity_recorder
from tradestack.identity import endpoints as identity_endpoints
from tradestack.identity.browser import browser as browser_session_router
from tradestack.identity.service import start_identity
from tradestack.kit.config import Settings, get_settings
from tradestack.kit.logging import configure_logging
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.endpoints import router as marketdata_router
from tradestack.marketdata.tasks import start_market_data
from tradestack.ops.endpoints import router as ops_router
from tradestack.ops.probes import start_probes
from tradestack.signals import endpoints as signals_endpoints
from tradestack.signals.tasks import start_signals_warmer
from tradestack.strategy.endpoints import backtests as backtests_router
from tradestack.strategy.endpoints import strategies as strategies_router
from tradestack.strategy.runner import start_strategies
from tradestack.trading import endpoints as trading_endpoints
from tradestack.trading.engine import start_engine

NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's native OpenTelemetry off: we export Prometheus metrics and JSON logs; left on, it asks the global
OpenTelemetry providers (environment variables included) on every request whether one is configured."""


def create_app(settings: Settings | None = None, *, runtime_factory: Callable[[], Runtime] | None = None) -> FastAPI:
    """Build the API. Refuses to build with default secrets outside development."""
    settings = settings or get_settings()
    settings.check_secrets()
    configure_logging(settings.log_level, json=settings.log_json)
    app = FastAPI(
        title="Tradestack",
        version=tradestack.__version__,
        telemetry=NO_TELEMETRY,
        lifespan=lifespan_for(
            runtime_factory or (lambda: Runtime.open(settings)),
            on_start=[
                start_checkpoints,
                start_identity,
                start_audit_chainer,
                start_market_data,
                start_engine,
                start_equity_recorder,
                start_strategies,
                start_probes,
                start_signals_warmer,
            ],
        ),
    )
    install_error_handlers(app)
    install_security(app, settings)
    # Just inside the request context: outages answer 503, bugs 500, and the connection stays open.
    app.add_middleware(ErrorBoundaryMiddleware)
    # Added last, so outermost: every response, refusals included, gets a request id and a log line.
    app.add_middleware(RequestContextMiddleware)
    app.include_router(ops_router)
    app.include_router(identity_endpoints.auth)
    app.include_router(browser_session_router)
    app.include_router(identity_endpoints.keys)
    app.include_router(identity_endpoints.users)
    app.include_router(audit_router)
    app.include_router(marketdata_router)
    app.include_router(accounts_router)
    app.include_router(trading_endpoints.orders)
    app.include_router(trading_endpoints.risk)
    app.include_router(books_router)
    app.include_router(signals_endpoints.signals)
    app.include_router(signals_endpoints.models)
    app.include_router(backtests_router)
    app.include_router(strategies_router)
    app.include_router(signals_endpoints.predict)
    app.include_router(ws_router)
    install_openapi(app)
    install_dashboard(app)
    guard_included_routers(app)
    install_hot_routes(app)
    return app
