from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradestack.domain.marketdata import Bar, Timeframe
from tradestack.domain.validation import MAX_EXAMPLES, Calendar, Issue, drop_invalid, price_problem, validate_bars

MONDAY = datetime(2024, 1, 8, tzinfo=UTC)


def bar(ts: datetime, o: str = "10", h: str = "12", low: str = "9", c: str = "11", v: str = "100", symbol: str = "X") -> Bar:
    return Bar(symbol, ts, Decimal(o), Decimal(h), Decimal(low), Decimal(c), Decimal(v))


def days(*offsets: int) -> list[Bar]:
    return [bar(MONDAY + timedelta(days=n)) for n in offsets]


def minutes(start: datetime, *offsets: int) -> list[Bar]:
    return [bar(start + timedelta(minutes=n)) for n in offsets]


def only(report_counts: dict[Issue, int]) -> dict[Issue, int]:
    return {issue: count for issue, count in report_counts.items() if count}


# -- clean series and gaps --------------------------------------------------------------------------


def test_two_clean_weeks_of_daily_bars_have_no_issues() -> None:
    bars = days(0, 1, 2, 3, 4, 7, 8, 9, 10, 11)
    report = validate_bars(bars, Timeframe.D1, calendar="weekdays")
    assert report.ok
    assert only(dict(report.counts)) == {}
    assert report.rows == 10
    assert report.first == MONDAY
    assert report.last == MONDAY + timedelta(days=11)
    assert report.missing_bars == 0
    assert report.calendar is Calendar.WEEKDAYS


def test_missing_weekday_is_a_gap_but_the_weekend_is_not() -> None:
    report = validate_bars(days(0, 1, 3, 4, 7), Timeframe.D1, calendar="weekdays")
    assert report.ok
    assert report.counts[Issue.GAP] == 1
    assert report.missing_bars == 1
    assert report.examples[Issue.GAP] == (MONDAY + timedelta(days=2),)


def test_a_missing_week_is_one_gap_of_five_weekdays() -> None:
    report = validate_bars(days(0, 14), Timeframe.D1, calendar="weekdays")
    assert report.counts[Issue.GAP] == 1
    assert report.missing_bars == 9  # Tue-Fri of week 1 and Mon-Fri of week 2
    assert report.examples[Issue.GAP] == (MONDAY + timedelta(days=1),)


def test_weekend_is_a_gap_on_the_always_calendar() -> None:
    report = validate_bars(days(4, 7), Timeframe.D1, calendar="always")
    assert report.counts[Issue.GAP] == 1
    assert report.missing_bars == 2
    assert report.examples[Issue.GAP] == (MONDAY + timedelta(days=5),)
    assert report.ok


def test_intraday_gap_inside_a_session_is_counted() -> None:
    open_ = MONDAY.replace(hour=14, minute=30)
    report = validate_bars(minutes(open_, 0, 1, 2, 6, 7), Timeframe.M1, calendar="weekdays")
    assert report.counts[Issue.GAP] == 1
    assert report.missing_bars == 3
    assert report.examples[Issue.GAP] == (open_ + timedelta(minutes=3),)


def test_overnight_and_weekend_breaks_are_not_intraday_gaps() -> None:
    friday_close = MONDAY.replace(hour=20, minute=58) + timedelta(days=4)
    next_open = MONDAY.replace(hour=14, minute=30) + timedelta(days=7)
    bars = [
        *minutes(MONDAY.replace(hour=20, minute=58), 0, 1),
        *minutes(MONDAY.replace(hour=14, minute=30) + timedelta(days=1), 0, 1),
        *minutes(friday_close, 0, 1),
        *minutes(next_open, 0, 1),
    ]
    report = validate_bars(bars, Timeframe.M1, calendar="weekdays")
    assert report.counts[Issue.GAP] == 0
    assert report.ok


