"""The dashboard is served at / as the router's fallback: SPA routes get index.html, the API keeps its 404s."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tradestack.api.dashboard import Dashboard

INDEX = '<!doctype html><html><head><script type="module" src="/assets/app-1234.js"></script></head></html>'


@pytest.fixture
def built(app: FastAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "app-1234.js").write_text("console.log('x')")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    dashboard = app.router.default
    assert isinstance(dashboard, Dashboard)
    monkeypatch.setattr(dashboard, "root", tmp_path.resolve())
    return tmp_path


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
async def test_spa_routes_get_index_and_assets_are_immutable(client: httpx.AsyncClient, built: Path) -> None:
    for path in ("/", "/markets/AAPL", "/orders", "/operations"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.text == INDEX
        assert response.headers["cache-control"] == "no-cache"
        assert "script-src 'self'" in response.headers["content-security-policy"]
    asset = await client.get("/assets/app-1234.js")
    assert asset.status_code == 200
    assert "immutable" in asset.headers["cache-control"]
    assert asset.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    assert (await client.get("/favicon.svg")).text == "<svg/>"
    assert (await client.get("/assets/gone-999.js")).status_code == 404
    assert (await client.get("/../../etc/passwd")).text == INDEX  # never a file outside the build


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
async def test_api_paths_are_not_shadowed(client: httpx.AsyncClient, built: Path) -> None:
    for path in ("/api/nothing-here", "/api", "/ws/x", "/metrics/x", "/docs/x"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "NotFoundError"
    assert (await client.get("/api/health")).json() == {"status": "ok"}
    assert (await client.get("/metrics")).headers["content-type"].startswith("text/plain")
    posted = await client.post("/markets")
    assert posted.status_code == 404
    assert posted.json()["error"] == "NotFoundError"
    assert (await client.post("/api/health")).status_code == 405  # a matched route keeps its answer


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
async def test_without_a_build_the_root_says_how_to_build(
    app: FastAPI, client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.router.default, "root", tmp_path.resolve())
    response = await client.get("/")
    assert response.status_code == 503
    assert "make web" in response.json()["detail"]
