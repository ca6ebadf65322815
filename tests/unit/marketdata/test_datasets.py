import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.metadata import distribution
from pathlib import Path

import pytest

from tradestack.core.money import decimal_places
from tradestack.domain.marketdata import Bar, Timeframe
from tradestack.domain.validation import Calendar, Issue
from tradestack.marketdata.datasets import DATASETS, DEMO, LoadedDataSet, SeriesKey, SourceRow, load, merge_rows

D1, H1, M15, M1 = Timeframe.D1, Timeframe.H1, Timeframe.M15, Timeframe.M1

# Rows kept per series and rows refused, for the locked package versions.
EXPECTED: dict[str, dict[SeriesKey, tuple[int, int]]] = {
    "us-equities-daily": {
        ("AAPL", D1): (3270, 0),
        ("GOOG", D1): (2148, 0),
        ("IBM", D1): (3270, 0),
        ("FB", D1): (196, 0),
        ("MSFT", D1): (3270 + 1511, 0),
        ("AMZN", D1): (5842, 0),
        ("NVDA", D1): (6558, 0),
        ("NFLX", D1): (1009, 0),
        ("TSLA", D1): (254, 0),
    },
    "indices-daily": {("SPX", D1): (5031, 0), ("IXIC", D1): (5031, 0)},
    "eurusd-1h": {("EURUSD", H1): (6225, 0)},
    "aapl-intraday": {("AAPL", M1): (2382, 0)},
    "btc-usd": {("BTC-USD", D1): (662, 4), ("BTC-USD", M15): (8686, 35)},
}


@pytest.fixture(scope="module")
def loaded() -> dict[str, LoadedDataSet]:
    return {name: load(name) for name in DEMO}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def bar_at(data: LoadedDataSet, key: SeriesKey, ts: datetime) -> Bar:
    [found] = [bar for bar in data.series[key].bars if bar.ts == ts]
    return found


def prices(bar: Bar) -> tuple[str, str, str, str, str]:
    return (str(bar.open), str(bar.high), str(bar.low), str(bar.close), str(bar.volume))


def test_demo_names_the_shipped_data_sets() -> None:
    assert DEMO == ("us-equities-daily", "indices-daily", "eurusd-1h", "aapl-intraday", "btc-usd")
    assert set(DEMO) <= set(DATASETS)
    for dataset in DATASETS.values():
        assert dataset.description
        assert dataset.licence
        for package in dataset.packages:
            assert distribution(package).version


def test_each_data_set_loads_the_expected_series_and_counts(loaded: dict[str, LoadedDataSet]) -> None:
    for name, expected in EXPECTED.items():
        counts = {key: (len(series.bars), series.dropped) for key, series in loaded[name].series.items()}
        assert counts == expected, name


def test_every_kept_bar_is_aligned_utc_ordered_and_validates(loaded: dict[str, LoadedDataSet]) -> None:
    for data in loaded.values():
        for (symbol, resolution), series in data.series.items():
            assert series.report.ok, (symbol, resolution, series.report.summary())
            assert series.report.rows == len(series.bars)
            times = [bar.ts for bar in series.bars]
            assert times == sorted(set(times))
            for bar in series.bars:
                assert bar.symbol == symbol
                assert bar.ts.utcoffset() == timedelta(0)
                assert resolution.floor(bar.ts) == bar.ts
                assert max(decimal_places(price) for price in (bar.open, bar.high, bar.low, bar.close)) <= 10
                assert decimal_places(bar.volume) <= 8


def test_aapl_2005_has_252_trading_days_from_january_3(loaded: dict[str, LoadedDataSet]) -> None:
    bars = [bar for bar in loaded["us-equities-daily"].series[("AAPL", D1)].bars if bar.ts.year == 2005]
    assert len(bars) == 252
    assert bars[0].ts == utc(2005, 1, 3)
    assert bars[-1].ts == utc(2005, 12, 30)
    # stocks.csv.gz line 1218: AAPL,2005-01-03,64.78,65.11,62.6,63.29,12357000 (unadjusted, not Adj Close 4.07)
    assert prices(bars[0]) == ("64.78", "65.11", "62.6", "63.29", "12357000")


