"""Cross-sectional backtest: does an order cost more as the universe grows?

    .venv/bin/python benchmarks/backtest_universe.py [--small 20] [--large 200] [--days 100] [--rounds 3] [--seed 7]

Strategy: `strategy.examples.TopKRebalancer` (long the k best-scored symbols, short the k worst, k a quarter of the
universe, rebalanced every day at 0.5 gross), on `--small` and on `--large` symbols: daily bars of seeded random walks
around 100 USD (cents), seeded scores, synthetic symbols listed like AAPL (`S0000`, ...), short selling allowed, no
fees. Each round runs the small universe, then the large one (the order alternating between rounds); a figure is the
median of the rounds. Timed: `run_backtest`, from the prepared series and scores to the result (orders, journal,
equity curve), in CPU seconds of the process (`time.process_time`: on a shared machine wall time mostly measures the
wait for a core).

Per order, a backtester whose cost does not grow with the universe prints a ratio near 1: the large universe's
orders each cost what the small one's do. Each order's risk checks read the market and the account's open orders;
before 614f5fd every order built a quote for every symbol and marked every holding again, and before 9807368 the
equity curve read the timeline once per traded symbol: the ratio of 200 to 20 symbols was 3.74 then (467 against 125
us an order, 2026-12-08, this machine), 0.99 after (138 against 139). Since 2c20994 the market orders a rebalance
sends at once are not priced again by each order's buying-power check either (0.92: 119 against 130; with 1,000
symbols and 20 days 1.69, 185 against 109).

Last line: ``RESULT name=backtest_universe small_symbols=... large_symbols=... small_us_per_order=...
large_us_per_order=... ratio=<large/small>``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from tradestack.backtest.data import BarSeries, microseconds_of
from tradestack.backtest.engine import BacktestConfig, BacktestResult, run_backtest
from tradestack.domain.instruments import Instrument, instrument
from tradestack.strategy.examples import ScoreTable, TopKRebalancer

START = datetime(2024, 1, 1, tzinfo=UTC)
LISTED_LIKE = "AAPL"  # the synthetic symbols' tick, lot and currency


class Universe:
    """`symbols` symbols' bars and scores over `days` days, drawn from `seed`; the inputs of one run."""

    def __init__(self, symbols: int, days: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.symbols = tuple(f"S{number:04d}" for number in range(symbols))
        listed = instrument(LISTED_LIKE)
        self.instruments: dict[str, Instrument] = {s: replace(listed, symbol=s, name=s) for s in self.symbols}
        ts = np.array([microseconds_of(START + timedelta(days=day)) for day in range(days)], dtype=np.int64)
        self.series = []
        for symbol in self.symbols:
            close = (10_000 + np.cumsum(rng.integers(-50, 51, days))).astype(np.int64)
            volume = np.full(days, 1_000_000, dtype=np.int64)
            self.series.append(BarSeries(symbol, ts, close, close + 50, close - 50, close, volume, 2))
        rows = tuple({symbol: float(rng.normal()) for symbol in self.symbols} for _ in range(days))
        self.scores = ScoreTable("bench", tuple((START + timedelta(days=day)).date() for day in range(days)), rows)

    def run(self) -> BacktestResult:
        strategy = TopKRebalancer(
            self.symbols, k=max(1, len(self.symbols) // 4), every=1, gross=Decimal("0.5"), scores=self.scores
        )
        return run_backtest(strategy, self.series, BacktestConfig(allow_short=True), self.instruments)


def timed(universe: Universe) -> tuple[float, int, int]:
    """CPU seconds of one run of `universe`, its orders and its trades."""
    gc.collect()
    started = time.process_time()
    result = universe.run()
    seconds = time.process_time() - started
    return seconds, len(result.orders), len(result.trades)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=20, help="symbols in the small universe")
    parser.add_argument("--large", type=int, default=200, help="symbols in the large universe")
    parser.add_argument("--days", type=int, default=100, help="daily bars per symbol")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each universe, alternating")
    parser.add_argument("--seed", type=int, default=7, help="seeds the bars and the scores")
    args = parser.parse_args()
    if not 4 <= args.small < args.large or args.days < 2 or args.rounds < 1:
        parser.error("need 4 <= --small < --large, --days >= 2 and --rounds >= 1")

    universes = {"small": Universe(args.small, args.days, args.seed), "large": Universe(args.large, args.days, args.seed)}
    universes["small"].run()  # warm-up: imports, caches
    seconds: dict[str, list[float]] = {"small": [], "large": []}
    counts: dict[str, set[tuple[int, int]]] = {"small": set(), "large": set()}
    for round_number in range(args.rounds):
        for name in ("small", "large") if round_number % 2 == 0 else ("large", "small"):
            spent, orders, trades = timed(universes[name])
            seconds[name].append(spent)
            counts[name].add((orders, trades))
    if any(len(seen) != 1 for seen in counts.values()):
        raise RuntimeError(f"rounds of one universe disagree: {counts}")

    print(f"top-k rebalancer, {args.days} daily bars, median of {args.rounds} rounds (CPU time)")
    print(f"{'universe':>10}{'symbols':>9}{'orders':>9}{'trades':>9}{'CPU s':>9}{'us/order':>10}{'bars/s':>11}")
    per_order: dict[str, float] = {}
    for name, symbols in (("small", args.small), ("large", args.large)):
        (orders, trades), median = next(iter(counts[name])), statistics.median(seconds[name])
        per_order[name] = median / orders * 1e6
        bars = symbols * args.days
        print(f"{name:>10}{symbols:>9}{orders:>9}{trades:>9}{median:>9.2f}{per_order[name]:>10.1f}{bars / median:>11,.0f}")
    ratio = per_order["large"] / per_order["small"]
    print(f"CPU per order, large / small universe: {ratio:.2f} (1.0: an order costs the same whatever the universe)")
    print(
        f"RESULT name=backtest_universe small_symbols={args.small} large_symbols={args.large}"
        f" small_us_per_order={per_order['small']:.1f} large_us_per_order={per_order['large']:.1f} ratio={ratio:.3f}"
    )


if __name__ == "__main__":
    main()
