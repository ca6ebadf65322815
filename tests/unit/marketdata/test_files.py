import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradestack.core.errors import ValidationFailedError
from tradestack.domain.marketdata import Bar, Timeframe
from tradestack.marketdata.files import (
    MAX_ROW_ERRORS,
    BarFileError,
    fit_decimal,
    parse_price,
    parse_volume,
    read_bars_csv,
    read_bars_parquet,
    write_bars_parquet,
)

T0 = datetime(2024, 3, 4, 14, 0, tzinfo=UTC)


def write(tmp_path: Path, text: str, name: str = "prices.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def errors_of(path: Path, *, symbol: str | None = None) -> list[str]:
    with pytest.raises(BarFileError) as caught:
        read_bars_csv(path, symbol=symbol)
    errors: list[str] = caught.value.errors
    return errors


# -- good CSV -------------------------------------------------------------------------------------


def test_csv_with_offsets_is_read_exactly_in_utc_and_the_resolution_inferred(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Date,Open,HIGH,low,Close,Volume\n"
        "2024-03-04T15:00:00+01:00,100.5,101.25,99.125,100.75,1200\n"
        "2024-03-04T16:00:00+01:00,100.75,102,100.5,101.0000000000001,1300.123456789\n"
        "2024-03-04 15:00:00Z,101,101.5,100.5,101.25,0\n",
    )
    parsed = read_bars_csv(path, symbol="AAPL")
    assert parsed.name == "prices.csv"
    assert parsed.resolution is Timeframe.H1
    assert parsed.resolution_inferred
    assert parsed.symbols == ("AAPL",)
    assert parsed.rows == 3
    assert parsed.series["AAPL"] == [
        Bar("AAPL", T0, Decimal("100.5"), Decimal("101.25"), Decimal("99.125"), Decimal("100.75"), Decimal(1200)),
        Bar(
            "AAPL",
            T0 + timedelta(hours=1),
            Decimal("100.75"),
            Decimal(102),
            Decimal("100.5"),
            Decimal("101.0000000000"),  # 13 places rounded to 10
            Decimal("1300.12345679"),  # 9 places rounded to 8
        ),
        Bar("AAPL", T0 + timedelta(hours=1), Decimal(101), Decimal("101.5"), Decimal("100.5"), Decimal("101.25"), Decimal(0)),
    ]
    assert all(bar.ts.tzinfo is UTC for bar in parsed.series["AAPL"])


def test_naive_timestamps_are_utc_and_missing_volume_is_zero(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,open,high,low,close\n2024-03-04 14:00:00,1,2,0.5,1.5\n2024-03-04 14:05:00,1,2,0.5,1.5\n")
    parsed = read_bars_csv(path, symbol="X")
    assert [bar.ts for bar in parsed.series["X"]] == [T0, T0 + timedelta(minutes=5)]
    assert parsed.resolution is Timeframe.M5
    assert all(bar.volume == 0 for bar in parsed.series["X"])


@pytest.mark.parametrize("scale", [1, 1000])
def test_epoch_seconds_and_milliseconds_give_the_same_bars(tmp_path: Path, scale: int) -> None:
    epoch = int(T0.timestamp())
    rows = "".join(f"{(epoch + 60 * n) * scale},1,2,0.5,1.5,7\n" for n in range(3))
    parsed = read_bars_csv(write(tmp_path, "ts,open,high,low,close,volume\n" + rows), symbol="X")
    assert [bar.ts for bar in parsed.series["X"]] == [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    assert parsed.resolution is Timeframe.M1


def test_symbol_column_splits_series_and_resolution_comes_from_each_symbols_spacing(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "symbol,datetime,open,high,low,close,volume\n"
        "AAA,2024-03-04,1,2,0.5,1.5,10\n"
        "BBB,2024-03-04,3,4,2.5,3.5,20\n"
        "AAA,2024-03-05,1,2,0.5,1.5,10\n"
        "BBB,2024-03-05,3,4,2.5,3.5,20\n"
        "AAA,2024-03-06,1,2,0.5,1.5,10\n",
    )
    parsed = read_bars_csv(path, symbol=None)
    assert parsed.symbols == ("AAA", "BBB")
    assert parsed.resolution is Timeframe.D1
    assert [bar.ts.day for bar in parsed.series["AAA"]] == [4, 5, 6]
    assert parsed.series["BBB"][0].open == Decimal(3)


def test_semicolon_file_with_bom_blank_lines_and_given_resolution(tmp_path: Path) -> None:
    path = write(tmp_path, "Date;Open;High;Low;Close\n\n2024-03-04;1;2;0.5;1.5\n", encoding="utf-8-sig")
    parsed = read_bars_csv(path, symbol="X", resolution=Timeframe.D1)
    assert parsed.resolution is Timeframe.D1
    assert not parsed.resolution_inferred
    assert parsed.series["X"][0].ts == datetime(2024, 3, 4, tzinfo=UTC)


# -- bad CSV --------------------------------------------------------------------------------------

HEADER = "ts,open,high,low,close,volume\n"
GOOD = "2024-03-04T14:00:00Z,1,2,0.5,1.5,10\n"


def test_a_cell_that_is_not_a_number_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + GOOD + "2024-03-04T14:01:00Z,1,abc,0.5,1.5,10\n")
    assert errors_of(path, symbol="X") == ["prices.csv line 3: column 'high' is not a number: 'abc'"]


def test_error_is_typed_and_renders_as_unprocessable(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "2024-03-04T14:01:00Z,1,2,0.5,NaN,10\n")
    with pytest.raises(BarFileError) as caught:
        read_bars_csv(path, symbol="X")
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ValidationFailedError)
    assert caught.value.status_code == 422
    assert caught.value.detail == "prices.csv line 2: column 'close' is not a number: 'NaN'"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "yesterday,1,2,0.5,1.5,10",
            "line 2: column 'ts' is not a timestamp (ISO 8601, or epoch seconds or milliseconds): 'yesterday'",
        ),
        (",1,2,0.5,1.5,10", "line 2: column 'ts' is empty"),
        ("2024-03-04T14:00:00Z,1,2,,1.5,10", "line 2: column 'low' is empty"),
        ("2024-03-04T14:00:00Z,1,2,0.5,1.5", "line 2: expected 6 fields as in the header, found 5"),
        (
            "2024-03-04T14:00:00Z,1,2,0.5,1.5,1e30",
            "line 2: column 'volume' is too large (at most 20 digits before the point): 1E+30",
        ),
        (
            "2024-03-04T14:00:00Z,1,1e14,0.5,1.5,1",
            "line 2: column 'high' is too large (at most 14 digits before the point): 1E+14",
        ),
        ('2024-03-04T14:00:00Z,"1,5",2,0.5,1.5,1', "line 2: column 'open' is not a number: '1,5'"),
    ],
)
def test_each_kind_of_bad_row_is_reported(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path, HEADER + row + "\n" + GOOD.replace("14:00", "14:01"))
    assert errors_of(path, symbol="X") == [f"prices.csv {message}"]


