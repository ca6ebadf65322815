"""Tearsheets: the PNG and the self-contained HTML page, and the figures they draw."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np

from tradestack.backtest import tearsheet
from tradestack.backtest.data import BarSeries, microseconds_of
from tradestack.backtest.engine import BacktestConfig, run_backtest
from tradestack.backtest.metrics import compute_metrics
from tradestack.backtest.report import result_document
from tradestack.domain.marketdata import Timeframe
from tradestack.domain.matching import FeeModel
from tradestack.marketdata import datasets
from tradestack.strategy.examples import SmaCross


def _run() -> tuple[tearsheet.Tearsheet, dict[str, object], BarSeries]:
    bars = datasets.load("us-equities-daily").bars[("AAPL", Timeframe.D1)]
    series = BarSeries.from_bars("AAPL", bars).between(datetime(2008, 1, 1, tzinfo=UTC), datetime(2010, 12, 31, tzinfo=UTC))
    config = BacktestConfig(fee=FeeModel(bps=Decimal(10), places=2))
    result = run_backtest(SmaCross(["AAPL"]), [series], config)
    metrics = compute_metrics(result)
    return tearsheet.Tearsheet.of_result(result, metrics, [series], "sma_cross AAPL"), result_document(result, metrics), series


def test_tearsheet_files_are_written_and_the_page_needs_nothing_from_outside(tmp_path: Path) -> None:
    sheet, _, _ = _run()
    png, page = tearsheet.write(sheet, tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 3  # equity and drawdown, monthly returns, trades on AAPL's closes
    assert all(len(image) > 1000 for image in images)
    assert re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text) is None
    for outside in ("<script", "@import", "url(", "<link"):
        assert outside not in text
    for part in ("Monthly returns", "sharpe"):
        assert part in text
    assert text.count("<td>buy</td>") == sum(1 for f in sheet.fills if f.side == "buy") > 5


def test_a_stored_document_draws_the_same_page_and_without_bars_says_so(tmp_path: Path) -> None:
    sheet, document, series = _run()
    metrics = document["metrics"]
    assert isinstance(metrics, dict)
    again = tearsheet.Tearsheet.of_document(document, metrics, "100000", [series], "stored")
    assert np.array_equal(again.equity_ts, sheet.equity_ts)
    assert np.allclose(again.equity, sheet.equity)
    assert [(f.ts_us, f.side, f.price) for f in again.fills] == [(f.ts_us, f.side, f.price) for f in sheet.fills]
    bare = tearsheet.Tearsheet.of_document(document, metrics, "100000", [], "stored")
    _, page = tearsheet.write(bare, tmp_path, "bare")
    text = page.read_text()
    assert "no price chart" in text
    assert text.count("data:image/png;base64,") == 2


def test_monthly_returns_chain_month_ends_from_the_capital() -> None:
    days = [datetime(2024, 1, 10, tzinfo=UTC), datetime(2024, 1, 31, tzinfo=UTC), datetime(2024, 3, 5, tzinfo=UTC)]
    ts = np.asarray([microseconds_of(d) for d in days], dtype=np.int64)
    years, table = tearsheet.monthly_returns(ts, np.asarray([101.0, 110.0, 99.0]), 100.0)
    assert years == [2024]
    assert table[0, 0] == 110.0 / 100.0 - 1
    assert np.isnan(table[0, 1])  # no bar in February
    assert table[0, 2] == 99.0 / 110.0 - 1


def test_drawdown_counts_the_capital_as_the_first_peak() -> None:
    assert np.allclose(tearsheet.drawdown(np.asarray([90.0, 120.0, 60.0]), 100.0), [-0.1, 0.0, -0.5], rtol=0, atol=1e-15)
