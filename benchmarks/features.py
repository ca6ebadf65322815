"""Order-book feature extraction: OBI (best 1, 3 and 10 levels) + OFI (windows 1, 5, 20) per snapshot.

    .venv/bin/python benchmarks/features.py [--snapshots 1000000] [--loop-snapshots 20000] [--rounds 7]

Four ways over the same random 10-level books, alternating rounds in one process; medians:
- ``numba``: `orderbook.obi_ofi(engine="numba")`, one compiled pass (compiled before timing);
- ``numpy``: `orderbook.obi_ofi(engine="numpy")`, level sums shared across k;
- ``separate``: `orderbook.obi` per k and `orderbook.ofi` per w (each function on its own);
- ``plain loop``: per-snapshot Python (the loop the tests use as the independent reference), on fewer snapshots.
All three array paths give the same values bit for bit (checked here before timing). The RESULT is
the Numba figure against the plain loop; goal >= 10,000,000 snapshots/s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

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


def fused(books: Books, engine: orderbook.Engine) -> float:
    return sum(float(column[-1]) for column in orderbook.obi_ofi(books, OBI_LEVELS, OFI_WINDOWS, engine=engine).values())


def separate(books: Books) -> float:
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
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    books = random_books(args.snapshots)
    small = random_books(args.loop_snapshots, seed=2)
    lists = [a.T.tolist() for a in (small.bid_price, small.bid_size, small.ask_price, small.ask_size)]
    start = time.perf_counter()
    compiled = orderbook.obi_ofi(small, OBI_LEVELS, OFI_WINDOWS, engine="numba")
    print(f"numba import + compile (or load from cache): {time.perf_counter() - start:.2f} s")
    reference = orderbook.obi_ofi(small, OBI_LEVELS, OFI_WINDOWS, engine="numpy")
    for name, column in reference.items():
        np.testing.assert_array_equal(column, compiled[name])
        one = orderbook.obi(small, int(name[3:])) if name.startswith("obi") else orderbook.ofi(small, int(name[3:]))
        np.testing.assert_array_equal(column, one)
    ways: dict[str, Callable[[], object]] = {
        "numba": lambda: fused(books, "numba"),
        "numpy": lambda: fused(books, "numpy"),
        "separate": lambda: separate(books),
    }
    rates: dict[str, list[float]] = {name: [] for name in [*ways, "plain loop"]}
    for run in ways.values():
        run()  # warm up
    for _ in range(args.rounds):
        for name, run in ways.items():
            start = time.perf_counter()
            run()
            rates[name].append(args.snapshots / (time.perf_counter() - start))
        start = time.perf_counter()
        plain_loop(*lists)
        rates["plain loop"].append(args.loop_snapshots / (time.perf_counter() - start))
        print("round: " + ", ".join(f"{name} {values[-1]:,.0f}" for name, values in rates.items()) + " snapshots/s")
    median = {name: statistics.median(values) for name, values in rates.items()}
    print("medians: " + ", ".join(f"{name} {value:,.0f}" for name, value in median.items()) + " snapshots/s")
    print(
        f"RESULT name=features snapshots_per_s={median['numba']:.0f} numpy_snapshots_per_s={median['numpy']:.0f} "
        f"separate_snapshots_per_s={median['separate']:.0f} baseline_snapshots_per_s={median['plain loop']:.0f} "
        f"numba_vs_separate={median['numba'] / median['separate']:.2f} ratio={median['numba'] / median['plain loop']:.1f} "
        "goal_snapshots_per_s=10000000"
    )


if __name__ == "__main__":
    main()
