"""Live accuracy of the order-book predictor: each prediction on a live book is resolved once its horizon has passed.

A prediction records the mid of the book it used and when its horizon ends (the model's horizon in
book updates times the feed's seconds per update). When that time has come (by the injected
clock), the mid of the live book then is compared: a prediction is a hit when it said up and the
mid rose, or down and it fell; an unchanged mid is not counted. `ml_model_accuracy{model}` is hits
over counted outcomes, per process.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from tradestack.signals.metrics import ML_MODEL_ACCURACY


@dataclass(frozen=True, slots=True)
class Pending:
    """A prediction waiting for its outcome."""

    model: str
    symbol: str
    mid: float
    up: bool
    due: datetime


class OutcomeTracker:
    """Predictions in the order they were made, resolved against later live mids."""

    def __init__(self) -> None:
        self.pending: deque[Pending] = deque()
        self.hits: dict[str, int] = defaultdict(int)
        self.counted: dict[str, int] = defaultdict(int)

    def record(self, model: str, symbol: str, mid: float, probability_up: float, due: datetime) -> None:
        """Remember a prediction made on a live book with mid `mid`, to be judged at `due`."""
        self.pending.append(Pending(model, symbol, mid, probability_up >= 0.5, due))

    async def resolve(self, now: datetime, mid_of: Callable[[str], Awaitable[float | None]]) -> int:
        """Judge every prediction due by `now` against the current mid; returns how many were judged."""
        judged = 0
        current: dict[str, float | None] = {}
        while self.pending and self.pending[0].due <= now:
            pending = self.pending.popleft()
            if pending.symbol not in current:
                current[pending.symbol] = await mid_of(pending.symbol)
            later = current[pending.symbol]
            judged += 1
            if later is None or later == pending.mid:
                continue
            self.counted[pending.model] += 1
            self.hits[pending.model] += int((later > pending.mid) == pending.up)
            ML_MODEL_ACCURACY.labels(model=pending.model).set(self.accuracy(pending.model))
        return judged

    def accuracy(self, model: str) -> float:
        """Hits over counted outcomes of `model` (NaN before the first)."""
        counted = self.counted[model]
        return self.hits[model] / counted if counted else float("nan")