def test_missing_columns_are_listed_with_the_columns_found(tmp_path: Path) -> None:
    path = write(tmp_path, "Date,Price,High,Vol\n2024-03-04,1,2,3\n")
    [message] = errors_of(path, symbol="X")
    assert message.startswith("prices.csv: missing column(s) open, low, close. Columns found: 'Date', 'Price', 'High', 'Vol'.")
    assert "Required: a timestamp (ts, timestamp, time, date, datetime), open, high, low, close" in message


def test_missing_timestamp_column_is_named(tmp_path: Path) -> None:
    [message] = errors_of(write(tmp_path, "when,open,high,low,close\nx,1,2,0.5,1\n"), symbol="X")
    assert "missing column(s) timestamp." in message


def test_two_timestamp_columns_are_ambiguous(tmp_path: Path) -> None:
    [message] = errors_of(write(tmp_path, "Date,Time,open,high,low,close\n"), symbol="X")
    assert "several timestamp columns (date, time)" in message


def test_repeated_column_is_refused(tmp_path: Path) -> None:
    assert errors_of(write(tmp_path, "ts,open,high,low,close,Close\n"), symbol="X") == [
        "prices.csv: column 'close' appears more than once"
    ]


def test_reading_stops_after_twenty_bad_rows(tmp_path: Path) -> None:
    rows = "".join(f"2024-03-04T14:{n:02d}:00Z,1,x{n},0.5,1.5,10\n" for n in range(30))
    errors = errors_of(write(tmp_path, HEADER + rows), symbol="X")
    assert len(errors) == MAX_ROW_ERRORS + 1
    assert errors[0] == "prices.csv line 2: column 'high' is not a number: 'x0'"
    assert errors[MAX_ROW_ERRORS - 1] == "prices.csv line 21: column 'high' is not a number: 'x19'"
    assert errors[-1] == "prices.csv: stopped after 20 errors"


