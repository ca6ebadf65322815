"""Importing and exporting price history: shipped data sets and a user's own files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tradestack.core.errors import ValidationFailedError
from tradestack.domain.instruments import Instrument
from tradestack.domain.marketdata import Bar, Timeframe
from tradestack.domain.validation import Calendar, ValidationReport, drop_invalid, validate_bars
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.datasets import LoadedDataSet
from tradestack.marketdata.files import ParsedFile, write_bars_parquet
from tradestack.marketdata.repository import BarRepository, InstrumentRepository, WriteCounts
from tradestack.marketdata.service import MarketDataService

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class SeriesResult:
    """What importing one series did."""

    symbol: str
    resolution: Timeframe
    source: str
    rows: int
    rejected: list[str]
    report: ValidationReport
    counts: WriteCounts


@dataclass
class ImportResult:
    """What an import did, series by series."""

    series: list[SeriesResult] = field(default_factory=list)

    @property
    def inserted(self) -> int:
        """Bars newly stored."""
        return sum(s.counts.inserted for s in self.series)

    @property
    def unchanged(self) -> int:
        """Bars that were already stored with the same values."""
        return sum(s.counts.unchanged for s in self.series)

    @property
    def conflicting(self) -> int:
        """Bars already stored with other values and left alone."""
        return sum(s.counts.conflicting for s in self.series)

    @property
    def rejected(self) -> int:
        """Source rows refused."""
        return sum(len(s.rejected) for s in self.series)


async def _write(
    runtime: Runtime, symbol: str, resolution: Timeframe, bars: Sequence[Bar], source: str, *, replace: bool
) -> WriteCounts:
    """One series in one transaction: all of it is stored, or none."""
    async with runtime.database.session() as session:
        return await BarRepository(session).write(symbol, resolution, bars, source=source, replace=replace)


async def import_datasets(runtime: Runtime, loaded: Sequence[LoadedDataSet], progress: Progress | None = None) -> ImportResult:
    """Store validated data sets; the catalogue's instruments are created first. Re-importing changes nothing."""
    await MarketDataService(runtime).seed_instruments()
    result = ImportResult()
    for dataset in loaded:
        for (symbol, resolution), series in dataset.series.items():
            counts = await _write(runtime, symbol, resolution, series.bars, dataset.dataset.name, replace=False)
            result.series.append(
                SeriesResult(
                    symbol=symbol,
                    resolution=resolution,
                    source=dataset.dataset.name,
                    rows=len(series.bars) + len(series.rejected),
                    rejected=[f"{r.source}: {r.reason}" for r in series.rejected],
                    report=series.source_report,
                    counts=counts,
                )
            )
            if progress is not None:
                progress(len(series.bars) + len(series.rejected))
    return result


async def import_file(
    runtime: Runtime,
    parsed: ParsedFile,
    *,
    calendar: Calendar,
    replace: bool,
    create: Instrument | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Store the bars of a user's file after validation; rows that fail checks are refused, not stored.

    Every symbol must be a known instrument, unless `create` describes it (one-symbol files only).
    """
    service = MarketDataService(runtime)
    await service.seed_instruments()
    if create is not None:
        if parsed.symbols != (create.symbol,):
            raise ValidationFailedError(
                f"the instrument options describe {create.symbol}, but {parsed.name} holds {', '.join(parsed.symbols)}"
            )
        async with runtime.database.session() as session:
            await InstrumentRepository(session).upsert([create], runtime.clock.now())
    known = await _known_symbols(runtime)
    unknown = [s for s in parsed.symbols if s not in known]
    if unknown:
        raise ValidationFailedError(
            f"{parsed.name}: unknown symbol(s) {', '.join(unknown)}; describe a new instrument with "
            "--kind, --venue, --quote-currency, --tick-size and --lot-size"
        )
    result = ImportResult()
    for symbol, bars in parsed.series.items():
        kept, refused = drop_invalid(sorted(bars, key=lambda b: b.ts), resolution=parsed.resolution)
        counts = await _write(runtime, symbol, parsed.resolution, kept, parsed.name[:64], replace=replace)
        result.series.append(
            SeriesResult(
                symbol=symbol,
                resolution=parsed.resolution,
                source=parsed.name,
                rows=len(bars),
                rejected=[f"{bar.ts.isoformat()}: {reason}" for bar, reason in refused],
                report=validate_bars(bars, parsed.resolution, calendar=calendar.value),
                counts=counts,
            )
        )
        if progress is not None:
            progress(len(bars))
    return result


async def _known_symbols(runtime: Runtime) -> set[str]:
    async with runtime.database.read_session() as session:
        return {i.symbol for i in await InstrumentRepository(session).list()}


async def export_parquet(
    runtime: Runtime,
    symbol: str,
    resolution: Timeframe,
    path: Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> int:
    """Write one stored series (optionally a time range of it) to a Parquet file; returns the bar count."""
    instrument = await MarketDataService(runtime).instrument(symbol)
    async with runtime.database.read_session() as session:
        bars = await BarRepository(session).between(instrument.symbol, resolution, start, end, None)
    if not bars:
        raise ValidationFailedError(f"no {resolution.value} bars of {instrument.symbol} are stored in that range")
    write_bars_parquet(path, bars)
    return len(bars)
