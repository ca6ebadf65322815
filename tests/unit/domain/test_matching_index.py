"""The price index of the matching engine changes what it costs, never what it does.

`MatchingEngine` visits at a market event only the orders that can act on it (issue 12). The oracle
here is the engine as it was before: every working order stepped at every event, in submission
order. Both play the same random flows (submits of every type, side and time in force, with and
without latency, restarted orders, cancels, quotes, prints, session closes, a venue that closes);
after every call the returned events, the working orders, each order's resting/triggered state and
the queue model's random generator must be the same.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tradestack.domain.instruments import NASDAQ, Instrument, InstrumentKind, Venue
from tradestack.domain.marketdata import Quote, Side, Trade
from tradestack.domain.matching import (
    _ALWAYS,
    FeeModel,
    LatencyModel,
    MatchEvent,
    MatchingEngine,
    SlippageModel,
    WorkingOrder,
    _Market,
    _Progress,
)
from tradestack.domain.orders import OrderType, TimeInForce

TICK = Decimal("0.05")
LOT = Decimal(10)
TEST = Instrument("TEST", InstrumentKind.EQUITY, "NASDAQ", "Test Corp", "USD", None, TICK, LOT)
MID_TICKS = 2_000  # 100.00
T0 = datetime(2026, 12, 7, 20, 58, tzinfo=UTC)  # two minutes before the NASDAQ close (16:00 New York)
FLOWS = 200
STEPS = 150


class AllOrdersEngine(MatchingEngine):
    """The reference: the matching before the index, every working order stepped at every event."""

    _run = MatchingEngine._run_all


@dataclass(frozen=True)
class Models:
    latency: float
    participation: Decimal
    slippage_bps: Decimal
    queue_fill_probability: Decimal
    hours: Venue | None

    def build(self, kind: type[MatchingEngine], seed: int) -> MatchingEngine:
        return kind(
            TEST,
            FeeModel(Decimal(2), Decimal("0.35"), places=2),
            SlippageModel(self.slippage_bps),
            LatencyModel(self.latency),
            self.participation,
            seed,
            queue_fill_probability=self.queue_fill_probability,
            hours=self.hours,
        )


def price(ticks: int) -> Decimal:
    return ticks * TICK


def draw_models(rng: random.Random) -> Models:
    return Models(
        latency=rng.choice((0.0, 0.0, 1.5, 4.0)),
        participation=rng.choice((Decimal(1), Decimal("0.5"), Decimal("0.3"))),
        slippage_bps=rng.choice((Decimal(0), Decimal(0), Decimal(15))),
        queue_fill_probability=rng.choice((Decimal("0.5"), Decimal(0), Decimal(1))),
        hours=rng.choice((None, None, NASDAQ)),
    )


def draw_order(rng: random.Random, order_id: str, mid: int, ts: datetime) -> WorkingOrder:
    order_type = rng.choice(list(OrderType))
    side = rng.choice(list(Side))
    lots = rng.randint(1, 8)
    quantity = lots * LOT
    remaining, fills, notional, triggered = quantity, 0, Decimal(0), False
    if rng.random() < 0.1:  # rebuilt after a restart: partly filled already, a stop maybe triggered
        remaining = rng.randint(1, lots) * LOT
        fills = 1 if remaining < quantity else 0
        notional = (quantity - remaining) * price(mid)
        triggered = order_type.needs_stop_price and rng.random() < 0.5
    away = 1 if side is Side.BUY else -1  # a stop waits on the far side of the market, mostly
    return WorkingOrder(
        order_id=order_id,
        symbol=TEST.symbol,
        side=side,
        type=order_type,
        quantity=quantity,
        remaining=remaining,
        limit_price=price(mid + rng.randint(-8, 8)) if order_type.needs_limit_price else None,
        stop_price=price(mid + away * rng.randint(-2, 8)) if order_type.needs_stop_price else None,
        time_in_force=rng.choice((TimeInForce.DAY, TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK)),
        triggered=triggered,
        submitted_at=ts,
        fills=fills,
        filled_notional=notional,
    )


def draw_quote(rng: random.Random, mid: int, ts: datetime) -> Quote:
    size = (Decimal(0), Decimal(5), Decimal(10), Decimal(30), Decimal(100))
    if rng.random() < 0.05:  # an empty book
        return Quote(TEST.symbol, Decimal(0), Decimal(0), Decimal(0), Decimal(0), Decimal(0), Decimal(1), ts)
    bid = mid - rng.randint(0, 2)
    ask = mid + rng.randint(0, 2)
    bid_price = Decimal(0) if rng.random() < 0.05 else price(bid)  # no bid
    return Quote(TEST.symbol, bid_price, price(ask), rng.choice(size), rng.choice(size), bid_price, Decimal(1), ts)


def working_state(engine: MatchingEngine) -> list[tuple[WorkingOrder, bool, bool]]:
    return [(p.snapshot(), p.rested, p.triggered) for p in engine._orders.values()]


Action = tuple[str, object, datetime]


def apply(engine: MatchingEngine, action: Action) -> object:
    kind, what, ts = action
    if kind == "submit":
        assert isinstance(what, WorkingOrder)
        return engine.submit(what, ts)
    if kind == "cancel":
        assert isinstance(what, str)
        return engine.cancel(what)
    if kind == "quote":
        assert isinstance(what, Quote)
        return engine.on_quote(what)
    if kind == "trade":
        assert isinstance(what, Trade)
        return engine.on_trade(what)
    assert what is None or isinstance(what, set)
    return engine.on_session_close(ts, what)


def draw_action(rng: random.Random, mid: int, ts: datetime, submitted: int) -> Action:
    action = rng.random()
    if action < 0.35:
        return "submit", draw_order(rng, f"o{submitted + 1}", mid, ts), ts
    if action < 0.45 and submitted:
        return "cancel", f"o{rng.randint(1, submitted)}", ts
    if action < 0.8:
        return "quote", draw_quote(rng, mid, ts), ts
    if action < 0.97:
        size = rng.choice((Decimal(5), Decimal(20), Decimal(60)))
        return "trade", Trade(TEST.symbol, price(mid + rng.randint(-2, 2)), size, Side.BUY, ts), ts
    some = None if rng.random() < 0.5 else {f"o{i}" for i in range(1, submitted + 1) if rng.random() < 0.5}
    return "close", some, ts


def play(seed: int) -> int:
    """Play one random flow on both engines, comparing after every call; the number of events seen."""
    rng = random.Random(seed)
    models = draw_models(rng)
    reference, indexed = models.build(AllOrdersEngine, seed), models.build(MatchingEngine, seed)
    mid, ts, submitted, seen = MID_TICKS, T0, 0, 0
    for step in range(STEPS):
        ts += timedelta(seconds=rng.choice((0, 0.5, 1, 2)) if rng.random() > 0.03 else -3)  # now and then back in time
        mid += rng.randint(-3, 3)
        action = draw_action(rng, mid, ts, submitted)
        submitted += action[0] == "submit"
        expected, got = apply(reference, action), apply(indexed, action)
        context = f"seed {seed}, step {step}: {action}"
        assert repr(got) == repr(expected), context
        assert working_state(indexed) == working_state(reference), context
        assert indexed.working_orders() == reference.working_orders(), context
        assert indexed._rng.getstate() == reference._rng.getstate(), context
        check_index(indexed)
        seen += len(expected) if isinstance(expected, list) else 0
    return seen


def check_index(engine: MatchingEngine) -> None:
    """Each working order is filed exactly once, where its state says, and nothing else is filed."""
    filed = [p.order.order_id for p in engine._always.values()]
    assert all(p.ladder == _ALWAYS for p in engine._always.values())
    for where, ladder in enumerate(engine._ladders):
        assert ladder.rungs == sorted(ladder.rungs)
        for rung_price, seq, progress in ladder.rungs:
            assert progress.ladder == where
            assert (rung_price, seq) == (progress.ladder_price, progress.seq)
            filed.append(progress.order.order_id)
    assert sorted(filed) == sorted(engine._orders)


@pytest.mark.parametrize("first", range(0, FLOWS, 50))
def test_the_indexed_engine_matches_exactly_like_visiting_every_order(first: int) -> None:
    seen = sum(play(seed) for seed in range(first, first + 50))
    assert seen > 500  # the flows do match: fills, triggers and expiries to compare


def test_far_orders_are_not_visited_by_a_market_event(monkeypatch: pytest.MonkeyPatch) -> None:
    def book(bid: int, ask: int, seconds: int) -> Quote:
        return Quote(TEST.symbol, price(bid), price(ask), LOT, LOT, price(bid), Decimal(1), T0 + timedelta(seconds=seconds))

    paper = MatchingEngine(TEST, FeeModel(Decimal(0)), SlippageModel(Decimal(0)), LatencyModel(0), Decimal(1), 7)
    paper.on_quote(book(MID_TICKS, MID_TICKS + 1, 0))
    for i, (side, offset) in enumerate(((Side.BUY, -100), (Side.SELL, 100)) * 50):
        limit = price(MID_TICKS + offset)
        far = WorkingOrder(f"o{i}", TEST.symbol, side, OrderType.LIMIT, LOT, LOT, limit, None, TimeInForce.GTC, False, T0)
        assert paper.submit(far, T0) == []  # tried once against the quote: now resting
    stepped: list[str] = []
    step = paper._step

    def counting_step(progress: _Progress, market: _Market, events: list[MatchEvent]) -> None:
        stepped.append(progress.order.order_id)
        step(progress, market, events)

    monkeypatch.setattr(paper, "_step", counting_step)
    assert paper.on_quote(book(MID_TICKS - 1, MID_TICKS, 1)) == []
    assert stepped == []
    assert len(paper.working_orders()) == 100
    assert paper.on_quote(book(MID_TICKS + 100, MID_TICKS + 101, 2)) != []  # the bid reaches the sells
    assert sorted(stepped) == sorted(f"o{i}" for i in range(1, 100, 2))
