"""Exchange sessions from pandas-market-calendars, handed to the domain as plain instants.

`trading_hours(code)` is the one market-hours rule: order checks, the engine, the feeds and
`open_now` all ask it. For NASDAQ, NYSE, ASX and NSE it returns the domain venue with a
`SessionTable` (every session's open and close in UTC, holidays, early closes and special sessions
included) for the years `FIRST_YEAR` to this year + `YEARS_AHEAD`; outside them, and for venues no
library covers (spot FX), the venue's weekly sessions apply. A calendar whose holidays are a list
the library keeps by hand (NSE: the lunar holidays are published a year at a time) is cut at the
end of the last year it lists, so later years fall back to the weekly sessions rather than claim
to know holidays nobody has published yet (`known_until`).

The library imports pandas and takes seconds to import, so it is loaded lazily, once per process,
and its tables are written to a JSON cache (`load(directory)`, called at start-up in a worker
thread) keyed by the library's version and the years, in the data directory and in a machine-wide
cache (`shared_cache_dir()`): later starts, and servers with a new data directory, read the file
and never import the library. The demo switch `TRADESTACK_MARKET_HOURS_ALWAYS_OPEN` opens every venue around the
clock, for every caller alike.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tradestack.domain.instruments import SessionTable, Venue, venue

LIBRARY = "pandas-market-calendars"
CALENDARS = {"NASDAQ": "NASDAQ", "NYSE": "NYSE", "ASX": "ASX", "NSE": "NSE"}
"""Venue code → the library's calendar name."""
FIRST_YEAR = 2000
YEARS_AHEAD = 3

_lock = threading.Lock()
_tables: dict[str, SessionTable] | None = None
_venues: dict[tuple[str, bool], Venue] = {}


def trading_hours(code: str, *, always_open: bool = False) -> Venue:
    """The calendar orders of venue `code` trade by: its exact sessions, or (the demo setting) open around the clock.

    KeyError for an unknown venue, listing the known ones.
    """
    key = (code, always_open)
    found = _venues.get(key)
    if found is not None:
        return found
    base = venue(code)
    if base.always_open:
        found = base
    elif always_open:
        found = replace(base, always_open=True)
    else:
        table = tables().get(code)
        found = replace(base, schedule=table) if table is not None else base
    _venues[key] = found
    return found


def known_until(code: str) -> date | None:
    """The last venue-local day the exact calendar of `code` covers (None: no table, weekly sessions only)."""
    table = tables().get(code)
    if table is None:
        return None
    return table.end.astimezone(ZoneInfo(venue(code).timezone)).date() - timedelta(days=1)


def tables() -> dict[str, SessionTable]:
    """The session tables of this process (computed on first use when `load` has not run)."""
    return _tables if _tables is not None else load(None)


def shared_cache_dir() -> Path:
    """The machine-wide cache every data directory shares (`$XDG_CACHE_HOME/tradestack`, else `~/.cache/tradestack`)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "tradestack"


def load(directory: Path | None, *, last_year: int | None = None, shared: Path | bool | None = True) -> dict[str, SessionTable]:
    """Load the tables from the cache file in `directory` or the shared cache, or compute (and write) them; once per process.

    The file depends only on the library's version and the years, so one computation serves every
    data directory on the machine (`shared`: True for `shared_cache_dir()`, a path, or False).
    """
    global _tables
    with _lock:
        if _tables is not None:
            return _tables
        last = last_year if last_year is not None else datetime.now(UTC).year + YEARS_AHEAD
        source = f"{LIBRARY} {package_version(LIBRARY)}"
        name = f"calendars-{source.replace(' ', '-')}-{FIRST_YEAR}-{last}.json"
        common = shared_cache_dir() if shared is True else shared or None
        paths = [folder / name for folder in (directory, common) if folder is not None]
        loaded, damaged = None, []
        for path in paths:
            loaded = _read(path, source)
            if loaded is not None:
                break
            damaged.append(path)
        if loaded is None:
            loaded = compute(FIRST_YEAR, last)
        for path in paths:
            if path in damaged or not path.is_file():
                _write(path, loaded)  # missing or unreadable: (re)write it
        _tables = loaded
        _venues.clear()
        return loaded


def compute(first_year: int, last_year: int) -> dict[str, SessionTable]:
    """Every session of the covered venues from 1 January `first_year` to 31 December `last_year` (or the last listed year)."""
    import pandas_market_calendars as calendars  # slow to import: only here

    source = f"{LIBRARY} {package_version(LIBRARY)}"
    found: dict[str, SessionTable] = {}
    for code, name in CALENDARS.items():
        with warnings.catch_warnings():  # the library's own pandas deprecations, not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            calendar = calendars.get_calendar(name)
            last = _end_year(calendar, last_year)
            schedule = calendar.schedule(start_date=f"{first_year}-01-01", end_date=f"{last}-12-31")
        zone = ZoneInfo(venue(code).timezone)
        opens = schedule["market_open"].dt.as_unit("s").astype("int64").to_numpy()
        closes = schedule["market_close"].dt.as_unit("s").astype("int64").to_numpy()
        sessions = [(_at(int(o)), _at(int(c))) for o, c in zip(opens, closes, strict=True)]
        start = datetime.combine(date(first_year, 1, 1), time(0), tzinfo=zone)
        end = datetime.combine(date(last + 1, 1, 1), time(0), tzinfo=zone)
        found[code] = SessionTable.of(sessions, start, end, source)
    return found


def _end_year(calendar: Any, last_year: int) -> int:
    """`last_year`, or for a calendar whose holidays are only a hand-kept list (no rules) the last year it lists."""
    rules = getattr(calendar.regular_holidays, "rules", None)
    listed = calendar.adhoc_holidays
    if rules or not listed:
        return last_year
    return min(last_year, max(int(str(day)[:4]) for day in listed))


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _read(path: Path, source: str) -> dict[str, SessionTable] | None:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("source") != source:
        return None
    try:
        return {
            code: SessionTable(
                opens=tuple(_at(o) for o, _ in entry["sessions"]),
                closes=tuple(_at(c) for _, c in entry["sessions"]),
                start=_at(entry["start"]),
                end=_at(entry["end"]),
                source=source,
            )
            for code, entry in raw["venues"].items()
        }
    except (KeyError, TypeError, ValueError):
        return None  # a damaged cache is recomputed


def _write(path: Path, found: dict[str, SessionTable]) -> None:
    body = {
        "source": next(iter(found.values())).source if found else "",
        "venues": {
            code: {
                "start": int(table.start.timestamp()),
                "end": int(table.end.timestamp()),
                "sessions": [[int(o.timestamp()), int(c.timestamp())] for o, c in zip(table.opens, table.closes, strict=True)],
            }
            for code, table in found.items()
        },
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(body, separators=(",", ":")))
        partial.replace(path)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError:
        pass  # a read-only data directory: compute again next start


def reset() -> None:
    """Forget this process's tables (tests)."""
    global _tables
    with _lock:
        _tables = None
        _venues.clear()
