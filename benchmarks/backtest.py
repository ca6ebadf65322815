"""Event-driven backtest speed: bars/s of our backtester vs backtrader, same series and strategy, same run.

    .venv/bin/python benchmarks/backtest.py [--bars 1000000] [--backtrader-bars 100000] [--rounds 3] [--seed 7]

Series: a seeded random walk of one-minute bars around 100 USD with four decimals (a synthetic
symbol ``SYN``, tick 0.0001), `--bars` long. Four decimals, not cents: where the fast and slow SMA
are exactly equal, backtrader's float sums break the tie by rounding noise while ours are exact
(`backtest.indicators.sma`), so on a cent series the two engines part at such ties (the first one
comes after a few hundred fills); with four decimals the checked prefix has none (the count of exact
ties at a crossing is printed). Strategy: the SMA 10/30 crossover with orders (long 100 on the cross up,
flat on the cross down; market orders filled at the next bar's open; 10 bps fee rounded to the
cent) - `strategy.examples.SmaCross` in our backtester, `backtest.reference.run_backtrader_sma` in
backtrader (its fastest mode: `runonce`, indicators computed in batch; no observers).

Backtrader runs at about 10 k bars/s here, so it is timed on the first `--backtrader-bars` bars of
the same series (its rate is flat in the length: no warm-up cost worth counting), and reported in
bars/s; ours runs on all `--bars`. Each round times both, alternating which goes first; figures
are medians. Rates are bars per second of the process's CPU time (`time.process_time`): this
machine's two cores are shared by several jobs, so wall time mostly measures the wait for a core;
the wall-clock rates and their ratio are printed too. Timed: everything from the prepared series
to the result (our indicators, the loop, the equity curve; backtrader's feed loading, indicators,
loop) - building the input arrays and DataFrame is not. Outside the timed region: our run on the
backtrader prefix must give the same fills (date, side, quantity, price, fee) and final equity to
the cent as backtrader's, and the signal (order) counts are printed for both lengths.

Last line: ``RESULT name=backtest bars=... bars_per_s=... backtrader_bars_per_s=... ... wall_ratio=... ratio=...``
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from tradestack.backtest.data import BarSeries
from tradestack.backtest.engine import BacktestConfig, BacktestResult, run_backtest
from tradestack.backtest.reference import run_backtrader_sma
from tradestack.domain.instruments import Instrument, InstrumentKind
from tradestack.domain.matching import FeeModel
from tradestack.strategy.api import BarView, StrategyContext
from tradestack.strategy.examples import SmaCross

START_US = 1_704_067_200_000_000  # 2024-01-01 00:00 UTC
MINUTE_US = 60_000_000
SYMBOL = "SYN"
INSTRUMENT = Instrument(SYMBOL, InstrumentKind.EQUITY, "NASDAQ", "Synthetic", "USD", None, Decimal("0.0001"), Decimal(1))
PLACES = 4
CAPITAL = Decimal(10_000_000)
FEE_BPS = Decimal(10)


def synthetic_series(bars: int, seed: int) -> BarSeries:
    """A seeded random walk around 100 in units of 0.0001; open = previous close +- a few units."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 0.001, bars)
    log_price = np.cumsum(steps)
    log_price -= np.linspace(0.0, log_price[-1], bars)  # keep the walk near its start over a long series
    close = np.maximum(np.round(1_000_000 * np.exp(log_price)), 100).astype(np.int64)
    open_ = np.r_[close[0], close[:-1] + rng.integers(-300, 301, bars - 1)]
    open_ = np.maximum(open_, 100)
    spread = rng.integers(0, 2000, bars)
    return BarSeries(
        SYMBOL,
        START_US + MINUTE_US * np.arange(bars, dtype=np.int64),
        open_,
        np.maximum(open_, close) + spread,
        np.maximum(np.minimum(open_, close) - spread, 1),
        close,
        np.full(bars, 1_000_000, dtype=np.int64),
        PLACES,
    )


def frame_of(series: BarSeries) -> pd.DataFrame:
    """The series as backtrader's PandasData reads it (floats, naive UTC index)."""
    return pd.DataFrame(
        {
            "open": series.floats(series.open),
            "high": series.floats(series.high),
            "low": series.floats(series.low),
            "close": series.floats(series.close),
            "volume": series.volume_floats(),
        },
        index=pd.to_datetime(series.ts, unit="us"),
    )


def ours(series: BarSeries) -> BacktestResult:
    config = BacktestConfig(capital=CAPITAL, fee=FeeModel(bps=FEE_BPS, places=2))
    return run_backtest(SmaCross([SYMBOL], fast=10, slow=30, quantity=Decimal(100)), [series], config, {SYMBOL: INSTRUMENT})


class SignalsOnly(SmaCross):
    """The same crossover test on every bar, without sending orders: the loop's own cost."""

    name = "signals_only"

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        if bar.index < self.slow_period:
            return
        fast, slow = self._fast[bar.symbol], self._slow[bar.symbol]
        if (fast[0] > slow[0]) != (fast[-1] > slow[-1]):
            ctx.open_orders(bar.symbol)


