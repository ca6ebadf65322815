from datetime import UTC, datetime, timedelta, timezone

import pytest

from tradestack.core.clock import LiveClock, SimClock


def test_live_clock_is_utc_aware() -> None:
    now = LiveClock().now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)


def test_sim_clock_moves_only_when_advanced() -> None:
    start = datetime(2026, 1, 2, 14, 30, tzinfo=UTC)
    clock = SimClock(start)
    assert clock.now() == start
    clock.advance(1.5)
    assert clock.now() == start + timedelta(seconds=1.5)
    assert clock.monotonic() == 1.5


def test_sim_clock_refuses_naive_or_non_utc_and_backwards() -> None:
    with pytest.raises(ValueError, match="UTC"):
        SimClock(datetime(2026, 1, 2))  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="UTC"):
        SimClock(datetime(2026, 1, 2, tzinfo=timezone(timedelta(hours=10))))
    with pytest.raises(ValueError, match="backwards"):
        SimClock(datetime(2026, 1, 2, tzinfo=UTC)).advance(-1)