def test_fx_weekend_close_is_not_a_gap_on_weekdays_but_is_on_always() -> None:
    friday_last = MONDAY + timedelta(days=4, hours=21)
    sunday_open = MONDAY + timedelta(days=6, hours=22)
    bars = [bar(friday_last - timedelta(hours=1)), bar(friday_last), bar(sunday_open), bar(sunday_open + timedelta(hours=1))]
    assert validate_bars(bars, Timeframe.H1, calendar="weekdays").counts[Issue.GAP] == 0
    always = validate_bars(bars, Timeframe.H1, calendar="always")
    assert always.counts[Issue.GAP] == 1
    assert always.missing_bars == 48
    assert always.examples[Issue.GAP] == (friday_last + timedelta(hours=1),)


def test_hours_missing_inside_an_fx_weekday_are_gaps() -> None:
    christmas = datetime(2017, 12, 25, tzinfo=UTC)
    bars = [bar(christmas + timedelta(hours=h)) for h in (5, 6, 7, 22, 23)]
    report = validate_bars(bars, Timeframe.H1, calendar="weekdays")
    assert report.counts[Issue.GAP] == 1
    assert report.missing_bars == 14
    assert "1 gap (14 bars missing)" in report.summary()


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prices", "issue"),
    [
        (("10", "10.5", "9", "11"), Issue.OHLC_INCONSISTENT),  # high below close
        (("10", "12", "10.5", "11"), Issue.OHLC_INCONSISTENT),  # low above open
        (("10", "9", "12", "10"), Issue.OHLC_INCONSISTENT),  # high below low
        (("10", "12", "0", "11"), Issue.NON_POSITIVE_PRICE),
        (("-1", "12", "-2", "11"), Issue.NON_POSITIVE_PRICE),
    ],
)
def test_bad_prices_are_errors(prices: tuple[str, str, str, str], issue: Issue) -> None:
    bad = bar(MONDAY + timedelta(days=1), *prices)
    report = validate_bars([bar(MONDAY), bad, bar(MONDAY + timedelta(days=2))], Timeframe.D1, calendar="weekdays")
    assert report.counts[issue] == 1
    assert report.examples[issue] == (bad.ts,)
    assert not report.ok
    assert report.errors >= 1


def test_negative_volume_is_an_error() -> None:
    report = validate_bars([bar(MONDAY, v="-1")], Timeframe.D1, calendar="weekdays")
    assert only(dict(report.counts)) == {Issue.NEGATIVE_VOLUME: 1}
    assert not report.ok


def test_zero_volume_is_fine() -> None:
    assert validate_bars([bar(MONDAY, v="0")], Timeframe.D1, calendar="weekdays").ok


def test_duplicate_and_out_of_order_timestamps_are_errors() -> None:
    bars = days(0, 1, 1, 3, 2, 4)
    report = validate_bars(bars, Timeframe.D1, calendar="weekdays")
    assert only(dict(report.counts)) == {Issue.DUPLICATE: 1, Issue.OUT_OF_ORDER: 1}
    assert report.examples[Issue.DUPLICATE] == (MONDAY + timedelta(days=1),)
    assert report.examples[Issue.OUT_OF_ORDER] == (MONDAY + timedelta(days=2),)
    assert not report.ok
    assert report.first == MONDAY
    assert report.last == MONDAY + timedelta(days=4)


def test_timestamp_off_the_grid_is_misaligned() -> None:
    start = MONDAY.replace(hour=14)
    bars = [bar(start), bar(start + timedelta(minutes=15)), bar(start + timedelta(minutes=20, seconds=2))]
    report = validate_bars(bars, Timeframe.M15, calendar="always")
    assert report.counts[Issue.MISALIGNED] == 1
    assert report.examples[Issue.MISALIGNED] == (start + timedelta(minutes=20, seconds=2),)
    assert not report.ok


def test_examples_are_capped_but_counts_are_not() -> None:
    bars = [bar(MONDAY + timedelta(minutes=n), h="9") for n in range(12)]
    report = validate_bars(bars, Timeframe.M1, calendar="always")
    assert report.counts[Issue.OHLC_INCONSISTENT] == 12
    assert len(report.examples[Issue.OHLC_INCONSISTENT]) == MAX_EXAMPLES
    assert report.examples[Issue.OHLC_INCONSISTENT][0] == MONDAY


def test_empty_series_is_ok_and_has_no_span() -> None:
    report = validate_bars([], Timeframe.H1, calendar="always")
    assert report.ok
    assert (report.rows, report.first, report.last) == (0, None, None)
    assert report.summary() == "0 rows"


