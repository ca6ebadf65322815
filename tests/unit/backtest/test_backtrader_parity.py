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
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from typing import Any

import backtrader as bt  # type: ignore[import-untyped]
import pandas as pd
import pytest

from tradestack.backtest.data import BarSeries
from tradestack.backtest.engine import BacktestConfig, run_backtest
from tradestack.domain.instruments import instrument
from tradestack.domain.marketdata import Bar, Timeframe
from tradestack.domain.matching import FeeModel
from tradestack.marketdata import datasets
from tradestack.strategy.examples import SmaCross

CAPITAL = 100_000
QUANTITY = 100
FEE_RATE = Decimal("0.001")  # 10 bps
AAPL_AT_DATA_PRECISION = {"AAPL": replace(instrument("AAPL"), tick_size=Decimal("0.0001"))}


@cache
def aapl_daily() -> tuple[Bar, ...]:
    return tuple(datasets.load("us-equities-daily").bars[("AAPL", Timeframe.D1)])


class CentFee(bt.CommInfoBase):  # type: ignore[misc]
    """10 bps of the notional, rounded half-even to the cent, per execution."""

    params = (("stocklike", True), ("commtype", bt.CommInfoBase.COMM_FIXED))

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        fee = (abs(Decimal(repr(size))) * Decimal(repr(price)) * FEE_RATE).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
        return float(fee)


class BacktraderSmaCross(bt.Strategy):  # type: ignore[misc]
    params = (("fast", 10), ("slow", 30), ("quantity", QUANTITY))

    def __init__(self) -> None:
        self.fast = bt.indicators.SMA(self.data.close, period=self.p.fast)
        self.slow = bt.indicators.SMA(self.data.close, period=self.p.slow)
        self.pending: Any = None
        self.fills: list[tuple[str, str, int, Decimal, Decimal]] = []

    def notify_order(self, order: Any) -> None:
        if order.status == order.Completed:
            when = bt.num2date(order.executed.dt).date().isoformat()
            side = "buy" if order.isbuy() else "sell"
            price = Decimal(repr(order.executed.price))
            fee = Decimal(repr(order.executed.comm))
            self.fills.append((when, side, abs(int(order.executed.size)), price, fee))
        if order.status in (order.Completed, order.Canceled, order.Margin, order.Rejected):
            self.pending = None

    def next(self) -> None:
        if len(self) <= self.p.slow or self.pending is not None:
            return
        now_above = self.fast[0] > self.slow[0]
        if now_above == (self.fast[-1] > self.slow[-1]):
            return
        held = self.position.size
        if now_above and held == 0:
            self.pending = self.buy(size=self.p.quantity)
        elif not now_above and held > 0:
            self.pending = self.sell(size=held)


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
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame, openinterest=None))
    cerebro.addstrategy(BacktraderSmaCross)
    cerebro.broker.setcash(float(CAPITAL))
    cerebro.broker.addcommissioninfo(CentFee())
    (strategy,) = cerebro.run()
    return strategy.fills, Decimal(repr(cerebro.broker.getvalue())).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


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
