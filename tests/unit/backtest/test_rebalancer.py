"""The top-k long/short rebalancer in the backtester, on scores given by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from tradestack.backtest.data import BarSeries, microseconds_of
from tradestack.backtest.engine import BacktestConfig, run_backtest
from tradestack.domain.ledger import check_zero_sum
from tradestack.domain.marketdata import Side
from tradestack.strategy.api import StrategyError
from tradestack.strategy.examples import ScoreTable, TopKRebalancer, build

START = datetime(2024, 1, 1, tzinfo=UTC)
SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT")


def _series(symbol: str, price: int, days: int = 30) -> BarSeries:
    close = np.full(days, price * 100, dtype=np.int64)
    return BarSeries(
        symbol,
        np.array([microseconds_of(START + timedelta(days=i)) for i in range(days)], dtype=np.int64),
        close, close + 50, close - 50, close, np.full(days, 1_000_000, dtype=np.int64), 2,
    )  # fmt: skip


def _table(days: int = 30) -> ScoreTable:
    """AAPL best and IBM worst for the first 10 days, then MSFT best and GOOG worst."""
    rows = []
    for day in range(days):
        first = day < 10
        rows.append({"AAPL": 0.3 if first else 0.0, "GOOG": 0.1 if first else -0.4, "IBM": -0.2, "MSFT": 0.0 if first else 0.5})
    return ScoreTable("alpha-test", tuple((START + timedelta(days=i)).date() for i in range(days)), tuple(rows))


def test_long_the_top_short_the_bottom_and_rotate_when_the_ranking_changes() -> None:
    series = [_series(s, p) for s, p in zip(SYMBOLS, (100, 50, 20, 40), strict=True)]
    strategy = TopKRebalancer(SYMBOLS, k=1, every=5, gross=Decimal("0.5"), scores=_table())
    result = run_backtest(strategy, series, BacktestConfig(allow_short=True))
    check_zero_sum(result.journal)
    first_fills = [(t.symbol, t.side, t.quantity) for t in result.trades if t.ts == START + timedelta(days=1)]
    # 100 000 x 0.5 / 2 = 25 000 a side: 250 AAPL long, 1 250 IBM short
    assert sorted(first_fills) == [("AAPL", Side.BUY, Decimal(250)), ("IBM", Side.SELL, Decimal(1250))]
    positions = {s: q for s, q in result.books.holdings.items()}
    assert set(positions) == {"MSFT", "GOOG"}  # rotated at the rebalance on day 10
    assert positions["MSFT"].position.quantity > 0
    assert positions["GOOG"].position.quantity < 0
    assert strategy.rebalances == 6  # days 0, 5, 10, 15, 20, 25


def test_scores_are_only_read_up_to_the_current_day() -> None:
    table = _table()
    assert table.at(START - timedelta(days=1)) == {}
    assert table.at(START + timedelta(days=9, hours=23))["AAPL"] == 0.3
    assert table.at(START + timedelta(days=10))["MSFT"] == 0.5


def test_without_scores_or_with_bad_parameters_it_says_what_to_fix() -> None:
    with pytest.raises(StrategyError, match="needs the promoted alpha model"):
        build("top_k", SYMBOLS, {})
    with pytest.raises(StrategyError, match="2k <= the 4 symbols"):
        build("top_k", SYMBOLS, {"k": "3"}, scores=_table())
    with pytest.raises(StrategyError, match="no parameter 'scores'"):
        build("top_k", SYMBOLS, {"scores": "x"}, scores=_table())
