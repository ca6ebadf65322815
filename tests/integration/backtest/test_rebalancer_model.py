"""The top-k rebalancer on the promoted alpha model: scores read from the registry, a backtest long and short."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from tradestack.backtest.data import BarSeries
from tradestack.backtest.engine import BacktestConfig, run_backtest
from tradestack.cli import app
from tradestack.core.errors import ConflictError
from tradestack.domain.ledger import check_zero_sum
from tradestack.domain.marketdata import Side, Timeframe
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.flows import import_datasets
from tradestack.signals.service import SignalService
from tradestack.strategy.examples import ScoreTable, build

from ..signals.test_signals_api import SYMBOLS, _subset

FROM = datetime(2012, 1, 1, tzinfo=UTC)


async def test_rebalancer_trades_the_promoted_models_ranking_long_and_short(runtime: Runtime) -> None:
    loaded = _subset()
    await import_datasets(runtime, [loaded])
    bars = {symbol: loaded.series[(symbol, Timeframe.D1)].bars for symbol in SYMBOLS}
    service = SignalService(runtime)
    with pytest.raises(ConflictError, match="no promoted alpha model"):
        await service.score_history(bars)
    trained = await service.train(evaluate=False, rounds=10)
    await service.promote(trained.model.version)

    history = await service.score_history(bars)
    assert history.model_version == trained.model.version
    assert history.symbols == tuple(sorted(SYMBOLS))
    assert history.scores.shape == (len(history.days), len(SYMBOLS))
    rows = tuple({s: v for s, v in zip(history.symbols, day, strict=True) if v == v} for day in history.scores.tolist())
    table = ScoreTable(history.model_version, history.days, rows)
    strategy = build("top_k", list(SYMBOLS), {"k": "1", "every": "5"}, scores=table)
    series = [BarSeries.from_bars(s, bars[s]).between(FROM, None) for s in SYMBOLS]
    result = run_backtest(strategy, series, BacktestConfig(allow_short=True))
    check_zero_sum(result.journal)
    assert strategy.rebalances > 50  # 2012-2013: about 500 days, every 5th
    sides = {t.side for t in result.trades}
    assert sides == {Side.BUY, Side.SELL}
    shorts = [t for t in result.trades if t.side is Side.SELL and t.closed == 0]
    assert shorts  # sells that open short positions, not only exits
    # each rebalance is long the day's best-scored symbol and short the worst
    last_day = table.at(result.trades[-1].ts)
    ranked = sorted(last_day, key=lambda s: -last_day[s])
    holdings = {s: h.position.quantity for s, h in result.books.holdings.items()}
    assert holdings.get(ranked[0], 0) > 0 or holdings.get(ranked[-1], 0) < 0


def test_cli_refuses_top_k_without_a_promoted_model(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for key in ("TRADESTACK_DATABASE_URL", "TRADESTACK_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TRADESTACK_DATABASE_URL", sqlite_url)
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    refused = runner.invoke(app, ["backtest", "run", "top_k", "--symbols", ",".join(SYMBOLS), "--no-store"])
    assert refused.exit_code == 2, refused.output
    assert "no promoted alpha model" in refused.output
    assert "tradestack signals train" in refused.output
