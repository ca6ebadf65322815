"""The real app plus one slow route, for shutdown tests (run as a server by `run_slow_app.py`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from fastapi import FastAPI

from tradestack.api.app import create_app


def create() -> FastAPI:
    app = create_app()

    @app.get("/test/slow")
    async def slow(seconds: float = 1.0) -> dict[str, float]:
        marker = os.environ.get("SLOW_APP_STARTED_MARKER")
        if marker:
            Path(marker).write_text("started")  # tells the test the request is in flight
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    return app
