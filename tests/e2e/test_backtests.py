"""The Backtests screen in Chromium: a run stored by `tradestack backtest run` shows with the API's figures.

Acceptance of issue 18 (*Backtests*: runs and their tearsheets): the list and the run's metrics equal
`GET /api/backtests[/{id}]`, the equity curve is drawn (canvas not blank), axe-core finds no serious or
critical violation, and the screen is photographed at desktop and phone width.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

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

RUN = ["backtest", "run", "sma_cross", "--symbols", "AAPL", "--from", "2010-01-01", "--to", "2012-12-31"]
STATS = ("total_return", "annual_return", "annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar", "hit_rate")
COUNTS = ("max_drawdown_duration_periods", "trades", "round_trips", "periods_per_year")


def _percent(value: float | None, digits: int = 2) -> str:
    return "\u2013" if value is None else f"{value * 100:.{digits}f} %"


def _value(cell: Locator) -> float | None:
    text = cell.get_attribute("data-value")
    return None if text in (None, "") else float(text)


def _stored_run(server: Server, viewer: Person) -> dict[str, Any]:
    with server.client(viewer.token) as client:
        before = {run["id"] for run in client.get("/api/backtests").json()["backtests"]}
        ran = server.cli(*RUN)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        runs = client.get("/api/backtests").json()["backtests"]
        (new,) = [run for run in runs if run["id"] not in before]
        assert new["id"] in ran.stdout  # the CLI names the run it stored
        detail: dict[str, Any] = client.get(f"/api/backtests/{new['id']}").json()
        return detail


def _open(page: Page, server: Server, path: str) -> None:
    page.goto(server.base + path)


def test_backtests_screen_shows_a_stored_run_with_the_apis_figures(server: Server, page: Page, browser: Browser) -> None:
    viewer = make_person(server, "viewer")  # GET /api/backtests needs market-data read: every role
    sign_in(page, server, viewer.email)
    expect(page.get_by_test_id("last-candle")).to_be_visible(timeout=15_000)
    with server.client(viewer.token) as client:
        empty = client.get("/api/backtests").json()["backtests"] == []
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Backtests").click()
    if empty:  # a fresh server: the screen says how to create a run
        expect(page.get_by_test_id("run-command")).to_have_text("tradestack backtest run sma_cross --symbols AAPL")

    run = _stored_run(server, viewer)
    metrics = run["metrics"]
    page.reload()
    row = page.locator(f"[data-testid=backtests-table] tr[data-run-id='{run['id']}']")
    expect(row).to_be_visible(timeout=15_000)
    expect(row.get_by_role("link", name="sma_cross")).to_be_visible()
    expect(row).to_contain_text("AAPL")
    expect(row).to_contain_text(f"{run['first_bar'][:10]} \u2013 {run['last_bar'][:10]}")
    expect(row.locator("[data-field=total_return]")).to_have_text(_percent(metrics["total_return"]))
    expect(row.locator("[data-field=sharpe]")).to_have_text(f"{metrics['sharpe']:.2f}")
    expect(row.locator("[data-field=max_drawdown]")).to_have_text(_percent(metrics["max_drawdown"]))
    expect(row.locator("[data-field=trades]")).to_have_text(str(metrics["trades"]))
    for name in ("total_return", "sharpe", "max_drawdown", "trades"):
        assert _value(row.locator(f"[data-field={name}]")) == metrics[name], name

    row.get_by_role("link", name="sma_cross").click()
    table = page.get_by_test_id("backtest-metrics")
    expect(table).to_be_visible(timeout=15_000)
    for name in STATS + COUNTS:
        assert _value(table.locator(f"[data-field={name}]")) == metrics[name], name
    expect(table.locator("[data-field=total_return]")).to_have_text(_percent(metrics["total_return"]))
    expect(table.locator("[data-field=final_equity]")).to_have_attribute("data-value", run["final_equity"])
    expect(table.locator("[data-field=fees_paid]")).to_have_attribute("data-value", metrics["fees_paid"])
    equity = run["result"]["equity"]
    chart = page.get_by_test_id("equity-chart")
    expect(chart).to_have_attribute("data-points", str(len(equity)))
    assert float(chart.get_attribute("data-last-equity") or "nan") == equity[-1]["equity"]
    # The drawn drawdown reaches the run's maximum drawdown (same curve, same starting peak).
    assert float(chart.get_attribute("data-max-drawdown") or "nan") == pytest.approx(metrics["max_drawdown"], abs=1e-9)
    page.wait_for_function(f"() => ({LINE_PIXELS})([41, 98, 255]) > 200", timeout=15_000)
    assert page.evaluate(LINE_PIXELS, [239, 83, 80]) > 50  # the drawdown pane
    # The run's orders and fills, as it stored them.
    orders, fills = run["result"]["orders"], run["result"]["fills"]
    assert fills, "the run filled nothing: pick a period with crossings"
    expect(page.locator("[data-testid=backtest-orders] tbody tr")).to_have_count(len(orders))
    expect(page.locator("[data-testid=backtest-fills] tbody tr")).to_have_count(len(fills))
    first_fill = page.locator("[data-testid=backtest-fills] tbody tr").first
    expect(first_fill).to_contain_text(fills[0]["price"])
    expect(first_fill).to_contain_text(fills[0]["quantity"])
    violations = axe_violations(page)
    screenshot(page, "backtests")
    assert not violations, violations

    with phone_page(browser, server, viewer.email) as phone:
        _open(phone, server, f"/backtests/{run['id']}")
        expect(phone.get_by_test_id("equity-chart")).to_have_attribute("data-points", str(len(equity)), timeout=15_000)
        phone.wait_for_function(f"() => ({LINE_PIXELS})([41, 98, 255]) > 100", timeout=15_000)
        check_phone_screen(phone, "backtests-phone")
