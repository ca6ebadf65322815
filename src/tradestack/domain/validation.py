"""Checks on a series of OHLCV bars: what is wrong with it, and which bars an importer must refuse.

`validate_bars` reports; it changes nothing. `drop_invalid` is the importer's rule: refuse bars
whose prices are unusable or whose timestamp is off the resolution grid, keep the first bar of
each timestamp, and return the rest in time order together with every refused bar and its reason.

Problems are errors (the series must not be stored as it is) except gaps, which are warnings:
markets close, and holidays show up as gaps on a weekday calendar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from types import MappingProxyType

from tradestack.domain.marketdata import Bar, Timeframe

MAX_EXAMPLES = 5

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Calendar(StrEnum):
    """When a market is expected to produce bars."""

    WEEKDAYS = "weekdays"
    """Equities and FX. Daily bars: every Monday to Friday is expected, so holidays count as gaps.
    Intraday bars: only intervals missing inside one UTC weekday are gaps; overnight and weekend
    breaks are not (FX's Friday-evening close to Sunday-evening open included)."""

    ALWAYS = "always"
    """Crypto: trades 24/7, every interval is expected."""


class Issue(StrEnum):
    """A kind of problem in a series of bars."""

    OHLC_INCONSISTENT = "ohlc_inconsistent"
    """high below max(open, close), low above min(open, close), or high below low."""
    NON_POSITIVE_PRICE = "non_positive_price"
    """An open, high, low or close at or below zero (or not a finite number)."""
    NEGATIVE_VOLUME = "negative_volume"
    """A volume below zero (or not a finite number)."""
    DUPLICATE = "duplicate"
    """A timestamp already seen earlier in the series."""
    OUT_OF_ORDER = "out_of_order"
    """A timestamp earlier than one before it in the series."""
    MISALIGNED = "misaligned"
    """A timestamp that is not the start of a bucket of the resolution."""
    GAP = "gap"
    """A run of expected intervals with no bar (a warning, not an error)."""


WARNINGS = frozenset({Issue.GAP})
ERRORS = frozenset(Issue) - WARNINGS


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """What `validate_bars` found in one series.

    `counts` and `examples` have every `Issue` as a key. An example is the timestamp of an offending
    bar (at most `MAX_EXAMPLES` per kind, in input order); for a gap it is the first missing
    interval. `counts[Issue.GAP]` is the number of gaps and `missing_bars` the number of intervals
    they leave out.
    """

    resolution: Timeframe
    calendar: Calendar
    rows: int
    first: datetime | None
    last: datetime | None
    counts: Mapping[Issue, int]
    examples: Mapping[Issue, tuple[datetime, ...]]
    missing_bars: int

    @property
    def ok(self) -> bool:
        """True when the series has no errors; gaps alone are warnings."""
        return self.errors == 0

    @property
    def errors(self) -> int:
        """Number of problems that are errors (everything but gaps)."""
        return sum(self.counts[issue] for issue in ERRORS)

    def summary(self) -> str:
        """One line for logs and CLI output, e.g. ``1000 rows 2020-01-01..2020-12-31; 3 gap (12 bars missing)``."""
        if self.first is None or self.last is None:
            return "0 rows"
        span = f"{self.rows} rows {self.first.isoformat()}..{self.last.isoformat()}"
        found = [f"{count} {issue.value}" for issue, count in self.counts.items() if count and issue is not Issue.GAP]
        if self.counts[Issue.GAP]:
            found.append(f"{self.counts[Issue.GAP]} gap ({self.missing_bars} bars missing)")
        return f"{span}; {', '.join(found)}" if found else f"{span}; no problems"


def validate_bars(bars: Sequence[Bar], resolution: Timeframe, *, calendar: str) -> ValidationReport:
    """Report price, volume, timestamp and gap problems in one symbol's bars, given in stored order.

    `calendar` is ``"weekdays"`` or ``"always"`` (see `Calendar`). Gaps are expected intervals of
    the resolution's grid with no bar at all, whatever order the bars come in.
    """
    try:
        cal = Calendar(calendar)
    except ValueError:
        raise ValueError(f"unknown calendar {calendar!r}; use one of {', '.join(Calendar)}") from None
    symbols = {bar.symbol for bar in bars}
    if len(symbols) > 1:
        raise ValueError(f"validate one symbol at a time, got {', '.join(sorted(symbols))}")
    counts = dict.fromkeys(Issue, 0)
    examples: dict[Issue, list[datetime]] = {issue: [] for issue in Issue}

    def found(issue: Issue, ts: datetime) -> None:
        counts[issue] += 1
        if len(examples[issue]) < MAX_EXAMPLES:
            examples[issue].append(ts)

    seen: set[datetime] = set()
    latest: datetime | None = None
    step = resolution.delta
    for bar in bars:
        for issue in _price_issues(bar):
            found(issue, bar.ts)
        if (bar.ts - _EPOCH) % step:
            found(Issue.MISALIGNED, bar.ts)
        if bar.ts in seen:
            found(Issue.DUPLICATE, bar.ts)
        seen.add(bar.ts)
        if latest is not None and bar.ts < latest:
            found(Issue.OUT_OF_ORDER, bar.ts)
        latest = bar.ts if latest is None else max(latest, bar.ts)
    missing_bars = 0
    times = sorted(seen)
    for earlier, later in pairwise(times):
        missing, first_missing = _missing_between(earlier, later, resolution, cal)
        if missing:
            found(Issue.GAP, first_missing)
            missing_bars += missing
    return ValidationReport(
        resolution=resolution,
        calendar=cal,
        rows=len(bars),
        first=times[0] if times else None,
        last=times[-1] if times else None,
        counts=MappingProxyType(counts),
        examples=MappingProxyType({issue: tuple(stamps) for issue, stamps in examples.items()}),
        missing_bars=missing_bars,
    )


def drop_invalid(bars: Sequence[Bar], *, resolution: Timeframe | None = None) -> tuple[list[Bar], list[tuple[Bar, str]]]:
    """Split bars into those an importer keeps (sorted by time) and those it refuses, with the reason.

    Refused: unusable prices (not positive, OHLC inconsistent), negative volume, a timestamp off
    the `resolution` grid (when given), and every later bar of a timestamp already kept. Out-of-order
    bars are kept and sorted into place.
    """
    kept: dict[datetime, Bar] = {}
    rejected: list[tuple[Bar, str]] = []
    step = None if resolution is None else resolution.delta
    for bar in bars:
        reason = price_problem(bar)
        if reason is None and step is not None and (bar.ts - _EPOCH) % step:
            reason = f"timestamp {bar.ts.isoformat()} is not on the {resolution} grid"
        if reason is None and bar.ts in kept:
            reason = f"duplicate timestamp {bar.ts.isoformat()}; kept the first bar"
        if reason is None:
            kept[bar.ts] = bar
        else:
            rejected.append((bar, reason))
    return sorted(kept.values(), key=lambda bar: bar.ts), rejected


def price_problem(bar: Bar) -> str | None:
    """Why the bar's prices or volume are unusable, or None when they are fine."""
    prices = {"open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close}
    for name, value in prices.items():
        if not value.is_finite() or value <= 0:
            return f"{name} {value} is not a positive price"
    if not bar.volume.is_finite():
        return f"volume {bar.volume} is not a number"
    if bar.volume < 0:
        return f"volume {bar.volume} is negative"
    if bar.high < bar.low:
        return f"high {bar.high} is below low {bar.low}"
    if bar.high < max(bar.open, bar.close):
        return f"high {bar.high} is below max(open, close) {max(bar.open, bar.close)}"
    if bar.low > min(bar.open, bar.close):
        return f"low {bar.low} is above min(open, close) {min(bar.open, bar.close)}"
    return None


def _price_issues(bar: Bar) -> list[Issue]:
    issues: list[Issue] = []
    prices = (bar.open, bar.high, bar.low, bar.close)
    if not all(p.is_finite() and p > 0 for p in prices):
        issues.append(Issue.NON_POSITIVE_PRICE)
    if not bar.volume.is_finite() or bar.volume < 0:
        issues.append(Issue.NEGATIVE_VOLUME)
    if all(p.is_finite() for p in prices) and (
        bar.high < bar.low or bar.high < max(bar.open, bar.close) or bar.low > min(bar.open, bar.close)
    ):
        issues.append(Issue.OHLC_INCONSISTENT)
    return issues


def _missing_between(earlier: datetime, later: datetime, resolution: Timeframe, calendar: Calendar) -> tuple[int, datetime]:
    """Expected intervals strictly between two bars, and the first of them."""
    step = resolution.delta
    if later - earlier <= step:
        return 0, later
    start, end = resolution.floor(earlier), resolution.floor(later)
    first = start + step
    if resolution is Timeframe.D1 and calendar is Calendar.WEEKDAYS:
        weekdays = [day for day in _days_between(start.date(), end.date()) if day.weekday() < 5]
        if not weekdays:
            return 0, first
        return len(weekdays), start + timedelta(days=(weekdays[0] - start.date()).days)
    if calendar is Calendar.WEEKDAYS and (start.date() != end.date() or start.weekday() >= 5):
        return 0, first
    return max(0, (end - start) // step - 1), first


def _days_between(earlier: date, later: date) -> list[date]:
    return [earlier + timedelta(days=n) for n in range(1, (later - earlier).days)]
