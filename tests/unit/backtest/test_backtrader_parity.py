"""Acceptance: the SMA crossover on the shipped AAPL daily bars fills exactly as backtrader fills it.

Backtrader is the independent engine: its own data feed, SMA, broker and cash. Same rules on both
sides: decide at a bar's close, a market order fills at the next bar's open, 100 shares long only,
fee 10 bps of the notional rounded half-even to the cent (backtrader through a CommissionInfo with
that schedule). Trades must match one by one (date, side, quantity, price, fee) and the final
equity to the cent.

The shipped AAPL series has 360 bars with sub-cent prices (e.g. an open of 40.025). Backtrader fills
at the raw open; our matching rounds a taker's price to the instrument's tick against the taker
(a buy at 40.025 pays 40.03 with a cent tick). For the same fill rule the run uses AAPL with a tick
of 0.0001, the data's own precision; `test_cent_tick_rounds_sub_cent_opens_against_the_taker` shows
the difference with the catalogue's cent tick.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC
from decimal import Decimal
from functools import cache

import pandas as pd
import pytest

from tradestack.backtest.data import BarSeries
from tradestack.backtest.engine import BacktestConfig, run_backtest
from tradestack.backtest.reference import run_backtrader_sma
from tradestack.domain.instruments import instrument
from tradestack.domain.marketdata import Bar, Timeframe
from tradestack.domain.matching import FeeModel
from tradestack.marketdata import datasets
from tradestack.strategy.examples import SmaCross

CAPITAL = 100_000
QUANTITY = 100
AAPL_AT_DATA_PRECISION = {"AAPL": replace(instrument("AAPL"), tick_size=Decimal("0.0001"))}


@cache
def aapl_daily() -> tuple[Bar, ...]:
    return tuple(datasets.load("us-equities-daily").bars[("AAPL", Timeframe.D1)])


def run_backtrader(bars: tuple[Bar, ...]) -> tuple[list[tuple[str, str, int, Decimal, Decimal]], Decimal]:
    frame = pd.DataFrame(
        {
            "open": [float(b.open) for b in bars],
            "high": [float(b.high) for b in bars],
            "low": [float(b.low) for b in bars],
            "close": [float(b.close) for b in bars],
            "volume": [float(b.volume) for b in bars],
        },
        index=pd.DatetimeIndex([b.ts.astimezone(UTC).replace(tzinfo=None) for b in bars]),
    )
    run = run_backtrader_sma(frame, fast=10, slow=30, quantity=QUANTITY, capital=Decimal(CAPITAL), fee_bps=Decimal(10))
    fills = [(f.ts.date().isoformat(), f.side, f.quantity, f.price, f.fee) for f in run.fills]
    return fills, run.final_equity


def test_sma_crossover_on_aapl_fills_identically_to_backtrader() -> None:
    bars = aapl_daily()
    assert len(bars) > 3000  # the shipped AAPL series, 2000-2013
    result = run_backtest(
        SmaCross(["AAPL"], fast=10, slow=30, quantity=Decimal(QUANTITY)),
        [BarSeries.from_bars("AAPL", bars)],
        BacktestConfig(capital=Decimal(CAPITAL), fee=FeeModel(bps=Decimal(10), places=2)),
        AAPL_AT_DATA_PRECISION,
    )
    ours = [(t.ts.date().isoformat(), t.side.value, int(t.quantity), t.price, t.fee) for t in result.trades]
    theirs, their_equity = run_backtrader(bars)
    assert len(ours) > 50
    mismatches = [(i, a, b) for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b]
    assert mismatches == []
    assert len(ours) == len(theirs)
    assert result.final_equity.quantize(Decimal("0.01")) == their_equity


@pytest.mark.parametrize("bps", [Decimal(0), Decimal(25)])
def test_fee_schedule_is_what_separates_the_runs(bps: Decimal) -> None:
    """Break the fee on our side on purpose: the comparison then fails (it can fail)."""
    bars = aapl_daily()
    result = run_backtest(
        SmaCross(["AAPL"], quantity=Decimal(QUANTITY)),
        [BarSeries.from_bars("AAPL", bars)],
        BacktestConfig(capital=Decimal(CAPITAL), fee=FeeModel(bps=bps, places=2)),
        AAPL_AT_DATA_PRECISION,
    )
    _, their_equity = run_backtrader(bars)
    assert result.final_equity.quantize(Decimal("0.01")) != their_equity


def test_cent_tick_rounds_sub_cent_opens_against_the_taker() -> None:
    bars = aapl_daily()
    result = run_backtest(
        SmaCross(["AAPL"], quantity=Decimal(QUANTITY)),
        [BarSeries.from_bars("AAPL", bars)],
        BacktestConfig(capital=Decimal(CAPITAL), fee=FeeModel(bps=Decimal(10), places=2)),
    )
    opens = {b.ts: b.open for b in bars}
    rounded = [t for t in result.trades if t.price != opens[t.ts]]
    assert rounded  # some fills were at a sub-cent open
    for trade in rounded:
        assert trade.price % Decimal("0.01") == 0
        assert (trade.price > opens[trade.ts]) if trade.side.value == "buy" else (trade.price < opens[trade.ts])
