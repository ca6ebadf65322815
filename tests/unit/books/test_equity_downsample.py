"""Downsampling a recorded equity series for the chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tradestack.books.repository import EquityPoint
from tradestack.books.service import downsample

START = datetime(2026, 11, 30, tzinfo=UTC)


def series(count: int, step_seconds: int = 60) -> list[EquityPoint]:
    return [EquityPoint(START + timedelta(seconds=i * step_seconds), Decimal(i)) for i in range(count)]


def test_a_short_series_is_kept_whole() -> None:
    points = series(10)
    kept, thinned = downsample(points, START, START + timedelta(hours=1), 10)
    assert (kept, thinned) == (points, False)


def test_a_long_series_keeps_the_last_point_of_each_span_and_the_newest() -> None:
    points = series(1000)
    end = points[-1].ts
    kept, thinned = downsample(points, START, end, 100)
    assert thinned
    assert len(kept) == 100
    assert kept[-1] == points[-1]
    assert [p.ts for p in kept] == sorted(p.ts for p in kept)
    assert kept[0] == points[9]  # the first span (0..599.4 s of 999 min / 100) ends with the tenth point


def test_an_empty_span_keeps_nothing_rather_than_inventing_a_point() -> None:
    points = [*series(50), *[EquityPoint(START + timedelta(days=1, seconds=i), Decimal(7)) for i in range(50)]]
    kept, _ = downsample(points, START, START + timedelta(days=1, seconds=49), 10)
    assert {p.equity for p in kept} <= {p.equity for p in points}
    assert len(kept) == 2  # everything falls in the first and the last span