def test_unknown_calendar_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown calendar 'nyse'; use one of weekdays, always"):
        validate_bars(days(0), Timeframe.D1, calendar="nyse")


def test_mixed_symbols_are_refused() -> None:
    with pytest.raises(ValueError, match="one symbol"):
        validate_bars([bar(MONDAY), bar(MONDAY, symbol="Y")], Timeframe.D1, calendar="weekdays")


# -- drop_invalid -----------------------------------------------------------------------------------


def test_drop_invalid_keeps_the_first_of_duplicates_and_sorts() -> None:
    first = bar(MONDAY + timedelta(days=1), c="11")
    second = bar(MONDAY + timedelta(days=1), c="11.5")
    kept, rejected = drop_invalid([bar(MONDAY + timedelta(days=2)), first, second, bar(MONDAY)])
    assert [b.ts for b in kept] == [MONDAY, MONDAY + timedelta(days=1), MONDAY + timedelta(days=2)]
    assert kept[1] is first
    assert rejected == [(second, "duplicate timestamp 2024-01-09T00:00:00+00:00; kept the first bar")]


def test_drop_invalid_refuses_bad_prices_with_the_reason() -> None:
    high_low = bar(MONDAY, h="8", low="9")
    zero = bar(MONDAY + timedelta(days=1), o="0")
    negative_volume = bar(MONDAY + timedelta(days=2), v="-5")
    good = bar(MONDAY + timedelta(days=3))
    kept, rejected = drop_invalid([high_low, zero, negative_volume, good])
    assert kept == [good]
    assert rejected == [
        (high_low, "high 8 is below low 9"),
        (zero, "open 0 is not a positive price"),
        (negative_volume, "volume -5 is negative"),
    ]


def test_drop_invalid_keeps_a_later_valid_bar_when_the_first_of_a_timestamp_is_bad() -> None:
    bad = bar(MONDAY, h="1", low="2")
    good = bar(MONDAY)
    kept, rejected = drop_invalid([bad, good])
    assert kept == [good]
    assert [b for b, _ in rejected] == [bad]


def test_drop_invalid_refuses_misaligned_bars_only_when_given_the_resolution() -> None:
    odd = bar(MONDAY + timedelta(minutes=50, seconds=2))
    assert drop_invalid([bar(MONDAY), odd])[1] == []
    kept, rejected = drop_invalid([bar(MONDAY), odd], resolution=Timeframe.M15)
    assert kept == [bar(MONDAY)]
    assert rejected == [(odd, "timestamp 2024-01-08T00:50:02+00:00 is not on the 15m grid")]


def test_price_problem_names_the_broken_rule() -> None:
    assert price_problem(bar(MONDAY)) is None
    assert price_problem(bar(MONDAY, h="10.5")) == "high 10.5 is below max(open, close) 11"
    assert price_problem(bar(MONDAY, low="10.5")) == "low 10.5 is above min(open, close) 10"
    assert price_problem(bar(MONDAY, v="NaN")) == "volume NaN is not a number"


_price = st.decimals(min_value=Decimal("-1"), max_value=Decimal("20"), places=2, allow_nan=False, allow_infinity=False)
_bars = st.lists(
    st.builds(
        bar,
        st.integers(min_value=0, max_value=40).map(lambda n: MONDAY + timedelta(minutes=5 * n + (n % 7 == 0))),
        _price.map(str),
        _price.map(str),
        _price.map(str),
        _price.map(str),
        st.decimals(min_value=Decimal("-1"), max_value=Decimal("100"), places=0).map(str),
    ),
    max_size=30,
)


@given(_bars)
def test_what_drop_invalid_keeps_always_validates(bars: list[Bar]) -> None:
    kept, rejected = drop_invalid(bars, resolution=Timeframe.M5)
    assert len(kept) + len(rejected) == len(bars)
    report = validate_bars(kept, Timeframe.M5, calendar="always")
    assert report.ok
    assert [b.ts for b in kept] == sorted({b.ts for b in kept})
    assert all(price_problem(b) is None for b in kept)