def test_known_rows_are_exact_decimals_from_the_file_text(loaded: dict[str, LoadedDataSet]) -> None:
    equities = loaded["us-equities-daily"]
    # Amazon.csv line 2: 1997-05-15,2.4375,2.5,1.9270833730697632,1.9583333730697632,... rounded half-even to 10 places
    assert prices(bar_at(equities, ("AMZN", D1), utc(1997, 5, 15))) == (
        "2.4375",
        "2.5",
        "1.9270833731",
        "1.9583333731",
        "72156000",
    )
    # NVDA.csv has its columns as Date,Adj Close,Close,High,Low,Open,Volume
    assert prices(bar_at(equities, ("NVDA", D1), utc(1999, 1, 22))) == (
        "0.043749999",
        "0.048827998",
        "0.038802002",
        "0.041016001",
        "2714688000",
    )
    # Microsoft_Stock.csv line 2: 4/1/2015 16:00:00,40.6,40.76,40.31,40.72,36865322
    assert prices(bar_at(equities, ("MSFT", D1), utc(2015, 4, 1))) == ("40.6", "40.76", "40.31", "40.72", "36865322")
    assert prices(bar_at(equities, ("TSLA", D1), utc(2022, 3, 23)))[3] == "333.0366821289"  # 333.03668212890625
    spx = bar_at(loaded["indices-daily"], ("SPX", D1), utc(1999, 1, 4))
    assert prices(spx) == ("1229.22998", "1248.810059", "1219.099976", "1228.099976", "877000000")
    # minute-prices.csv line 2: 2026-07-29 09:30:00-04:00,339.69000244140625,341.7200012207031,339.6521911621094,341.5953063964844
    aapl = loaded["aapl-intraday"].series[("AAPL", M1)].bars[0]
    assert aapl.ts == utc(2026, 7, 29, 13, 30)
    assert prices(aapl) == ("339.6900024414", "341.7200012207", "339.6521911621", "341.5953063965", "1864881")
    # BTC-USD-15-MIN.csv line 2879: 2021-10-27 14:00:00+01:00,59058.9765625,59143.51171875,58959.46875,59101.109375,...
    btc = bar_at(loaded["btc-usd"], ("BTC-USD", M15), utc(2021, 10, 27, 13))
    assert prices(btc) == ("59058.9765625", "59143.51171875", "58959.46875", "59101.109375", "152002560")


def test_eurusd_matches_an_independent_reading_of_the_file(loaded: dict[str, LoadedDataSet]) -> None:
    path = Path(str(distribution("gym-anytrading").locate_file("gym_anytrading/datasets/data/FOREX_EURUSD_1H_ASK.csv")))
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = [
        Bar(
            "EURUSD",
            datetime.strptime(row["Time"], "%d.%m.%Y %H:%M:%S.%f").replace(tzinfo=UTC),
            *(Decimal(row[column]) for column in ("Open", "High", "Low", "Close", "Volume")),
        )
        for row in rows
    ]
    bars = loaded["eurusd-1h"].series[("EURUSD", H1)].bars
    assert bars == expected
    assert bars[0].ts == utc(2017, 1, 1, 22)
    assert bars[2].ts == utc(2017, 1, 2, 0)  # 02.01.2017 is day-first: 2 January
    assert str(bars[0].volume) == "143539993.3"
    assert str(bar_at(loaded["eurusd-1h"], ("EURUSD", H1), utc(2017, 9, 22, 12)).volume) == "100532000000"  # 1.00532E+11


