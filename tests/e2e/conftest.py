"""A real `tradestack up` and Debian's Chromium driven by Playwright (never a downloaded browser).

The server runs on a free loopback port with its own data directory; users of every role are
created through the API. Screenshots go to ``var/e2e/screenshots`` (or
``TRADESTACK_E2E_SCREENSHOTS``). Chromium comes from ``scripts/ensure-browser.sh`` (``make test``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from tradestack.api.dashboard import STATIC_DIR

from ..conftest import unavailable  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[2]
TRADESTACK = Path(sys.executable).parent / "tradestack"
ADMIN_EMAIL = "admin@tradestack.local"
ADMIN_PASSWORD = "e2e-admin-password-long"
PASSWORD = "e2e password for every role"
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
LINE_PIXELS = """(colour) => {
  // Pixels of one colour (the equity line #2962ff, the drawdown #ef5350) on the equity chart's canvases.
  let count = 0;
  for (const canvas of document.querySelectorAll('[data-testid=equity-chart] canvas')) {
    const context = canvas.getContext('2d');
    if (!context || !canvas.width || !canvas.height) continue;
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < data.length; i += 4) {
      if (Math.abs(data[i] - colour[0]) < 8 && Math.abs(data[i + 1] - colour[1]) < 8 &&
          Math.abs(data[i + 2] - colour[2]) < 8) count++;
    }
  }
  return count;
}"""
SCREENSHOTS = Path(os.environ.get("TRADESTACK_E2E_SCREENSHOTS", ROOT / "var" / "e2e" / "screenshots"))


@dataclass
class Server:
    base: str
    admin_token: str
    data_dir: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`tradestack ARGS` against this server's database (its data directory), output captured."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTACK_")}
        env.update(TRADESTACK_DATA_DIR=str(self.data_dir), TRADESTACK_LOG_LEVEL="warning")
        return subprocess.run([str(TRADESTACK), *args], env=env, capture_output=True, text=True, timeout=300, check=False)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.base, headers=headers, timeout=10)


@dataclass
class Person:
    email: str
    role: str
    token: str
    account_id: str | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        unavailable("chromium", "run scripts/ensure-browser.sh (make test does)")
        raise AssertionError("unreachable")
    return found


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not (STATIC_DIR / "index.html").is_file():
        unavailable("the built dashboard", "run make web")
    data_dir = tmp_path_factory.mktemp("e2e")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTACK_")}
    env.update(
        TRADESTACK_ADMIN_PASSWORD=ADMIN_PASSWORD,
        TRADESTACK_LOG_LEVEL="warning",
        TRADESTACK_ARGON2_TIME_COST="1",
        TRADESTACK_ARGON2_MEMORY_KIB="8192",
        TRADESTACK_RATE_LIMIT_AUTH="100000/minute",
        TRADESTACK_LOGIN_IP_LIMITS="100000/minute",
        TRADESTACK_RATE_LIMIT_PER_IP="100000/minute",
        TRADESTACK_EQUITY_RECORD_SECONDS="1",  # the portfolio chart gets points within the test
    )
    process = subprocess.Popen(
        [str(TRADESTACK), "up", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # the first start imports the shipped history (slow on a busy machine)
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "tradestack up exited"
            time.sleep(0.3)
        login = httpx.post(f"{base}/api/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
        yield Server(base, login.json()["access_token"], data_dir)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def make_person(server: Server, role: str, *, account: bool = False) -> Person:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    with server.client() as admin:
        created = admin.post("/api/users", json={"email": email, "password": PASSWORD, "role": role})
        assert created.status_code == 201, created.text
    login = httpx.post(f"{server.base}/api/auth/login", json={"email": email, "password": PASSWORD})
    person = Person(email, role, login.json()["access_token"])
    if account:
        with server.client(person.token) as client:
            opened = client.post(
                "/api/accounts",
                json={"name": "e2e paper", "base_currency": "AUD", "deposit": {"amount": "100000", "currency": "AUD"}},
            )
            assert opened.status_code == 201, opened.text
            person.account_id = opened.json()["id"]
    return person


# Module scope, not session: the sync API runs an event loop until it exits, and the asyncio
# tests collected after this module cannot start theirs while it runs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="dark")
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    # The CSP stays strict: anything it blocks (an inline script or style, eval) shows up here.
    opened.on("console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None)
    yield opened
    context.close()
    assert not errors, f"uncaught errors or CSP violations in the page: {errors}"


def sign_in(page: Page, server: Server, email: str, password: str = PASSWORD) -> None:
    page.goto(server.base + "/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the current page (axe injected by the test)."""
    if not AXE.is_file():
        unavailable("axe-core", "run npm ci in web/ (make test does)")
    page.evaluate(AXE.read_text())  # evaluated by the test driver, so the page's strict CSP stays on
    result: dict[str, Any] = page.evaluate("() => axe.run(document, { resultTypes: ['violations'] })")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


PHONE: ViewportSize = {"width": 390, "height": 844}


@contextmanager
def phone_page(browser: Browser, server: Server, email: str) -> Iterator[Page]:
    """A phone-width page (light theme) signed in as `email`, on the Markets screen once its chart is there."""
    context = browser.new_context(viewport=PHONE, color_scheme="light", is_mobile=True)
    phone = context.new_page()
    try:
        sign_in(phone, server, email)
        expect(phone.get_by_test_id("last-candle")).to_be_visible(timeout=15_000)
        yield phone
    finally:
        context.close()


def check_phone_screen(phone: Page, name: str) -> None:
    """The screen fits the phone's width (naming what sticks out), axe finds nothing serious, and it is photographed."""
    wide = phone.evaluate(
        "() => [...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > 391)"
        ".slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"
    )
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1, (
        f"the phone layout scrolls sideways: {wide}"
    )
    violations = axe_violations(phone)
    screenshot(phone, name)
    assert not violations, violations
