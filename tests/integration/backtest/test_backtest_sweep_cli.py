"""`tradestack backtest sweep`: the grid on the shipped AAPL bars, the table, the heatmap, the engine's agreement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradestack.cli import app

pytestmark = pytest.mark.usefixtures("clean_env")
runner = CliRunner()


def test_sweep_prints_the_best_combinations_agreeing_with_the_engine(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "backtest", "sweep", "sma_cross", "--symbols", "AAPL", "--from", "2004-01-01", "--to", "2012-12-31",
            "--grid", "fast=5,10,20", "--grid", "slow=30:90:30", "--fees", "10", "--top", "3", "--out", str(tmp_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "9 combinations" in result.output
    assert result.output.count("same ") == 3
    assert (tmp_path / "sweep-sma_cross-AAPL-sharpe.png").read_bytes()[:4] == b"\x89PNG"
    document = json.loads((tmp_path / "sweep-sma_cross-AAPL.json").read_text())
    assert len(document["combinations"]) == 9
    assert {"fast", "slow", "sharpe", "trades", "final_equity"} <= set(document["combinations"][0])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["top_k", "--symbols", "AAPL", "--grid", "k=1"], "no vectorised form"),
        (["sma_cross", "--symbols", "AAPL", "--grid", "fast"], "name=v1,v2"),
        (["sma_cross", "--symbols", "AAPL", "--grid", "fast=5", "--metric", "luck"], "--metric 'luck'"),
        (["sma_cross", "--symbols", "AAPL", "--grid", "fast=40,50"], "no combination of the grid is valid"),
        (["sma_cross", "--symbols", "AAPL", "--grid", "fast=5", "--fees", "x"], "must be numbers"),
    ],
)
def test_sweep_refuses_bad_input_with_what_to_fix(arguments: list[str], message: str) -> None:
    result = runner.invoke(app, ["backtest", "sweep", *arguments])
    assert result.exit_code == 2
    assert message in result.output