def test_msft_merges_both_sources(loaded: dict[str, LoadedDataSet]) -> None:
    msft = loaded["us-equities-daily"].series[("MSFT", D1)]
    assert msft.bars[0].ts == utc(2000, 3, 1)
    assert msft.bars[3269].ts == utc(2013, 3, 1)
    assert msft.bars[3270].ts == utc(2015, 4, 1)
    assert msft.bars[-1].ts == utc(2021, 3, 31)
    assert prices(msft.bars[3269]) == ("27.72", "27.98", "27.52", "27.95", "34849700")


def test_merge_keeps_the_primary_row_of_a_shared_date_and_says_so() -> None:
    def row(day: int, close: str, file: str, line: int) -> SourceRow:
        one = Decimal(1)
        return SourceRow(Bar("MSFT", utc(2013, 3, day), one, Decimal(close), one, one, one), file, line)

    primary = [row(1, "2", "stocks.csv.gz", 10), row(4, "2", "stocks.csv.gz", 11)]
    secondary = [row(4, "3", "ms.csv", 2), row(5, "3", "ms.csv", 3)]
    merged, superseded = merge_rows(primary, secondary, winner="stocks.csv.gz")
    assert merged == [primary[0], primary[1], secondary[1]]
    assert [(r.source, r.reason) for r in superseded] == [("ms.csv line 2", "2013-03-04 is also in stocks.csv.gz, which wins")]


def test_btc_null_days_and_bad_15_minute_rows_are_rejected_with_reasons(loaded: dict[str, LoadedDataSet]) -> None:
    daily = loaded["btc-usd"].series[("BTC-USD", D1)]
    assert [(r.source, r.ts) for r in daily.rejected] == [
        ("BTC-USD-1-DAY.csv line 109", utc(2020, 4, 17)),
        ("BTC-USD-1-DAY.csv line 284", utc(2020, 10, 9)),
        ("BTC-USD-1-DAY.csv line 287", utc(2020, 10, 12)),
        ("BTC-USD-1-DAY.csv line 288", utc(2020, 10, 13)),
    ]
    assert {r.reason for r in daily.rejected} == {"column 'Open' is not a number: 'null'"}
    assert daily.report.counts[Issue.GAP] == 3
    assert daily.report.missing_bars == 4
    assert daily.report.calendar is Calendar.ALWAYS

    quarter = loaded["btc-usd"].series[("BTC-USD", M15)]
    last = quarter.rejected[-1]
    assert last.source == "BTC-USD-15-MIN.csv line 8722"
    assert last.ts == utc(2021, 12, 29, 13, 50, 2)
    assert last.reason == "timestamp 2021-12-29T13:50:02+00:00 is not on the 15m grid"
    assert last.bar is not None
    assert last.bar.close == Decimal("47037.7109375")
    misaligned = [r.ts for r in quarter.rejected if "grid" in r.reason]
    assert misaligned == [utc(2021, 10, 27, 13, 46, 2), utc(2021, 11, 27, 6, 1, 3), utc(2021, 12, 29, 13, 50, 2)]
    duplicates = [r for r in quarter.rejected if r.reason.startswith("duplicate timestamp")]
    assert len(duplicates) == 32
    assert duplicates[0].source == "BTC-USD-15-MIN.csv line 2884"
    assert quarter.bars[-1].ts == utc(2021, 12, 29, 13, 45)
    assert quarter.source_report.counts[Issue.DUPLICATE] == 32
    assert quarter.source_report.counts[Issue.MISALIGNED] == 3
    assert not quarter.source_report.ok


def test_eurusd_weekends_are_not_gaps_but_christmas_is(loaded: dict[str, LoadedDataSet]) -> None:
    report = loaded["eurusd-1h"].series[("EURUSD", H1)].report
    assert report.counts[Issue.GAP] == 1
    assert report.examples[Issue.GAP] == (utc(2017, 12, 25, 8),)
    assert report.missing_bars == 14


def test_loading_twice_gives_identical_results(loaded: dict[str, LoadedDataSet]) -> None:
    assert load("btc-usd") == loaded["btc-usd"]
    assert load("us-equities-daily") == loaded["us-equities-daily"]


def test_unknown_data_set_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="us-equities-daily"):
        load("sp500")
