"""Live accuracy of the served models, kept in the database (`signal_outcomes`).

Every live order-book prediction and every day of alpha signals served is recorded once (however
many API workers served it: the row is keyed by model and book timestamp or as-of day), with when
its horizon ends. Once that time has come (by the injected clock) it is judged:

- order book: a hit when it said up and the live mid then is above the mid it predicted from, or
  down and below; an unchanged (or missing) mid is no call;
- alpha: over the symbols with a realised forward return, a hit when score and return fall on the
  same side of the day's median (a value on the median is no call); a day waits until enough
  symbols have their bars.

`ml_model_accuracy{model}` is the sum of hits over the sum of calls of the model's judged rows:
the same figure in every worker, and after a restart. Each process looks for due rows only when
the earliest it knows of falls due, and at least every `LOOK_EVERY_SECONDS` for rows other
workers recorded (alpha: every `ALPHA_LOOK_EVERY_SECONDS`, as reading bars costs more).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import numpy as np

from tradestack.kit.runtime import Runtime, Slot
from tradestack.models.signals import SignalOutcomeRow
from tradestack.signals.metrics import ML_MODEL_ACCURACY
from tradestack.signals.repository import SignalOutcomeRepository

ORDERBOOK = "orderbook"
ALPHA = "alpha"
LOOK_EVERY_SECONDS = 5.0
ALPHA_LOOK_EVERY_SECONDS = 60.0


def judge_direction(mid_then: Decimal, mid_now: Decimal | None, up: bool) -> tuple[int, int]:
    """(hits, calls) of one directional prediction: no call when the mid is unknown or unchanged."""
    if mid_now is None or mid_now == mid_then:
        return 0, 0
    return int((mid_now > mid_then) == up), 1


def judge_alpha(scores: Mapping[str, float], realised: Mapping[str, float]) -> tuple[int, int]:
    """(hits, calls) of one day's scores against the realised returns of the symbols that have one."""
    symbols = sorted(s for s in realised if s in scores)
    if not symbols:
        return 0, 0
    score = np.array([scores[s] for s in symbols])
    outcome = np.array([realised[s] for s in symbols])
    side_score, side_outcome = score - np.median(score), outcome - np.median(outcome)
    called = (side_score != 0) & (side_outcome != 0)
    return int((np.sign(side_score[called]) == np.sign(side_outcome[called])).sum()), int(called.sum())


@dataclass
class _Looking:
    """What this process knows between looks at the table."""

    next_due: dict[str, datetime | None] = field(default_factory=dict)
    looked_at: dict[str, float] = field(default_factory=dict)
    recorded_days: set[tuple[str, str]] = field(default_factory=set)


LOOKING: Slot[_Looking] = Slot("signals.outcomes")


MidOf = Callable[[str], Awaitable[Decimal | None]]
RealisedOf = Callable[[date, list[str], int], Awaitable[dict[str, float] | None]]


