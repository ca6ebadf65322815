"""`tradestack backtest run`: the shipped AAPL bars through the CLI, its summary, its JSON, its refusals."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradestack.cli import app

pytestmark = pytest.mark.usefixtures("clean_env")
runner = CliRunner()


def test_backtest_run_prints_the_summary_and_writes_the_result(tmp_path: Path) -> None:
    output = tmp_path / "run.json"
    result = runner.invoke(
        app,
        [
            "backtest", "run", "sma_cross", "--symbols", "AAPL", "--from", "2005-01-01", "--to", "2012-12-31",
            "--param", "fast=10", "--param", "slow=30", "--capital", "100000", "--fees", "10",
            "--output", str(output), "--no-store",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "final equity" in result.output
    assert "Sharpe" in result.output
    document = json.loads(output.read_text())
    assert document["strategy"] == "sma_cross"
    assert document["bars"] == 2013
    assert document["equity"][0]["ts"].startswith("2005-01-03")
    assert document["equity"][-1]["ts"].startswith("2012-12-31")
    fills = document["fills"]
    assert len(fills) > 10
    assert all(
        Decimal(f["fee"]) == (Decimal(f["price"]) * Decimal(f["quantity"]) / 1000).quantize(Decimal("0.01")) for f in fills
    )
    cash = Decimal(document["config"]["capital"]) + sum(
        (Decimal(f["quantity"]) * Decimal(f["price"]) * (1 if f["side"] == "sell" else -1) - Decimal(f["fee"]) for f in fills),
        Decimal(0),
    )
    assert Decimal(document["final_cash"]) == cash
    assert sum(Decimal(p["amount"]) for e in document["journal"] for p in e["postings"]) == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nope", "--symbols", "AAPL"], "unknown strategy 'nope'"),
        (["sma_cross", "--symbols", "AAPL", "--param", "fast"], "name=value"),
        (["sma_cross", "--symbols", "AAPL", "--param", "speed=3"], "no parameter 'speed'"),
        (["sma_cross", "--symbols", "AAPL", "--param", "fast=40"], "fast < slow"),
        (["sma_cross", "--symbols", "AAPL", "--from", "2012-01-01", "--to", "2011-01-01"], "before --from"),
        (["sma_cross", "--symbols", "AAPL", "--capital", "lots"], "--capital 'lots' is not a number"),
        (["sma_cross", "--symbols", "ZZZZ"], "no 1d bars of ZZZZ"),
        (["sma_cross", "--symbols", "AAPL", "--from", "2020-01-01"], "no bars of AAPL between"),
    ],
)
def test_backtest_run_refuses_bad_input_with_what_to_fix(arguments: list[str], message: str) -> None:
    result = runner.invoke(app, ["backtest", "run", *arguments, "--no-store"])
    assert result.exit_code == 2
    assert message in result.output


def test_backtest_run_stores_the_run_in_the_database(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTACK_DATABASE_URL", sqlite_url)
    arguments = ["backtest", "run", "bollinger", "--symbols", "AAPL", "--from", "2010-01-01", "--fees", "5"]
    refused = runner.invoke(app, arguments)
    assert refused.exit_code == 2
    assert "tradestack db upgrade" in refused.output
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    stored = runner.invoke(app, arguments)
    assert stored.exit_code == 0, stored.output
    assert "stored as backtest" in stored.output


def test_tearsheets_from_a_run_and_from_a_stored_run(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRADESTACK_DATABASE_URL", sqlite_url)
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    arguments = ["backtest", "run", "sma_cross", "--symbols", "AAPL", "--from", "2009-01-01", "--to", "2011-12-31"]
    ran = runner.invoke(app, [*arguments, "--tearsheet", str(tmp_path / "run")])
    assert ran.exit_code == 0, ran.output
    assert (tmp_path / "run" / "tearsheet.png").stat().st_size > 10_000
    assert "data:image/png;base64," in (tmp_path / "run" / "tearsheet.html").read_text()
    run_id = ran.output.split("stored as backtest")[1].split()[0]
    drawn = runner.invoke(app, ["backtest", "tearsheet", run_id, "--out", str(tmp_path / "stored")])
    assert drawn.exit_code == 0, drawn.output
    page = (tmp_path / "stored" / f"tearsheet-{run_id}.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # the bars were read again: trades on the price chart
    assert "no price chart" not in page
    missing = runner.invoke(app, ["backtest", "tearsheet", "nope", "--out", str(tmp_path)])
    assert missing.exit_code == 2
    assert "no backtest 'nope'" in missing.output