def test_symbol_is_required_without_a_symbol_column(tmp_path: Path) -> None:
    assert errors_of(write(tmp_path, HEADER + GOOD)) == ["prices.csv: no symbol column; say which symbol the file holds"]


def test_symbol_column_must_match_the_given_symbol(tmp_path: Path) -> None:
    path = write(tmp_path, "symbol," + HEADER + "AAPL," + GOOD + "MSFT," + GOOD)
    assert errors_of(path, symbol="AAPL") == ["prices.csv line 3: column 'symbol' is 'MSFT', but the file was given as 'AAPL'"]


def test_unsupported_spacing_is_refused(tmp_path: Path) -> None:
    rows = "".join(f"2024-03-04T14:{m:02d}:00Z,1,2,0.5,1.5,10\n" for m in (0, 30))
    assert errors_of(write(tmp_path, HEADER + rows), symbol="X") == [
        "prices.csv: the most common spacing between timestamps is 0:30:00; supported resolutions: 1m, 5m, 15m, 1h, 1d"
    ]


def test_a_single_row_needs_the_resolution(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + GOOD)
    assert "cannot infer the resolution" in errors_of(path, symbol="X")[0]
    assert read_bars_csv(path, symbol="X", resolution=Timeframe.M1).rows == 1


@pytest.mark.parametrize(("text", "message"), [("", "the file is empty"), (HEADER, "no data rows")])
def test_empty_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    assert errors_of(write(tmp_path, text), symbol="X") == [f"prices.csv: {message}"]


def test_binary_file_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_bytes(b"ts,open\n\xff\xfe\x00")
    assert errors_of(path, symbol="X")[0].startswith("prices.csv: not UTF-8 text")


# -- decimals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.00000000005", "1.0000000000"),  # half-even: ties go to the even digit
        ("1.00000000015", "1.0000000002"),
        ("1.9270833730697632", "1.9270833731"),
        ("  42.5 ", "42.5"),
        ("99999999999999.9999999999", "99999999999999.9999999999"),
    ],
)
def test_prices_round_half_even_to_ten_places(text: str, expected: str) -> None:
    assert str(parse_price(text)) == expected


def test_volumes_round_to_eight_places_and_lose_their_exponent() -> None:
    assert str(parse_volume("143539993.123456785")) == "143539993.12345678"
    assert str(parse_volume("1.00532E+11")) == "100532000000"


@pytest.mark.parametrize("text", ["null", "", "inf", "0x10"])
def test_non_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"is (empty|not a number)"):
        parse_price(text)


def test_rounding_up_past_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="too large"):
        fit_decimal(Decimal("99999999999999.99999999999"), places=10, digits=24)


# -- Parquet --------------------------------------------------------------------------------------


