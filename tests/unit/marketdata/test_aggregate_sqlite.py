"""aggregate_sqlite rolls SQLite's stored text rows up exactly as the domain's aggregate rolls Bars up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from tradestack.core.money import plain
from tradestack.domain.marketdata import Bar, Timeframe, aggregate
from tradestack.marketdata.repository import SQLiteBar, sqlite_time, sqlite_time_parsed
from tradestack.marketdata.service import aggregate_sqlite
from tradestack.models.marketdata import BarRow

START = datetime(2024, 3, 1, tzinfo=UTC)
prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("99999"), places=4)


@st.composite
def minute_bars(draw: st.DrawFn) -> list[Bar]:
    # Up to three days of minutes, so that candles cross midnight (and 1d candles hold several bars).
    offsets = sorted(draw(st.sets(st.integers(min_value=0, max_value=3 * 1440), min_size=1, max_size=80)))
    bars = []
    for offset in offsets:
        values = sorted(draw(st.lists(prices, min_size=4, max_size=4)))
        low, high = values[0], values[-1]
        open_, close = values[1], values[2]
        places = draw(st.sampled_from([0, 6]))  # whole volumes (shares) and fractional ones (crypto)
        volume = draw(st.decimals(min_value=Decimal(0), max_value=Decimal("1e9"), places=places))
        bars.append(Bar("X", START + timedelta(minutes=offset), open_, high, low, close, volume))
    return bars


def stored(bar: Bar) -> SQLiteBar:
    return (sqlite_time(bar.ts), *(plain(value) for value in (bar.open, bar.high, bar.low, bar.close, bar.volume)))  # type: ignore[return-value]


@settings(max_examples=80, deadline=None)
@given(bars=minute_bars(), timeframe=st.sampled_from([Timeframe.M5, Timeframe.M15, Timeframe.H1, Timeframe.D1]))
def test_same_candles_as_the_domain_aggregate(bars: list[Bar], timeframe: Timeframe) -> None:
    expected = [
        (c.ts.strftime("%Y-%m-%dT%H:%M:%SZ"), *(plain(v) for v in (c.open, c.high, c.low, c.close, c.volume)))
        for c in aggregate(bars, timeframe)
    ]
    assert aggregate_sqlite([stored(bar) for bar in bars], timeframe) == expected


def test_prices_a_float_cannot_tell_apart_are_compared_exactly() -> None:
    at = [sqlite_time(START + timedelta(minutes=minute)) for minute in range(3)]
    rows = [
        (at[0], "1", "1.00000000000000001", "0.99999999999999998", "1", "5"),
        (at[1], "1", "1.00000000000000003", "0.99999999999999997", "1", "0.25"),
        (at[2], "1", "1.00000000000000002", "0.99999999999999999", "1", "123456789012345678901234567890"),
    ]
    assert float(rows[0][2]) == float(rows[1][2])  # what the exact comparison is for
    [candle] = aggregate_sqlite(rows, Timeframe.H1)
    assert candle == (
        "2024-03-01T00:00:00Z",
        "1",
        "1.00000000000000003",
        "0.99999999999999997",
        "1",
        "123456789012345678901234567895.25",
    )


def test_rows_out_of_time_order_are_refused() -> None:
    later, earlier = (sqlite_time(START + timedelta(hours=1)), sqlite_time(START))
    rows = [(later, "1", "1", "1", "1", "1"), (earlier, "1", "1", "1", "1", "1")]
    with pytest.raises(ValueError, match="time order"):
        aggregate_sqlite(rows, Timeframe.M1)


@pytest.mark.parametrize(
    "ts",
    [datetime(2024, 3, 1, 14, 30, tzinfo=UTC), datetime(2024, 3, 1, 9, 30, 0, 250, tzinfo=timezone(timedelta(hours=-5)))],
)
def test_the_stored_time_text_is_what_sqlalchemy_stores_and_reads_back(ts: datetime) -> None:
    dialect = sqlite.dialect()
    column_type = BarRow.__table__.c.ts.type.dialect_impl(dialect)
    bind, result = column_type.bind_processor(dialect), column_type.result_processor(dialect, None)
    assert bind is not None
    assert result is not None
    stored_by_sqlalchemy = bind(ts)
    assert sqlite_time(ts) == stored_by_sqlalchemy
    assert sqlite_time_parsed(stored_by_sqlalchemy) == ts == result(stored_by_sqlalchemy)
