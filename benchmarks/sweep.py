"""Sweep speed: our vectorised sweep vs vectorbt on a 100-combination SMA grid over the same series, same run.

    .venv/bin/python benchmarks/sweep.py [--bars 1000000] [--rounds 3] [--seed 7]

Series: `benchmarks/backtest.py`'s seeded random walk of one-minute bars (four decimals, synthetic
symbol ``SYN``). Grid: the SMA crossover with fast in 5, 10, ..., 50 and slow in 60, 70, ..., 150
(100 combinations), long 100 on the cross up, flat on the cross down, market orders filled at the
next bar's open, 10 bps fee.

Ours: `backtest.sweep.run_sweep` - every combination's fills, equity curve and statistics (total
and annual return, volatility, Sharpe, Sortino, max drawdown and its duration, Calmar, hit rate,
turnover, exposure, fees), exact fill prices and fees rounded to the cent. vectorbt (1.x, its
documented way): `MA.run` of both windows per combination, `ma_crossed_above`/`below` as entries and
exits shifted one bar so they execute at the next open (`Portfolio.from_signals`, fixed size 100,
fees 0.001 not rounded), then its total return, Sharpe ratio and max drawdown per combination. Timed
for each: from the prepared arrays (our `BarSeries`, vectorbt's pandas Series) to the statistics
of all 100 combinations. Each round times both, alternating which goes first; after a warm-up run
of each on a short series (Numba compilation is not timed). Rates are bars x combinations per
second of process CPU time (this machine's two cores are shared); wall-clock figures are printed too.

Checked outside the timed region: the number of fills of every combination, ours against
vectorbt's orders. The two crossover rules differ only where the fast and slow SMA are exactly equal
(ours: equal is "not above", so above -> equal -> above is a cross down and up; vectorbt keeps its
state through equality), so the counts must agree wherever the series has no exact tie at a cross;
the combinations with ties are counted and printed. Ours is also checked against the event-driven
engine on one combination (same fills, same final equity) on a prefix.

Memory: vectorbt holds several (bars x combinations) float arrays; at 1,000,000 bars x 100 it reached
about 15 GB resident here (one round measured: ours 1.98 s CPU, vectorbt 79.9 s CPU), so on a shared
machine run it with ``--bars 100000``. Ours holds a few arrays of the series' length.

Last line: ``RESULT name=sweep bars=... combinations=100 ours_s=... vectorbt_s=... ... ratio=...``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(__file__))
from backtest import CAPITAL, FEE_BPS, INSTRUMENT, synthetic_series

from tradestack.backtest import sweep
from tradestack.backtest.data import BarSeries
from tradestack.backtest.engine import BacktestConfig
from tradestack.domain.matching import FeeModel

FAST = [str(v) for v in range(5, 55, 5)]
SLOW = [str(v) for v in range(60, 160, 10)]
GRID = {"fast": FAST, "slow": SLOW}
CONFIG = BacktestConfig(capital=CAPITAL, fee=FeeModel(bps=FEE_BPS, places=2))


def ours(series: BarSeries) -> sweep.SweepResult:
    return sweep.run_sweep("sma_cross", series, GRID, CONFIG, INSTRUMENT, chunk_size=100)


def theirs(close: pd.Series, open_: pd.Series) -> dict[str, Any]:
    import vectorbt as vbt

    pairs = [(int(f), int(s)) for f in FAST for s in SLOW]
    fast = vbt.MA.run(close, [f for f, _ in pairs], short_name="fast")
    slow = vbt.MA.run(close, [s for _, s in pairs], short_name="slow")
    entries = fast.ma_crossed_above(slow).shift(1, fill_value=False)
    exits = fast.ma_crossed_below(slow).shift(1, fill_value=False)
    portfolio = vbt.Portfolio.from_signals(
        close, entries, exits, price=open_, size=100, size_type="amount", fees=float(FEE_BPS) / 10_000,
        init_cash=float(CAPITAL), freq="1min",
    )  # fmt: skip
    return {
        "orders": portfolio.orders.count().to_numpy(),
        "total_return": portfolio.total_return().to_numpy(),
        "sharpe": portfolio.sharpe_ratio().to_numpy(),
        "max_drawdown": portfolio.max_drawdown().to_numpy(),
    }


def frames(series: BarSeries) -> tuple[pd.Series, pd.Series]:
    index = pd.to_datetime(series.ts, unit="us")
    return pd.Series(series.floats(series.close), index=index), pd.Series(series.floats(series.open), index=index)


def ties_at_crosses(series: BarSeries) -> list[bool]:
    """Per combination (grid order): whether the fast and slow SMA are ever exactly equal after the warm-up."""
    sums = np.r_[np.int64(0), np.cumsum(series.close, dtype=np.int64)]
    out = []
    for f in FAST:
        for s in SLOW:
            fast, slow = int(f), int(s)
            index = np.arange(slow, len(series) + 1)
            fast_sums, slow_sums = sums[index] - sums[index - fast], sums[index] - sums[index - slow]
            out.append(bool(np.any(fast_sums * slow == slow_sums * fast)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    warm = synthetic_series(5_000, args.seed)
    ours(warm)
    theirs(*frames(warm))
    series = synthetic_series(args.bars, args.seed)
    close, open_ = frames(series)

    check = series.head(50_000)
    market = sweep.prepare(check, INSTRUMENT, CONFIG)
    agreement = sweep.agree(market, "sma_cross", {"fast": "10", "slow": "60"})
    if not agreement.agrees:
        raise SystemExit(f"the sweep and the event-driven engine differ on {agreement.params}: {agreement.first_difference}")

    cpu: dict[str, list[float]] = {"ours": [], "vectorbt": []}
    wall: dict[str, list[float]] = {"ours": [], "vectorbt": []}
    mine: sweep.SweepResult | None = None
    other: dict[str, Any] = {}
    for round_number in range(args.rounds):
        order = ("ours", "vectorbt") if round_number % 2 == 0 else ("vectorbt", "ours")
        for name in order:
            started_cpu, started_wall = time.process_time(), time.perf_counter()
            if name == "ours":
                mine = ours(series)
            else:
                other = theirs(close, open_)
            cpu[name].append(time.process_time() - started_cpu)
            wall[name].append(time.perf_counter() - started_wall)
        print(f"round {round_number + 1}: ours {cpu['ours'][-1]:.2f} s CPU, vectorbt {cpu['vectorbt'][-1]:.2f} s CPU")
    if mine is None:
        raise SystemExit("no round ran: give --rounds 1 or more")
    combinations = len(mine.combos)
    our_fills = mine.column("trades").astype(int)
    their_orders = other["orders"].astype(int)
    ties = ties_at_crosses(series)
    same = our_fills == their_orders
    unexplained = [i for i in range(combinations) if not same[i] and not ties[i]]
    print(f"fills: ours {int(our_fills.sum())}, vectorbt {int(their_orders.sum())} over {combinations} combinations")
    print(f"combinations with the same count: {int(same.sum())}; with an exact SMA tie (rules differ there): {sum(ties)}")
    if unexplained:
        raise SystemExit(f"fill counts differ without a tie for {[mine.combos[i] for i in unexplained]}")
    sharpe_gap = np.nanmax(np.abs(mine.column("total_return") - other["total_return"]))
    print(f"largest total-return gap (vectorbt's fees are not rounded to the cent): {sharpe_gap:.2e}")
    ours_cpu, theirs_cpu = statistics.median(cpu["ours"]), statistics.median(cpu["vectorbt"])
    ours_wall, theirs_wall = statistics.median(wall["ours"]), statistics.median(wall["vectorbt"])
    work = args.bars * combinations
    print(
        f"ours {work / ours_cpu / 1e6:.1f} M bar-combinations/s CPU ({ours_cpu:.2f} s), "
        f"vectorbt {work / theirs_cpu / 1e6:.1f} M/s ({theirs_cpu:.2f} s); wall {ours_wall:.2f} s vs {theirs_wall:.2f} s"
    )
    print(
        f"RESULT name=sweep bars={args.bars} combinations={combinations} ours_s={ours_cpu:.3f} vectorbt_s={theirs_cpu:.3f} "
        f"ours_wall_s={ours_wall:.3f} vectorbt_wall_s={theirs_wall:.3f} fills={int(our_fills.sum())} "
        f"same_counts={int(same.sum())} wall_ratio={theirs_wall / ours_wall:.2f} ratio={theirs_cpu / ours_cpu:.2f}"
    )


if __name__ == "__main__":
    main()
