"""A user's own OHLCV files: read CSV and Parquet into bars, write bars to Parquet.

Columns are matched case-insensitively: one timestamp column (``ts``, ``timestamp``, ``time``,
``date`` or ``datetime``), ``open``, ``high``, ``low``, ``close``, optionally ``volume`` (0 when
absent) and ``symbol``. Timestamps are ISO 8601 with an offset, naive ISO 8601 (read as UTC), or
integer epoch seconds or milliseconds (milliseconds when any value in the file is 10^11 or more; an
integer is always an epoch time, so write dates as 2024-03-04, not 20240304).
Prices are read from their text as Decimals and rounded half-even to 10 decimal places, volumes to 8,
as the database stores them.

Errors name the file, the place and the column. CSV places are ``line N`` with the header as line 1
(as a text editor or spreadsheet numbers them); Parquet places are ``row N`` counted from 0 (as
pandas and pyarrow number them). Reading stops after `MAX_ROW_ERRORS` bad rows.

Only parsing happens here; price sanity, duplicates and grid alignment are
`tradestack.domain.validation`'s job.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from itertools import pairwise
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from tradestack.core.errors import ValidationFailedError
from tradestack.core.money import D
from tradestack.domain.marketdata import Bar, Timeframe

MAX_ROW_ERRORS = 20
MAX_SYMBOL_LENGTH = 32
PRICE_PLACES, PRICE_DIGITS = 10, 24
VOLUME_PLACES, VOLUME_DIGITS = 8, 28
TIMESTAMP_COLUMNS = ("ts", "timestamp", "time", "date", "datetime")
PRICE_COLUMNS = ("open", "high", "low", "close")
EPOCH_MILLISECONDS_FROM = 10**11  # as seconds that is the year 5138; as milliseconds, March 1973

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INTEGER = re.compile(r"[+-]?\d+")
_DELIMITERS = (",", ";", "\t", "|")

PARQUET_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        *(pa.field(name, pa.decimal128(PRICE_DIGITS, PRICE_PLACES), nullable=False) for name in PRICE_COLUMNS),
        pa.field("volume", pa.decimal128(VOLUME_DIGITS, VOLUME_PLACES), nullable=False),
    ]
)


class BarFileError(ValidationFailedError, ValueError):
    """A file could not be read as bars. `errors` lists every problem found, each naming file and place."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """Bars read from one file, per symbol in file order, and the resolution they are at."""

    name: str
    resolution: Timeframe
    resolution_inferred: bool
    series: dict[str, list[Bar]]

    @property
    def rows(self) -> int:
        """Number of bars read."""
        return sum(len(bars) for bars in self.series.values())

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbols in the order they first appear."""
        return tuple(self.series)


def fit_decimal(value: Decimal, *, places: int, digits: int) -> Decimal:
    """`value` as a NUMERIC(digits, places) column stores it.

    Rounded half-even to `places` decimals when it has more, written without exponent
    (``1.5E+3`` -> ``1500``); ValueError when it is not finite or has too many digits before the point.
    """
    if not value.is_finite():
        raise ValueError(f"is not a finite number: {value}")
    original = value
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and (exponent < -places or exponent > 0):
        context = Context(prec=max(28, value.adjusted() + places + 2))
        if exponent < 0:
            value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN, context=context)
        else:  # 1.00532E+11 -> 100532000000, written out as stored
            value = value.quantize(Decimal(1), context=context)
    if value != 0 and value.copy_abs().adjusted() >= digits - places:
        raise ValueError(f"is too large (at most {digits - places} digits before the point): {original}")
    return value


def parse_price(text: str) -> Decimal:
    """A price from its text: exact Decimal, rounded half-even to 10 places. ValueError saying why not."""
    return fit_decimal(_decimal(text), places=PRICE_PLACES, digits=PRICE_DIGITS)


def parse_volume(text: str) -> Decimal:
    """A volume from its text: exact Decimal, rounded half-even to 8 places. ValueError saying why not."""
    return fit_decimal(_decimal(text), places=VOLUME_PLACES, digits=VOLUME_DIGITS)


