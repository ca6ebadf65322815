"""aggregate_raw rolls text rows up exactly as the domain's aggregate rolls Bars up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradestack.core.money import plain
from tradestack.domain.marketdata import Bar, Timeframe, aggregate
from tradestack.marketdata.service import aggregate_raw

START = datetime(2024, 3, 1, tzinfo=UTC)
prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("99999"), places=4)


@st.composite
def minute_bars(draw: st.DrawFn) -> list[Bar]:
    offsets = sorted(draw(st.sets(st.integers(min_value=0, max_value=600), min_size=1, max_size=80)))
    bars = []
    for offset in offsets:
        values = sorted(draw(st.lists(prices, min_size=4, max_size=4)))
        low, high = values[0], values[-1]
        open_, close = values[1], values[2]
        volume = draw(st.decimals(min_value=Decimal(0), max_value=Decimal("1e9"), places=6))
        bars.append(Bar("X", START + timedelta(minutes=offset), open_, high, low, close, volume))
    return bars


def raw(bar: Bar) -> tuple[int, str, str, str, str, str, str]:
    epoch = int(bar.ts.timestamp())
    iso = bar.ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (epoch, iso, *(plain(value) for value in (bar.open, bar.high, bar.low, bar.close, bar.volume)))  # type: ignore[return-value]


@settings(max_examples=60, deadline=None)
@given(bars=minute_bars(), timeframe=st.sampled_from([Timeframe.M5, Timeframe.M15, Timeframe.H1]))
def test_same_candles_as_the_domain_aggregate(bars: list[Bar], timeframe: Timeframe) -> None:
    expected = [
        (c.ts.strftime("%Y-%m-%dT%H:%M:%SZ"), *(plain(v) for v in (c.open, c.high, c.low, c.close, c.volume)))
        for c in aggregate(bars, timeframe)
    ]
    assert aggregate_raw([raw(bar) for bar in bars], timeframe.seconds) == expected


def test_rows_out_of_time_order_are_refused() -> None:
    rows = [(3600, "", "1", "1", "1", "1", "1"), (0, "", "1", "1", "1", "1", "1")]
    with pytest.raises(ValueError, match="time order"):
        aggregate_raw(rows, 60)
