"""ml_model_accuracy outcomes live in the database: one row per served answer across workers, the same figure after a restart."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from prometheus_client import REGISTRY
from sqlalchemy import func, select

from tradestack.core.clock import SimClock
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.models.signals import SignalOutcomeRow
from tradestack.signals.metrics import ML_MODEL_ACCURACY
from tradestack.signals.outcomes import OutcomeService, judge_alpha, judge_direction


def _accuracy(model: str) -> float | None:
    return REGISTRY.get_sample_value("ml_model_accuracy", {"model": model})


async def _rows(runtime: Runtime, model: str) -> list[tuple[str | None, int | None, int | None]]:
    """(symbol, hits, calls) of the model's rows, judged or not."""
    query = select(SignalOutcomeRow.symbol, SignalOutcomeRow.hits, SignalOutcomeRow.calls).where(
        SignalOutcomeRow.model_version == model
    )
    async with runtime.database.read_session() as session:
        return [(symbol, hits, calls) for symbol, hits, calls in await session.execute(query)]


async def test_outcomes_are_shared_by_workers_and_survive_a_restart(runtime: Runtime, settings: Settings) -> None:
    model = f"orderbook-test-{uuid.uuid4().hex[:8]}"
    clock = SimClock(datetime(2026, 12, 4, 9, 0, tzinfo=UTC))
    runtime.clock = clock
    worker = Runtime.open(settings)  # a second API worker on the same database
    worker.clock = clock
    try:
        first, second = OutcomeService(runtime), OutcomeService(worker)
        due = clock.now() + timedelta(seconds=2.5)
        # Both workers served a prediction on the same book: it is one outcome.
        await first.record_prediction(model, "BTC-USD", "2026-12-04T09:00:00.000Z", Decimal("100.005"), True, due)
        await second.record_prediction(model, "BTC-USD", "2026-12-04T09:00:00.000Z", Decimal("100.005"), True, due)
        await first.record_prediction(model, "BTC-USD", "2026-12-04T09:00:00.250Z", Decimal("100.01"), False, due)
        await second.record_prediction(model, "ETH-USD", "2026-12-04T09:00:00.250Z", Decimal("2000"), True, due)
        await second.record_prediction(model, "BTC-USD", "2026-12-04T09:00:01.000Z", Decimal("100.02"), True, due + timedelta(1))
        assert len(await _rows(runtime, model)) == 4
        mids = {"BTC-USD": Decimal("100.02"), "ETH-USD": Decimal("2000")}

        async def mid_of(symbol: str) -> Decimal | None:
            return mids[symbol]

        assert await first.judge_predictions(mid_of) == 0  # nothing due yet
        clock.advance(2.5)
        # Up and the mid rose: hit; down and it rose: miss; ETH's mid did not move: no call; the last is not due.
        assert await first.judge_predictions(mid_of) == 3
        assert _accuracy(model) == 0.5
        assert await second.judge_predictions(mid_of) == 0  # judged once, by whichever worker looked first
        ML_MODEL_ACCURACY.remove(model)
        # A process that starts afresh (no memory of what was served) publishes the same figure from the table.
        restarted = Runtime.open(settings)
        restarted.clock = clock
        try:
            assert await OutcomeService(restarted).judge_predictions(mid_of) == 0
            assert _accuracy(model) == 0.5
        finally:
            await restarted.close()
        judged = sorted(r for r in await _rows(runtime, model) if r[2] is not None)
        assert judged == [("BTC-USD", 0, 1), ("BTC-USD", 1, 1), ("ETH-USD", 0, 0)]
    finally:
        if _accuracy(model) is not None:
            ML_MODEL_ACCURACY.remove(model)
        await worker.close()


async def test_an_alpha_day_is_recorded_once_and_waits_for_its_bars(runtime: Runtime) -> None:
    model = f"alpha-test-{uuid.uuid4().hex[:8]}"
    clock = SimClock(datetime(2026, 12, 4, 9, 0, tzinfo=UTC))
    runtime.clock = clock
    outcomes = OutcomeService(runtime)
    scores = {"A": 0.3, "B": 0.1, "C": -0.2, "D": -0.4}
    for _ in range(3):
        await outcomes.record_alpha_day(model, date(2026, 11, 2), scores, 5)
    async with runtime.database.read_session() as session:
        count = await session.scalar(select(func.count()).where(SignalOutcomeRow.model_version == model))
    assert count == 1
    bars: dict[str, float] | None = None

    async def realised_of(as_of: date, symbols: list[str], horizon: int) -> dict[str, float] | None:
        assert (as_of, symbols, horizon) == (date(2026, 11, 2), ["A", "B", "C", "D"], 5)
        return bars

    assert await outcomes.judge_alpha_days(realised_of) == 0  # no bars yet: it stays pending
    bars = {"A": 0.02, "B": -0.01, "C": 0.01, "D": -0.03}
    assert await outcomes.judge_alpha_days(realised_of) == 0  # looked less than a minute ago
    clock.advance(60)
    assert await outcomes.judge_alpha_days(realised_of) == 1
    assert _accuracy(model) == 0.5  # A and D on the right side of the median, B and C not
    ML_MODEL_ACCURACY.remove(model)


def test_judging_counts_no_call_for_an_unmoved_price_or_a_value_on_the_median() -> None:
    assert judge_direction(Decimal("10.5"), Decimal("10.5"), True) == (0, 0)
    assert judge_direction(Decimal("10.5"), None, True) == (0, 0)
    assert judge_direction(Decimal("10.5"), Decimal("10.6"), True) == (1, 1)
    assert judge_direction(Decimal("10.5"), Decimal("10.4"), True) == (0, 1)
    # B's score and C's return are on their medians: no calls; A is above both: a hit.
    assert judge_alpha({"A": 1.0, "B": 0.0, "C": -1.0}, {"A": 0.3, "B": 0.1, "C": 0.2}) == (1, 1)
    assert judge_alpha({"A": 1.0, "B": 0.0, "C": -1.0}, {"A": 0.1, "B": 0.2, "C": 0.3}) == (0, 2)  # both wrong side
    assert judge_alpha({"A": 1.0}, {}) == (0, 0)
