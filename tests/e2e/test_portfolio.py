"""The Portfolio screen's equity chart in Chromium: points recorded by `tradestack up` drawn as the API gives them.

Acceptance of issue 18 (*Portfolio*: equity in the base currency with its chart over time): the chart
draws (canvas pixels in the equity colour), its last point is the API's for the same range, axe-core
finds no serious or critical violation, and the screen is photographed at desktop and phone width.
The server records every second here (`TRADESTACK_EQUITY_RECORD_SECONDS=1`, see conftest).
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Browser, Page, expect

from .conftest import (
    LINE_PIXELS,
    Person,
    Server,
    axe_violations,
    check_phone_screen,
    make_person,
    phone_page,
    screenshot,
    sign_in,
)

pytestmark = pytest.mark.slow


def _recorded(server: Server, person: Person, at_least: int) -> None:
    """Wait until the account has `at_least` recorded points (the recorder runs every second)."""
    with server.client(person.token) as client:
        for _ in range(60):
            points = client.get("/api/portfolio/equity", params={"account_id": person.account_id}).json()["points"]
            if len(points) >= at_least:
                return
            time.sleep(0.5)
    raise AssertionError(f"fewer than {at_least} equity points after 30 s: {points}")


def _check_last_point_is_the_apis(page: Page, server: Server, person: Person) -> None:
    chart = page.get_by_test_id("equity-chart")
    last_ts = chart.get_attribute("data-last-ts")
    assert last_ts, "the chart names no last point"
    with server.client(person.token) as client:
        answer = client.get("/api/portfolio/equity", params={"account_id": person.account_id, "to": last_ts}).json()
    assert answer["points"][-1]["ts"] == last_ts
    assert chart.get_attribute("data-last-equity") == answer["points"][-1]["equity"]
    assert chart.get_attribute("data-points") == str(len(answer["points"]))


def test_portfolio_charts_the_recorded_equity_as_the_api_gives_it(server: Server, page: Page, browser: Browser) -> None:
    trader = make_person(server, "trader", account=True)
    with server.client(trader.token) as client:  # hold BTC too, so the equity moves with its live quotes
        bought = client.post(
            "/api/orders",
            json={
                "account_id": trader.account_id,
                "client_order_id": "e2e-equity-btc",
                "symbol": "BTC-USD",
                "side": "buy",
                "type": "market",
                "quantity": "0.01",
            },
        )
        assert bought.status_code in (200, 201), bought.text
    _recorded(server, trader, 3)

    sign_in(page, server, trader.email)
    expect(page.get_by_test_id("last-candle")).to_be_visible(timeout=15_000)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Portfolio").click()
    chart = page.get_by_test_id("equity-chart")
    expect(chart).to_be_visible(timeout=15_000)
    expect(page.get_by_role("region", name="Equity over time")).to_contain_text("nothing before that is reconstructed")
    page.wait_for_function(f"() => ({LINE_PIXELS})([41, 98, 255]) > 100", timeout=15_000)
    _check_last_point_is_the_apis(page, server, trader)
    violations = axe_violations(page)
    screenshot(page, "portfolio-equity")
    assert not violations, violations

    with phone_page(browser, server, trader.email) as phone:
        phone.goto(server.base + "/portfolio")
        expect(phone.get_by_test_id("equity-chart")).to_be_visible(timeout=15_000)
        phone.wait_for_function(f"() => ({LINE_PIXELS})([41, 98, 255]) > 50", timeout=15_000)
        _check_last_point_is_the_apis(phone, server, trader)
        check_phone_screen(phone, "portfolio-equity-phone")
