"""Order-book feature extraction: OBI (best 1, 3 and 10 levels) + OFI (windows 1, 5, 20) per snapshot.

    .venv/bin/python benchmarks/features.py [--snapshots 1000000] [--loop-snapshots 20000] [--rounds 5]

Vectorised NumPy (`tradestack.signals.features.orderbook`) against a plain-Python loop over the
same random 10-level books (the loop the tests use as the independent reference), alternating
rounds in one process; medians. Goal: >= 10,000,000 snapshots/s for the vectorised path.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from tradestack.signals.features import orderbook
from tradestack.signals.features.orderbook import Books

OBI_LEVELS = (1, 3, 10)
OFI_WINDOWS = (1, 5, 20)


def random_books(snapshots: int, seed: int = 1, levels: int = 10) -> Books:
    rng = np.random.default_rng(seed)
    mid = 10_000 + np.cumsum(rng.integers(-2, 3, snapshots))
    half = rng.integers(1, 4, snapshots)
    gaps = np.arange(levels)
    return Books.from_snapshots(
        bid_price=((mid - half)[:, None] - gaps) * 0.01,
        bid_size=rng.uniform(0.1, 50, (snapshots, levels)),
        ask_price=((mid + half)[:, None] + gaps) * 0.01,
        ask_size=rng.uniform(0.1, 50, (snapshots, levels)),
    )


def vectorised(books: Books) -> float:
    total = 0.0
    for k in OBI_LEVELS:
        total += float(orderbook.obi(books, k)[-1])
    events = orderbook.ofi_events(books)
    for w in OFI_WINDOWS:
        total += float(orderbook.window_sum(events, w)[-1])
    return total


def plain_loop(
    bid_price: list[list[float]], bid_size: list[list[float]], ask_price: list[list[float]], ask_size: list[list[float]]
) -> float:
    total = 0.0
    events: list[float] = []
    for t in range(len(bid_price)):
        for k in OBI_LEVELS:
            bid = sum(bid_size[t][:k])
            ask = sum(ask_size[t][:k])
            total += (bid - ask) / (bid + ask)
        if t == 0:
            events.append(0.0)
        else:
            pb, qb, pa, qa = bid_price[t][0], bid_size[t][0], ask_price[t][0], ask_size[t][0]
            pb0, qb0, pa0, qa0 = bid_price[t - 1][0], bid_size[t - 1][0], ask_price[t - 1][0], ask_size[t - 1][0]
            events.append(
                (qb if pb >= pb0 else 0.0)
                - (qb0 if pb <= pb0 else 0.0)
                - (qa if pa <= pa0 else 0.0)
                + (qa0 if pa >= pa0 else 0.0)
            )
        for w in OFI_WINDOWS:
            if t >= w:
                total += sum(events[t - w + 1 : t + 1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshots", type=int, default=1_000_000)
    parser.add_argument("--loop-snapshots", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    books = random_books(args.snapshots)
    small = random_books(args.loop_snapshots, seed=2)
    lists = [a.T.tolist() for a in (small.bid_price, small.bid_size, small.ask_price, small.ask_size)]
    fast: list[float] = []
    slow: list[float] = []
    vectorised(books)  # warm up
    for _ in range(args.rounds):
        start = time.perf_counter()
        vectorised(books)
        fast.append(args.snapshots / (time.perf_counter() - start))
        start = time.perf_counter()
        plain_loop(*lists)
        slow.append(args.loop_snapshots / (time.perf_counter() - start))
        print(f"round: vectorised {fast[-1]:,.0f} snapshots/s, plain loop {slow[-1]:,.0f} snapshots/s")
    fast_median, slow_median = statistics.median(fast), statistics.median(slow)
    print(
        f"RESULT name=features snapshots_per_s={fast_median:.0f} baseline_snapshots_per_s={slow_median:.0f} "
        f"ratio={fast_median / slow_median:.1f} goal_snapshots_per_s=10000000"
    )


if __name__ == "__main__":
    main()