def test_parquet_round_trip_keeps_types_and_values(tmp_path: Path) -> None:
    bars = [
        Bar("EURUSD", T0, Decimal("1.05236"), Decimal("1.05253"), Decimal("1.05221"), Decimal("1.05227"), Decimal("143539993.3")),
        Bar("EURUSD", T0 + timedelta(hours=1), Decimal(1), Decimal(2), Decimal("0.0000000001"), Decimal(1), Decimal(0)),
    ]
    path = tmp_path / "bars.parquet"
    write_bars_parquet(path, bars)
    schema = pq.read_schema(path)
    assert schema.field("open").type == pa.decimal128(24, 10)
    assert schema.field("volume").type == pa.decimal128(28, 8)
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert schema.field("symbol").type == pa.string()
    parsed = read_bars_parquet(path)
    assert parsed.series == {"EURUSD": bars}
    assert parsed.resolution is Timeframe.H1


def test_writing_more_decimals_than_the_column_holds_is_refused(tmp_path: Path) -> None:
    bar = Bar("X", T0, Decimal("1.00000000001"), Decimal(2), Decimal(1), Decimal(1), Decimal(0))
    with pytest.raises(ValueError, match=r"open 1.00000000001 has more than 10 decimal places"):
        write_bars_parquet(tmp_path / "x.parquet", [bar])


_prices = st.decimals(min_value=Decimal("0.0000000001"), max_value=Decimal("99999999999999"), places=10)
_volumes = st.decimals(min_value=Decimal(0), max_value=Decimal("99999999999999999999"), places=8)
_times = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))  # noqa: DTZ001
_hypothesis_bars = st.builds(
    Bar, st.sampled_from(["BTC-USD", "AAPL", "Ä-1"]), _times, _prices, _prices, _prices, _prices, _volumes
)


@settings(max_examples=50, deadline=None)
@given(st.lists(_hypothesis_bars, min_size=1, max_size=20))
def test_parquet_round_trip_is_exact_for_any_decimals_and_times(bars: list[Bar]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bars.parquet"
        write_bars_parquet(path, bars)
        parsed = read_bars_parquet(path, resolution=Timeframe.M1)
    by_symbol: dict[str, list[Bar]] = {}
    for bar in bars:
        by_symbol.setdefault(bar.symbol, []).append(bar)
    assert parsed.series == by_symbol
    for read_bars in parsed.series.values():
        assert all(bar.ts.tzinfo is UTC for bar in read_bars)


def test_parquet_from_pandas_with_floats_naive_times_and_epoch_ms(tmp_path: Path) -> None:
    path = tmp_path / "from-pandas.parquet"
    frame = pd.DataFrame(
        {
            "Time": pd.to_datetime(["2024-03-04 14:00", "2024-03-04 14:15"]),
            "Open": [1.1, 1.2],
            "High": [1.3, 1.4],
            "Low": [1.0, 1.1],
            "Close": [1.2, 1.3],
            "Volume": [5, 6],
        }
    )
    frame.to_parquet(path)
    parsed = read_bars_parquet(path, symbol="X")
    assert parsed.resolution is Timeframe.M15
    assert parsed.series["X"][0] == Bar("X", T0, Decimal("1.1"), Decimal("1.3"), Decimal("1.0"), Decimal("1.2"), Decimal(5))
    assert parsed.series["X"][1].ts == T0 + timedelta(minutes=15)

    epoch_path = tmp_path / "epoch.parquet"
    frame.assign(Time=[int(T0.timestamp() * 1000), int(T0.timestamp() * 1000) + 900_000]).to_parquet(epoch_path)
    assert read_bars_parquet(epoch_path, symbol="X").series == parsed.series


def test_parquet_errors_count_rows_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    table = pa.table(
        {
            "ts": ["2024-03-04T14:00:00Z", "2024-03-04T14:01:00Z"],
            "open": ["1", "1"],
            "high": ["2", "abc"],
            "low": ["0.5", "0.5"],
            "close": [1.5, None],
        }
    )
    pq.write_table(table, path)
    with pytest.raises(BarFileError) as caught:
        read_bars_parquet(path, symbol="X")
    assert caught.value.errors == ["bad.parquet row 1: column 'high' is not a number: 'abc'"]


def test_a_file_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + GOOD, name="prices.parquet")
    with pytest.raises(BarFileError, match=r"^prices.parquet: not a readable Parquet file"):
        read_bars_parquet(path, symbol="X")
