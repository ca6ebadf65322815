"""The vectorised sweep: every combination's trades and statistics are the event-driven engine's."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from tradestack.backtest import sweep
from tradestack.backtest.data import BarSeries
from tradestack.backtest.engine import BacktestConfig, run_backtest
from tradestack.backtest.metrics import compute_metrics
from tradestack.domain.instruments import Instrument, instrument
from tradestack.domain.marketdata import Timeframe
from tradestack.domain.matching import FeeModel, LatencyModel, SlippageModel
from tradestack.marketdata import datasets
from tradestack.strategy.api import StrategyError
from tradestack.strategy.examples import build

AAPL = instrument("AAPL")  # cent tick: the shipped sub-cent opens are rounded against the taker
CONFIG = BacktestConfig(capital=Decimal(100_000), fee=FeeModel(bps=Decimal(10), minimum=Decimal(1), places=2))


@cache
def aapl() -> BarSeries:
    bars = datasets.load("us-equities-daily").bars[("AAPL", Timeframe.D1)]
    return BarSeries.from_bars("AAPL", bars)


def _engine_metrics(strategy: str, params: dict[str, str], series: BarSeries, config: BacktestConfig) -> dict[str, float]:
    result = run_backtest(build(strategy, [series.symbol], params), [series], config, {series.symbol: AAPL})
    metrics = compute_metrics(result)
    return {
        "final_equity": float(result.final_equity),
        "total_return": metrics.total_return,
        "annual_return": metrics.annual_return,
        "annual_volatility": metrics.annual_volatility,
        "sharpe": metrics.sharpe,
        "sortino": metrics.sortino,
        "max_drawdown": metrics.max_drawdown,
        "max_drawdown_duration": metrics.max_drawdown_duration_periods,
        "calmar": metrics.calmar,
        "trades": metrics.trades,
        "round_trips": metrics.round_trips,
        "hit_rate": metrics.hit_rate,
        "turnover": metrics.turnover,
        "exposure": metrics.exposure,
        "fees_paid": float(metrics.fees_paid),
    }


@pytest.mark.parametrize(
    ("strategy", "grid", "config"),
    [
        ("sma_cross", ["fast=5,10,20", "slow=30,60"], CONFIG),
        ("sma_cross", ["fast=10", "slow=30", "quantity=50,900"], dataclasses.replace(CONFIG, slippage=SlippageModel(Decimal(7)))),
        ("bollinger", ["period=10,20", "width=1.5,2.5"], CONFIG),
    ],
)
def test_every_combination_trades_and_scores_as_the_engine(strategy: str, grid: list[str], config: BacktestConfig) -> None:
    series = aapl().head(2500)
    result = sweep.run_sweep(strategy, series, sweep.parse_grid(strategy, grid), config, AAPL)
    market = sweep.prepare(series, AAPL, config)
    for row, combo in enumerate(result.combos):
        agreement = sweep.agree(market, strategy, combo)
        assert agreement.exact
        assert agreement.first_difference is None, agreement
        assert agreement.sweep_trades > 5
        assert agreement.sweep_final_equity == agreement.engine_final_equity
        expected = _engine_metrics(strategy, combo, series, config)
        for name, value in expected.items():
            got = float(result.metrics[row, sweep.METRICS.index(name)])
            assert math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-9) or (math.isnan(got) and math.isnan(value)), (
                combo, name, got, value,
            )  # fmt: skip


def test_the_quantity_grid_reaches_the_buying_power_denial() -> None:
    # 900 shares cost more than the capital at AAPL's later prices: the engine denies those buys, so must the sweep
    series = aapl()
    config = CONFIG
    result = sweep.run_sweep("sma_cross", series, {"fast": ["10"], "slow": ["30"], "quantity": ["2000"]}, config, AAPL)
    engine = run_backtest(build("sma_cross", ["AAPL"], {"quantity": "2000"}), [series], config, {"AAPL": AAPL})
    assert any(o.reason and o.reason.startswith("buying_power") for o in engine.orders)
    assert result.column("trades")[0] == len(engine.trades)
    assert sweep.agree(sweep.prepare(series, AAPL, config), "sma_cross", result.combos[0]).agrees


def test_agreement_reports_the_first_fill_that_differs() -> None:
    series = aapl().head(1500)
    market = sweep.prepare(series, AAPL, CONFIG)
    shifted = dataclasses.replace(market, buy_units=market.buy_units + 1)  # the sweep pays a cent more on every buy
    agreement = sweep.agree(shifted, "sma_cross", {"fast": "10", "slow": "30"})
    assert not agreement.agrees
    assert agreement.first_difference is not None
    assert agreement.first_difference.startswith("fill 0:")


def test_an_order_larger_than_the_bar_volume_is_flagged_not_compared() -> None:
    series = aapl().head(800)
    thin = dataclasses.replace(series, volume=np.full(len(series), 60, dtype=np.int64))  # 100-share orders, 60 a print
    result = sweep.run_sweep("sma_cross", thin, {"fast": ["10"], "slow": ["30"]}, CONFIG, AAPL)
    assert result.column("inexact")[0] == 1.0
    agreement = sweep.agree(sweep.prepare(thin, AAPL, CONFIG), "sma_cross", result.combos[0])
    assert not agreement.exact
    assert not agreement.agrees


def test_grid_parsing_ranges_and_refusals() -> None:
    assert sweep.parse_grid("sma_cross", ["fast=5:20:5", "slow=30"]) == {"fast": ["5", "10", "15", "20"], "slow": ["30"]}
    for texts, message in [
        (["fast"], "name=v1,v2"),
        (["speed=1,2"], "no parameter 'speed'"),
        (["fast=5:1:1"], "step > 0 and stop >= start"),
        (["fast=a:b:c"], "must be numbers"),
        ([], "at least one --grid"),
    ]:
        with pytest.raises(StrategyError, match=message):
            sweep.parse_grid("sma_cross", texts)
    with pytest.raises(StrategyError, match="no vectorised form"):
        sweep.parse_grid("top_k", ["k=1"])


def test_combinations_the_strategy_refuses_are_left_out_and_counted() -> None:
    result = sweep.run_sweep("sma_cross", aapl().head(300), {"fast": ["10", "30"], "slow": ["20", "30"]}, CONFIG, AAPL)
    assert result.combos == [{"fast": "10", "slow": "20"}, {"fast": "10", "slow": "30"}]
    assert result.skipped == 2
    with pytest.raises(StrategyError, match="no combination of the grid is valid"):
        sweep.run_sweep("sma_cross", aapl().head(300), {"fast": ["30"], "slow": ["20"]}, CONFIG, AAPL)


def test_latency_is_refused() -> None:
    with pytest.raises(StrategyError, match="latency"):
        sweep.prepare(aapl(), AAPL, dataclasses.replace(CONFIG, latency=LatencyModel(5.0)))


def test_a_tick_finer_than_the_data_keeps_the_exact_opens() -> None:
    fine: Instrument = dataclasses.replace(AAPL, tick_size=Decimal("0.0001"))
    market = sweep.prepare(aapl(), fine, CONFIG)
    assert market.fill_places == 4
    assert np.array_equal(market.buy_units, aapl().open * 10 ** (4 - aapl().places))


def test_best_and_heatmap(tmp_path: Path) -> None:
    result = sweep.run_sweep("sma_cross", aapl(), {"fast": ["5", "10", "20"], "slow": ["50", "100"]}, CONFIG, AAPL)
    best = result.best(2)
    sharpe = result.column("sharpe")
    assert sharpe[best[0]] == np.nanmax(sharpe)
    assert sharpe[best[0]] >= sharpe[best[1]]
    path = tmp_path / "heatmap.png"
    assert sweep.write_heatmap(result, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one = sweep.run_sweep("sma_cross", aapl(), {"fast": ["5", "10"], "slow": ["50"]}, CONFIG, AAPL)
    assert not sweep.write_heatmap(one, tmp_path / "none.png")


def test_a_dask_cluster_gives_the_same_figures() -> None:
    from dask.distributed import Client, LocalCluster

    grid = {"fast": ["5", "10", "20"], "slow": ["30", "60", "90"]}
    local = sweep.run_sweep("sma_cross", aapl(), grid, CONFIG, AAPL)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        distributed = sweep.run_sweep("sma_cross", aapl(), grid, CONFIG, AAPL, client=client, chunk_size=2)
    assert distributed.combos == local.combos
    assert np.array_equal(distributed.metrics, local.metrics, equal_nan=True)
