"""Parity on a 1-minute AAPL replay: the backtester and the paper stack (embedded, SQLite, SimClock) agree order
by order, or each difference has a checked cause; a deliberate difference in one host is caught."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradestack.backtest.engine import BacktestConfig
from tradestack.backtest.parity import PaperReplay, Verdict, parity_report
from tradestack.cli import app
from tradestack.domain.marketdata import Bar, Timeframe
from tradestack.domain.matching import FeeModel
from tradestack.domain.orders import OrderStatus
from tradestack.kit.config import Settings
from tradestack.marketdata import datasets
from tradestack.strategy import runner as runner_module
from tradestack.strategy.parity import replay_on_paper

DAY = date(2026, 7, 29)


def _session() -> list[Bar]:
    bars = datasets.load("aapl-intraday").bars[("AAPL", Timeframe.M1)]
    return [bar for bar in bars if bar.ts.date() == DAY]


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> PaperReplay:
    """One session (390 one-minute bars) of sma_cross through the paper stack, shared by the tests."""
    where = tmp_path_factory.mktemp("parity")
    return asyncio.run(replay_on_paper("sma_cross", "AAPL", _session(), Settings(), data_dir=where))


def test_every_order_of_a_one_minute_aapl_replay_is_matched_or_explained(paper: PaperReplay) -> None:
    report = parity_report(paper)
    assert report.bars == 390
    assert report.quotes == 390 * 4
    assert len(report.comparisons) >= 6, "too few orders to say anything"
    unexplained = [c for c in report.comparisons if c.verdict is Verdict.UNEXPLAINED]
    assert unexplained == []
    assert report.ok
    assert report.share_matched_or_explained == 1.0
    for row in report.comparisons:
        assert row.backtest is not None  # the same decisions in both hosts
        assert row.paper is not None
        assert (row.backtest.side, row.backtest.quantity) == (row.paper.side, row.paper.quantity)
        assert row.paper.status is OrderStatus.FILLED
        assert row.paper.filled == row.backtest.filled == row.paper.quantity
        assert row.verdict is Verdict.MATCHED or row.causes
    names = {cause.name for row in report.comparisons for cause in row.causes}
    assert "quote vs print" in names  # the paper host fills at the replayed quote's touch, the backtest at the print
    # the paper books hold what the stored fills say: cash = capital - buys + sells - fees
    moved = sum(
        (
            (-1 if row.paper.side.value == "buy" else 1) * f.quantity * f.price - f.fee
            for row in report.comparisons
            if row.paper is not None
            for f in row.paper.fills
        ),
        Decimal(0),
    )
    assert paper.cash == paper.config.capital + moved


def test_a_different_fee_in_one_host_is_an_unexplained_difference(paper: PaperReplay) -> None:
    def dearer(config: BacktestConfig) -> BacktestConfig:
        fee = config.fee
        return replace(config, fee=FeeModel(bps=fee.bps + 1, minimum=fee.minimum, places=fee.places))

    report = parity_report(paper, perturb=dearer)
    assert not report.ok
    first = next(c for c in report.comparisons if c.verdict is Verdict.UNEXPLAINED)
    assert first.causes[0].name == "unexplained"
    assert "fee" in first.causes[0].detail
    assert report.to_dict()["unexplained"] >= 1


@pytest.mark.usefixtures("clean_env")
def test_the_parity_command_prints_the_table_and_writes_the_json(tmp_path: Path) -> None:
    output = tmp_path / "parity.json"
    result = CliRunner().invoke(
        app,
        [
            "backtest", "parity", "sma_cross", "--symbol", "AAPL", "--from", "2026-07-29", "--to", "2026-07-29",
            "--param", "fast=5", "--param", "slow=20", "--json", str(output),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "matched or explained" in result.output
    document = json.loads(output.read_text())
    assert document["bars"] == 390
    assert document["ok"] is True
    assert document["unexplained"] == 0
    assert document["orders"] == document["matched"] + document["explained"] > 0
    assert document["params"] == {"fast": "5", "slow": "20"}


def test_the_parity_command_refuses_bad_input() -> None:
    refused = CliRunner().invoke(app, ["backtest", "parity", "sma_cross", "--symbol", "AAPL,MSFT"])
    assert refused.exit_code != 0
    assert "one symbol" in refused.output
    refused = CliRunner().invoke(app, ["backtest", "parity", "sma_cross", "--symbol", "AAPL", "--steps", "2"])
    assert refused.exit_code != 0
    assert "at least 4 quotes" in refused.output


def test_a_runner_killed_and_restarted_mid_run_decides_as_one_that_never_stopped(
    paper: PaperReplay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack is dropped (no stop hook, no on_stop) five bars before the first crossover and a new engine and
    runner start on the same database: the restarted host gets its newest stored bars back (a window of 40 here,
    with the numbers of the bars before it), so it sends the same orders (ids keyed by the bar) and gets the same
    fills. Without the stored history its SMAs warm up again and the first two orders are never sent."""
    monkeypatch.setattr(runner_module, "HISTORY_BARS", 40)
    bars = _session()
    first = paper.orders[0].decided_at
    kill = next(i for i, bar in enumerate(bars) if bar.ts == first) - 5
    restarted = asyncio.run(
        replay_on_paper("sma_cross", "AAPL", bars, Settings(), data_dir=tmp_path, restart_at=bars[kill].ts + timedelta(seconds=1))
    )

    def decisions(run: PaperReplay) -> list[tuple[object, ...]]:
        return [(o.decided_at, o.rank, o.side, o.quantity, o.status, o.fills) for o in run.orders]

    assert decisions(restarted) == decisions(paper)
    assert restarted.cash == paper.cash
    assert parity_report(restarted).ok
    with sqlite3.connect(tmp_path / "parity.db") as db:
        kept = db.execute("select count(*), min(number), max(number) from strategy_bars").fetchone()
    assert kept == (70, 320, 389)  # pruned every 40 bars to the newest 40 or more
