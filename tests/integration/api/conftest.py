"""Fixtures of the API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tradestack.api.app import create_app
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database

Open = Callable[..., Any]


@pytest.fixture
def open_app(settings: Settings) -> Open:
    """Start an app with some settings changed; yields it and a client with a chosen client IP."""

    @asynccontextmanager
    async def open_with(
        client_ip: str = "10.1.2.3", base_url: str = "http://testserver", **changes: Any
    ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        changed = settings.model_copy(update=changes)
        db = Database(changed)
        await migrations.upgrade(db.engine)
        await db.dispose()
        app = create_app(changed)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(client_ip, 1234))
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
                yield app, http

    return open_with