def read_bars_csv(path: str | Path, *, symbol: str | None = None, resolution: Timeframe | None = None) -> ParsedFile:
    """Read a CSV file of bars. `symbol` is required when the file has no symbol column and must match it otherwise.

    The delimiter (comma, semicolon, tab or bar) is taken from the header line. Without
    `resolution`, it is inferred from the most common spacing between a symbol's timestamps.
    Raises `BarFileError`.
    """
    path = Path(path)
    name = path.name
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            first_line = handle.readline()
            handle.seek(0)
            delimiter = max(_DELIMITERS, key=first_line.count)
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise BarFileError([f"{name}: the file is empty"])
            records: list[tuple[str, list[object]]] = []
            errors: list[str] = []
            for record in reader:
                if not any(cell.strip() for cell in record):
                    continue
                place = f"line {reader.line_num}"
                if len(record) != len(header):
                    errors.append(f"{name} {place}: expected {len(header)} fields as in the header, found {len(record)}")
                    if len(errors) >= MAX_ROW_ERRORS:
                        break
                    continue
                records.append((place, list(record)))
    except UnicodeDecodeError as exc:
        raise BarFileError([f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise BarFileError([f"{name}: cannot read the file: {exc.strerror or exc}"]) from None
    except csv.Error as exc:
        raise BarFileError([f"{name}: not a readable CSV file: {exc}"]) from None
    layout = _Layout.from_header(name, header)
    return _parse(name, layout, records, symbol=symbol, resolution=resolution, errors=errors)


def read_bars_parquet(path: str | Path, *, symbol: str | None = None, resolution: Timeframe | None = None) -> ParsedFile:
    """Read a Parquet file of bars; see `read_bars_csv` for columns, symbol and resolution. Raises `BarFileError`.

    Besides text, columns may hold native types: timestamps (naive means UTC), dates, integers
    (epoch seconds or milliseconds), decimals, and floats (read through their shortest text form,
    the digits pandas prints).
    """
    path = Path(path)
    name = path.name
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise BarFileError([f"{name}: not a readable Parquet file: {exc}"]) from None
    layout = _Layout.from_header(name, table.column_names)
    columns = [table.column(index).to_pylist() for index in range(table.num_columns)]
    records = [(f"row {index}", [column[index] for column in columns]) for index in range(table.num_rows)]
    return _parse(name, layout, records, symbol=symbol, resolution=resolution, errors=[])


def write_bars_parquet(path: str | Path, bars: Iterable[Bar]) -> None:
    """Write bars to Parquet exactly: decimal128(24,10) prices, decimal128(28,8) volume, timestamp[us, UTC] ts.

    ValueError when a value has more decimals or digits than those columns hold (nothing is rounded).
    """
    bars = list(bars)
    columns: dict[str, list[object]] = {field.name: [] for field in PARQUET_SCHEMA}
    for bar in bars:
        columns["symbol"].append(bar.symbol)
        columns["ts"].append(bar.ts)
        for field in PRICE_COLUMNS:
            columns[field].append(_exact(bar, field, getattr(bar, field), PRICE_PLACES, PRICE_DIGITS))
        columns["volume"].append(_exact(bar, "volume", bar.volume, VOLUME_PLACES, VOLUME_DIGITS))
    table = pa.table({field.name: pa.array(columns[field.name], field.type) for field in PARQUET_SCHEMA}, schema=PARQUET_SCHEMA)
    pq.write_table(table, Path(path))


class _CellError(ValueError):
    """One cell cannot be read; the message names the column and the value."""


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each field is in a file's rows, and the column names as the file spells them."""

    header: tuple[str, ...]
    ts: int
    prices: tuple[int, int, int, int]
    volume: int | None
    symbol: int | None

    @classmethod
    def from_header(cls, name: str, header: Sequence[str]) -> _Layout:
        names = [str(column).strip().lower() for column in header]
        repeated = sorted({column for column in names if names.count(column) > 1 and column})
        if repeated:
            raise BarFileError([f"{name}: column {column!r} appears more than once" for column in repeated])
        found = ", ".join(repr(str(column)) for column in header) or "none"
        required = f"a timestamp ({', '.join(TIMESTAMP_COLUMNS)}), {', '.join(PRICE_COLUMNS)}"
        timestamps = [column for column in names if column in TIMESTAMP_COLUMNS]
        if len(timestamps) > 1:
            raise BarFileError([f"{name}: several timestamp columns ({', '.join(timestamps)}); keep one. Columns found: {found}"])
        missing = [column for column in PRICE_COLUMNS if column not in names]
        if not timestamps:
            missing.insert(0, "timestamp")
        if missing:
            raise BarFileError(
                [
                    f"{name}: missing column(s) {', '.join(missing)}. Columns found: {found}. "
                    f"Required: {required}; optional: volume, symbol"
                ]
            )
        o, h, low, c = (names.index(column) for column in PRICE_COLUMNS)
        return cls(
            header=tuple(str(column).strip() for column in header),
            ts=names.index(timestamps[0]),
            prices=(o, h, low, c),
            volume=names.index("volume") if "volume" in names else None,
            symbol=names.index("symbol") if "symbol" in names else None,
        )


def _parse(
    name: str,
    layout: _Layout,
    records: list[tuple[str, list[object]]],
    *,
    symbol: str | None,
    resolution: Timeframe | None,
    errors: list[str],
) -> ParsedFile:
    if layout.symbol is None and symbol is None:
        raise BarFileError([f"{name}: no symbol column; say which symbol the file holds"])
    epoch_ms = any(abs(value) >= EPOCH_MILLISECONDS_FROM for value in _epoch_values(record[layout.ts] for _, record in records))
    series: dict[str, list[Bar]] = {}
    for place, record in records:
        if len(errors) >= MAX_ROW_ERRORS:
            break
        try:
            bar = _bar(layout, record, symbol=symbol, epoch_ms=epoch_ms)
        except _CellError as exc:
            errors.append(f"{name} {place}: {exc}")
            continue
        series.setdefault(bar.symbol, []).append(bar)
    if len(errors) >= MAX_ROW_ERRORS:
        errors.append(f"{name}: stopped after {MAX_ROW_ERRORS} errors")
    if errors:
        raise BarFileError(errors)
    if not series:
        raise BarFileError([f"{name}: no data rows"])
    if resolution is not None:
        return ParsedFile(name, resolution, resolution_inferred=False, series=series)
    return ParsedFile(name, _infer_resolution(name, series), resolution_inferred=True, series=series)


def _bar(layout: _Layout, record: list[object], *, symbol: str | None, epoch_ms: bool) -> Bar:
    if layout.symbol is None:
        assert symbol is not None  # noqa: S101 - checked by the caller
        bar_symbol = symbol
    else:
        bar_symbol = _symbol(layout.header[layout.symbol], record[layout.symbol], expected=symbol)
    ts = _timestamp(layout.header[layout.ts], record[layout.ts], epoch_ms=epoch_ms)
    o, h, low, c = (_number(layout.header[i], record[i], PRICE_PLACES, PRICE_DIGITS) for i in layout.prices)
    volume = (
        Decimal(0)
        if layout.volume is None
        else _number(layout.header[layout.volume], record[layout.volume], VOLUME_PLACES, VOLUME_DIGITS)
    )
    return Bar(bar_symbol, ts, o, h, low, c, volume)


def _symbol(column: str, value: object, *, expected: str | None) -> str:
    text = "" if value is None else str(value).strip()
    if not text:
        raise _CellError(f"column {column!r} is empty")
    if len(text) > MAX_SYMBOL_LENGTH:
        raise _CellError(f"column {column!r} is longer than {MAX_SYMBOL_LENGTH} characters: {text!r}")
    if expected is not None and text != expected:
        raise _CellError(f"column {column!r} is {text!r}, but the file was given as {expected!r}")
    return text


def _number(column: str, value: object, places: int, digits: int) -> Decimal:
    try:
        if isinstance(value, bool):
            raise ValueError(f"is not a number: {value!r}")
        if isinstance(value, Decimal):
            number = value
        elif isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            number = _decimal(repr(value))
        elif value is None:
            raise ValueError("is empty")
        else:
            number = _decimal(str(value))
        return fit_decimal(number, places=places, digits=digits)
    except ValueError as exc:
        raise _CellError(f"column {column!r} {exc}") from None


def _decimal(text: str) -> Decimal:
    stripped = text.strip()
    if not stripped:
        raise ValueError("is empty")
    try:
        return D(stripped)
    except ValueError:
        raise ValueError(f"is not a number: {text!r}") from None


def _epoch_values(values: Iterable[object]) -> Iterator[int]:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool):
            yield value
        elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            yield int(value)


def _timestamp(column: str, value: object, *, epoch_ms: bool) -> datetime:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _CellError(f"column {column!r} is empty")
    try:
        if isinstance(value, datetime):
            return _plain_utc(value)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        if isinstance(value, int) and not isinstance(value, bool):
            return _from_epoch(value, epoch_ms=epoch_ms)
        text = str(value).strip()
        if _INTEGER.fullmatch(text):
            return _from_epoch(int(text), epoch_ms=epoch_ms)
        return _plain_utc(datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        raise _CellError(
            f"column {column!r} is not a timestamp (ISO 8601, or epoch seconds or milliseconds): {value!r}"
        ) from None


def _from_epoch(value: int, *, epoch_ms: bool) -> datetime:
    return _EPOCH + (timedelta(milliseconds=value) if epoch_ms else timedelta(seconds=value))


def _plain_utc(value: datetime) -> datetime:
    """The same instant as a plain `datetime` in `UTC` (naive means UTC; pandas Timestamps become datetimes)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, tzinfo=UTC)


def _infer_resolution(name: str, series: dict[str, list[Bar]]) -> Timeframe:
    spacings: Counter[int] = Counter()
    for bars in series.values():
        times = sorted({bar.ts for bar in bars})
        spacings.update(int((later - earlier).total_seconds()) for earlier, later in pairwise(times))
    if not spacings:
        raise BarFileError([f"{name}: cannot infer the resolution from a single timestamp; say which resolution the file has"])
    spacing = min(spacings, key=lambda seconds: (-spacings[seconds], seconds))
    for timeframe in Timeframe:
        if timeframe.seconds == spacing:
            return timeframe
    valid = ", ".join(timeframe.value for timeframe in Timeframe)
    raise BarFileError(
        [f"{name}: the most common spacing between timestamps is {timedelta(seconds=spacing)}; supported resolutions: {valid}"]
    )


def _exact(bar: Bar, field: str, value: Decimal, places: int, digits: int) -> Decimal:
    where = f"{bar.symbol} {bar.ts.isoformat()}: {field}"
    try:
        fitted = fit_decimal(value, places=places, digits=digits)
    except ValueError as exc:
        raise ValueError(f"{where} {exc}") from None
    if fitted != value:
        raise ValueError(f"{where} {value} has more than {places} decimal places")
    return value