class OutcomeService:
    """Record served answers, judge those whose horizon has passed, publish `ml_model_accuracy`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._looking = runtime.components.get_or_create(LOOKING, _Looking)

    def _expect(self, kind: str, due: datetime) -> None:
        known = self._looking.next_due.get(kind)
        self._looking.next_due[kind] = due if known is None else min(known, due)

    async def record_prediction(self, model: str, symbol: str, book_ts: str, mid: Decimal, up: bool, due: datetime) -> None:
        """A prediction made on the live book of `symbol` published at `book_ts`, to be judged at `due`."""
        row = SignalOutcomeRow(
            model_version=model, kind=ORDERBOOK, subject=f"{symbol}@{book_ts}"[:100], symbol=symbol,
            made_at=self.runtime.clock.now(), due_at=due, mid=mid, up=up,
        )  # fmt: skip
        async with self.runtime.database.session() as session:
            await SignalOutcomeRepository(session).record(row)
        self._expect(ORDERBOOK, due)

    async def record_alpha_day(self, model: str, as_of: date, scores: Mapping[str, float], horizon_days: int) -> None:
        """A day of signals served (recorded once per process and model; the table keeps it once overall)."""
        key = (model, as_of.isoformat())
        if key in self._looking.recorded_days:
            return
        due = datetime.combine(as_of, time(), UTC) + timedelta(days=horizon_days)  # no sooner: bars are daily
        row = SignalOutcomeRow(
            model_version=model, kind=ALPHA, subject=as_of.isoformat(), symbol=None, made_at=self.runtime.clock.now(),
            due_at=due, scores_json=json.dumps({"scores": dict(scores), "horizon": horizon_days}),
        )  # fmt: skip
        async with self.runtime.database.session() as session:
            await SignalOutcomeRepository(session).record(row)
        self._looking.recorded_days.add(key)
        self._expect(ALPHA, due)

    def _time_to_look(self, kind: str, every: float) -> bool:
        due = self._looking.next_due.get(kind)
        if due is not None and due <= self.runtime.clock.now():
            return True
        return self.runtime.clock.monotonic() - self._looking.looked_at.get(kind, -1e18) >= every

    async def judge_predictions(self, mid_of: MidOf) -> int:
        """Judge the order-book predictions due by now against the live mids; returns how many were judged."""
        if not self._time_to_look(ORDERBOOK, LOOK_EVERY_SECONDS):
            return 0
        now = self.runtime.clock.now()
        mids: dict[str, Decimal | None] = {}
        judged = 0
        async with self.runtime.database.session() as session:
            repository = SignalOutcomeRepository(session)
            for row in await repository.due(ORDERBOOK, now):
                symbol = row.symbol or ""
                if symbol not in mids:
                    mids[symbol] = await mid_of(symbol)
                hits, calls = judge_direction(row.mid if row.mid is not None else Decimal(0), mids[symbol], bool(row.up))
                judged += int(await repository.resolve(row.id, now, hits, calls))
            self._looking.next_due[ORDERBOOK] = await repository.next_due(ORDERBOOK)
            accuracy = await repository.accuracy()
        self._looking.looked_at[ORDERBOOK] = self.runtime.clock.monotonic()
        _publish(accuracy)
        return judged

    async def judge_alpha_days(self, realised_of: RealisedOf) -> int:
        """Judge the alpha days whose bars have arrived; returns how many were judged."""
        if self.runtime.clock.monotonic() - self._looking.looked_at.get(ALPHA, -1e18) < ALPHA_LOOK_EVERY_SECONDS:
            return 0  # days fall due long before their bars arrive: look at a steady pace
        now = self.runtime.clock.now()
        judged = 0
        async with self.runtime.database.session() as session:
            repository = SignalOutcomeRepository(session)
            for row in await repository.due(ALPHA, now):
                stored = json.loads(row.scores_json or "{}")
                scores: dict[str, float] = stored.get("scores", {})
                realised = await realised_of(date.fromisoformat(row.subject), sorted(scores), int(stored.get("horizon", 0)))
                if realised is None:
                    continue  # not enough bars yet
                hits, calls = judge_alpha(scores, realised)
                judged += int(await repository.resolve(row.id, now, hits, calls))
            accuracy = await repository.accuracy()
        self._looking.looked_at[ALPHA] = self.runtime.clock.monotonic()
        _publish(accuracy)
        return judged

    async def tally(self) -> list[tuple[str, str, int, int, int]]:
        """(model, kind, hits, calls, pending) per model version, from the stored outcomes of every process."""
        async with self.runtime.database.session() as session:
            return await SignalOutcomeRepository(session).tally()


def _publish(accuracy: Mapping[str, tuple[int, int]]) -> None:
    for model, (hits, calls) in accuracy.items():
        if calls:
            ML_MODEL_ACCURACY.labels(model=model).set(hits / calls)