def split(series: BarSeries, orders: int, cpu_with_orders: float) -> str:
    """CPU per bar of the loop alone and per order round trip, from a run without orders."""
    config = BacktestConfig(capital=CAPITAL, fee=FeeModel(bps=FEE_BPS, places=2))
    started = time.process_time()
    run_backtest(SignalsOnly([SYMBOL]), [series], config, {SYMBOL: INSTRUMENT})
    loop = time.process_time() - started
    per_order = (cpu_with_orders - loop) / orders if orders else float("nan")
    return f"loop alone {loop / len(series) * 1e6:.2f} us/bar CPU; each order's round trip {per_order * 1e6:.0f} us CPU"


def theirs(frame: pd.DataFrame) -> Any:
    return run_backtrader_sma(frame, fast=10, slow=30, quantity=100, capital=CAPITAL, fee_bps=FEE_BPS)


def exact_ties(series: BarSeries, fast: int = 10, slow: int = 30) -> int:
    """Bars where the fast and slow SMA of the closes are exactly equal (integer sums)."""
    sums = np.r_[np.int64(0), np.cumsum(series.close, dtype=np.int64)]
    index = np.arange(slow, len(series) + 1)
    fast_sums = sums[index] - sums[index - fast]
    slow_sums = sums[index] - sums[index - slow]
    return int(np.count_nonzero(fast_sums * (slow // fast) == slow_sums)) if slow % fast == 0 else 0


def check_same_fills(series: BarSeries, frame: pd.DataFrame) -> tuple[int, int]:
    """Our fills and final equity against backtrader's on the same bars; (our orders, backtrader's fills)."""
    result = ours(series)
    reference = theirs(frame)
    mine = [(t.ts.replace(tzinfo=None), t.side.value, int(t.quantity), t.price, t.fee) for t in result.trades]
    unit = Decimal(1).scaleb(-PLACES)  # backtrader's float prices carry noise below the data's precision
    other = [(f.ts, f.side, f.quantity, f.price.quantize(unit), f.fee) for f in reference.fills]
    if mine != other:
        first = next((i for i, (a, b) in enumerate(zip(mine, other, strict=False)) if a != b), min(len(mine), len(other)))
        raise SystemExit(
            f"fills differ from backtrader at fill {first}: ours {mine[first : first + 1]}, theirs {other[first : first + 1]}"
        )
    if result.final_equity.quantize(Decimal("0.01")) != reference.final_equity:
        raise SystemExit(f"final equity differs: ours {result.final_equity}, backtrader {reference.final_equity}")
    return len(result.orders), len(reference.fills)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--backtrader-bars", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    series = synthetic_series(args.bars, args.seed)
    prefix = series.head(min(args.backtrader_bars, args.bars))
    prefix_frame = frame_of(prefix)
    orders_prefix, fills_prefix = check_same_fills(prefix, prefix_frame)
    print(
        f"check: on the first {len(prefix)} bars ({exact_ties(prefix)} exact SMA ties) our {orders_prefix} orders "
        f"filled exactly as backtrader's {fills_prefix} fills, final equity equal to the cent"
    )

    rates: dict[str, dict[str, list[float]]] = {which: {"cpu": [], "wall": []} for which in ("ours", "backtrader")}
    orders = 0
    for round_number in range(args.rounds):
        runs = ["ours", "backtrader"] if round_number % 2 == 0 else ["backtrader", "ours"]
        for which in runs:
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            if which == "ours":
                result = ours(series)
                bars = len(series)
            else:
                theirs(prefix_frame)
                bars = len(prefix)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if which == "ours":
                orders = len(result.orders)
            rates[which]["cpu"].append(bars / cpu)
            rates[which]["wall"].append(bars / wall)
        print(
            f"round {round_number + 1}: ours {rates['ours']['cpu'][-1]:,.0f} bars/s CPU, {rates['ours']['wall'][-1]:,.0f} wall "
            f"({len(series)} bars, {orders} orders); backtrader {rates['backtrader']['cpu'][-1]:,.0f} bars/s CPU, "
            f"{rates['backtrader']['wall'][-1]:,.0f} wall ({len(prefix)} bars); load {os.getloadavg()[0]:.2f}"
        )
    median = {which: {kind: statistics.median(values) for kind, values in by.items()} for which, by in rates.items()}
    print(split(series, orders, len(series) / median["ours"]["cpu"]))
    ratio = median["ours"]["cpu"] / median["backtrader"]["cpu"]
    wall_ratio = median["ours"]["wall"] / median["backtrader"]["wall"]
    print(
        f"median: ours {median['ours']['cpu']:,.0f} bars/s CPU ({median['ours']['wall']:,.0f} wall), backtrader "
        f"{median['backtrader']['cpu']:,.0f} bars/s CPU ({median['backtrader']['wall']:,.0f} wall); "
        f"ratio {ratio:.1f} (CPU), {wall_ratio:.1f} (wall)"
    )
    print(
        f"RESULT name=backtest bars={len(series)} bars_per_s={median['ours']['cpu']:.0f} "
        f"backtrader_bars={len(prefix)} backtrader_bars_per_s={median['backtrader']['cpu']:.0f} orders={orders} "
        f"wall_bars_per_s={median['ours']['wall']:.0f} backtrader_wall_bars_per_s={median['backtrader']['wall']:.0f} "
        f"wall_ratio={wall_ratio:.2f} ratio={ratio:.2f}"
    )


if __name__ == "__main__":
    main()
