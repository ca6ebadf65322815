"""Per-quote cost of the paper matching engine with resting orders far from the market (issue 12).

    .venv/bin/python benchmarks/matching_resting.py [--quotes 500] [--rounds 5] [--seed 7]

The production engine keeps one `MatchingEngine` per instrument holding the working orders of
every account, so what a quote costs must not grow with the orders resting in it. For N = 0,
1,000 and 5,000 resting orders (GTC, a quarter each: buy limits 5-15 % below the market, sell
limits as far above, buy stops above, sell stops below; the limits already tried once, so
resting) the same --quotes quotes (a seeded random walk within 1 % of the mid, drawn before the
clock starts) go to `on_quote` of:

* ``indexed``: `MatchingEngine`, which visits only the orders the touch can reach;
* ``reference``: the engine as it was before, every working order stepped at every quote (its
  `_run` copied below; everything else is the same engine).

Each round times both, for every N, alternating; a timed run sends the quotes as many times over
as makes it last at least 50 ms (once for the slow reference). Figures are medians over --rounds
of the process CPU time per quote (less sensitive than wall time to other jobs on a shared machine; wall is
printed too). No quote reaches an order, so both engines return no event and keep N working
orders - checked outside the timed region. The last line is
``RESULT name=matching_resting ... ratio=<indexed per-quote at 5,000 resting / at 0>``.
Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tradestack.domain.instruments import instrument
from tradestack.domain.marketdata import Quote, Side
from tradestack.domain.matching import (
    FeeModel,
    LatencyModel,
    MatchingEngine,
    SlippageModel,
    WorkingOrder,
)
from tradestack.domain.orders import OrderType, TimeInForce

RESTING = (0, 1_000, 5_000)
AAPL = instrument("AAPL")
MID = Decimal(190)
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
QUOTE_INTERVAL = timedelta(milliseconds=10)
MIN_RUN_SECONDS = 0.05


class AllOrdersEngine(MatchingEngine):
    """The matching before issue 12: every working order stepped at every market event."""

    _run = MatchingEngine._run_all


def far_order(i: int, rng: random.Random) -> WorkingOrder:
    """Order `i`: a buy or sell limit or stop 5-15 % away from the market, where no quote reaches it."""
    side = Side.BUY if i % 2 == 0 else Side.SELL
    order_type = OrderType.LIMIT if i % 4 < 2 else OrderType.STOP
    below = (side is Side.BUY) is (order_type is OrderType.LIMIT)  # buy limits and sell stops wait below
    away = Decimal(rng.randint(500, 1_500)) / 10_000
    price = (MID * (1 - away if below else 1 + away)).quantize(AAPL.tick_size)
    limit, stop = (price, None) if order_type is OrderType.LIMIT else (None, price)
    quantity = Decimal(rng.randint(1, 50))
    return WorkingOrder(f"o{i}", AAPL.symbol, side, order_type, quantity, quantity, limit, stop, TimeInForce.GTC, False, T0)


def draw_quotes(count: int, rng: random.Random) -> list[Quote]:
    quotes = []
    mid_ticks = int(MID / AAPL.tick_size)
    walk = 0
    for i in range(count):
        walk = max(-190, min(190, walk + rng.randint(-5, 5)))  # within 1 % of the mid
        bid = (mid_ticks + walk - rng.randint(0, 2)) * AAPL.tick_size
        ask = (mid_ticks + walk + rng.randint(1, 3)) * AAPL.tick_size
        bid_size, ask_size = Decimal(rng.randint(100, 800)), Decimal(rng.randint(100, 800))
        quotes.append(Quote(AAPL.symbol, bid, ask, bid_size, ask_size, bid, Decimal(1), T0 + (i + 1) * QUOTE_INTERVAL))
    return quotes


def build(kind: type[MatchingEngine], resting: int, seed: int) -> MatchingEngine:
    engine = kind(AAPL, FeeModel(Decimal(1), Decimal("0.35")), SlippageModel(Decimal("0.5")), LatencyModel(0), Decimal(1), seed)
    engine.on_quote(Quote(AAPL.symbol, MID - AAPL.tick_size, MID, Decimal(500), Decimal(500), MID, Decimal(1), T0))
    rng = random.Random(seed)
    for i in range(resting):
        if engine.submit(far_order(i, rng), T0):
            raise RuntimeError(f"order {i} was meant to rest far from the market")
    return engine


def feed(engine: MatchingEngine, quotes: list[Quote], passes: int) -> tuple[float, float]:
    """Wall and CPU seconds per quote for sending `quotes` to `engine`, `passes` times over."""
    on_quote = engine.on_quote
    gc.collect()
    started, started_cpu = time.perf_counter(), time.process_time()
    for _ in range(passes):
        for quote in quotes:
            on_quote(quote)
    cpu = time.process_time() - started_cpu
    sent = passes * len(quotes)
    return (time.perf_counter() - started) / sent, cpu / sent


def passes_for(engine: MatchingEngine, quotes: list[Quote]) -> int:
    """How many passes over `quotes` make a timed run of at least MIN_RUN_SECONDS (a short one is all noise)."""
    _, per_quote = feed(engine, quotes, 1)
    return max(1, math.ceil(MIN_RUN_SECONDS / (per_quote * len(quotes))))


def check(engine: MatchingEngine, quotes: list[Quote], resting: int) -> None:
    events = [event for quote in quotes for event in engine.on_quote(quote)]
    if events or len(engine.working_orders()) != resting:
        raise RuntimeError(f"{type(engine).__name__} with {resting} resting: {len(events)} events, not a far-away book")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quotes", type=int, default=500, help="quotes per timed run")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, indexed and reference alternating")
    parser.add_argument("--seed", type=int, default=7, help="seeds the orders and the quotes")
    args = parser.parse_args()
    if args.quotes < 1 or args.rounds < 1:
        parser.error("--quotes and --rounds must be at least 1")

    quotes = draw_quotes(args.quotes, random.Random(args.seed))
    kinds = {"indexed": MatchingEngine, "reference": AllOrdersEngine}
    engines = {(name, n): build(kind, n, args.seed) for name, kind in kinds.items() for n in RESTING}
    for (_, n), engine in engines.items():
        check(engine, quotes, n)  # also the warm-up
    passes = {key: passes_for(engine, quotes) for key, engine in engines.items()}
    gc.collect()
    gc.freeze()

    wall: dict[tuple[str, int], list[float]] = {key: [] for key in engines}
    cpu: dict[tuple[str, int], list[float]] = {key: [] for key in engines}
    for _ in range(args.rounds):
        for n in RESTING:
            for name in kinds:
                spent_wall, spent_cpu = feed(engines[name, n], quotes, passes[name, n])
                wall[name, n].append(spent_wall)
                cpu[name, n].append(spent_cpu)
    for (_, n), engine in engines.items():
        check(engine, quotes, n)

    def us(figures: dict[tuple[str, int], list[float]], name: str, n: int) -> float:
        return statistics.median(figures[name, n]) * 1e6

    print(f"matching engine, {args.quotes} quotes per run, median of {args.rounds} rounds (indexed and reference alternating)")
    print(f"{'resting orders':>16}{'indexed us/quote':>20}{'reference us/quote':>20}{'(wall indexed)':>16}{'(wall ref.)':>14}")
    for n in RESTING:
        print(
            f"{n:16,}{us(cpu, 'indexed', n):20.2f}{us(cpu, 'reference', n):20.2f}"
            f"{us(wall, 'indexed', n):16.2f}{us(wall, 'reference', n):14.2f}"
        )
    most = RESTING[-1]
    ratio = us(cpu, "indexed", most) / us(cpu, "indexed", 0)
    reference_ratio = us(cpu, "reference", most) / us(cpu, "reference", 0)
    print(f"per-quote cost at {most:,} resting / at 0: indexed {ratio:.2f}, reference {reference_ratio:.1f}")
    figures = " ".join(f"indexed_us_{n}={us(cpu, 'indexed', n):.2f}" for n in RESTING)
    print(
        f"RESULT name=matching_resting {figures} reference_us_{most}={us(cpu, 'reference', most):.2f}"
        f" reference_ratio={reference_ratio:.1f} ratio={ratio:.2f}"
    )


if __name__ == "__main__":
    main()
