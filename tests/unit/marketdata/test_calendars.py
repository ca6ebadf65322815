"""Exchange sessions from pandas-market-calendars: holidays (lunar ones too), half days, years ahead, one rule.

The expected days are the exchanges' own published calendars (NYSE holiday and early-close rules,
NSE's holiday circulars for 2025 and 2026, ASX's trading calendar), not the library's output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tradestack.domain.instruments import NYSE
from tradestack.marketdata import calendars
from tradestack.marketdata.calendars import known_until, trading_hours


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def fresh() -> Iterator[None]:
    """Tests that load the tables themselves start from none and leave none behind (the next caller reloads)."""
    calendars.reset()
    yield
    calendars.reset()


def test_us_holidays_and_half_days_come_from_the_library() -> None:
    nasdaq = trading_hours("NASDAQ")
    assert not nasdaq.is_open(utc(2026, 11, 26, 15, 0))  # Thanksgiving
    assert nasdaq.next_open(utc(2026, 11, 25, 21, 0)) == utc(2026, 11, 27, 14, 30)
    # The day after Thanksgiving closes at 13:00 New York.
    assert nasdaq.next_close(utc(2026, 11, 27, 15, 0)) == utc(2026, 11, 27, 18, 0)
    assert not nasdaq.is_open(utc(2026, 11, 27, 18, 30))
    # Good Friday 2026 is 3 April; the market reopens on Monday 6 April (EDT).
    assert nasdaq.next_open(utc(2026, 4, 2, 20, 0)) == utc(2026, 4, 6, 13, 30)


def test_a_2028_holiday_and_half_day_are_known() -> None:
    nyse = trading_hours("NYSE")
    assert not nyse.is_open(utc(2028, 11, 23, 15, 0))  # Thanksgiving 2028
    assert nyse.next_close(utc(2028, 11, 24, 15, 0)) == utc(2028, 11, 24, 18, 0)  # its Friday: 13:00 close
    assert not nyse.is_open(utc(2028, 12, 25, 15, 0))  # Christmas, a Monday
    assert nyse.next_open(utc(2028, 12, 22, 22, 0)) == utc(2028, 12, 26, 14, 30)
    assert NYSE.is_open(utc(2028, 12, 25, 15, 0))  # the weekly sessions alone would have traded


def test_nse_lunar_holidays_and_the_diwali_muhurat_session() -> None:
    nse = trading_hours("NSE")
    assert not nse.is_open(utc(2025, 10, 22, 5, 0))  # Diwali Balipratipada 2025, 10:30 IST
    assert not nse.is_open(utc(2026, 11, 10, 5, 0))  # Diwali Balipratipada 2026
    assert not nse.is_open(utc(2026, 3, 3, 5, 0))  # Holi 2026
    assert not nse.is_open(utc(2026, 1, 26, 5, 0))  # Republic Day
    # Diwali Laxmi Pujan 2025 (21 October): no regular session, one hour of Muhurat trading 13:45-14:45 IST.
    assert not nse.is_open(utc(2025, 10, 21, 5, 0))
    assert nse.next_open(utc(2025, 10, 21, 0, 0)) == utc(2025, 10, 21, 8, 15)
    assert nse.next_close(utc(2025, 10, 21, 8, 30)) == utc(2025, 10, 21, 9, 15)
    assert nse.is_open(utc(2026, 1, 27, 4, 0))  # an ordinary Tuesday, 09:30 IST


def test_nse_years_without_a_published_holiday_list_fall_back_to_the_weekly_sessions() -> None:
    last = known_until("NSE")
    assert last is not None
    assert last >= date(2026, 12, 31)
    assert (last.month, last.day) == (12, 31)
    nse = trading_hours("NSE")
    beyond = datetime(last.year + 1, 11, 1, 5, 0, tzinfo=UTC)  # a weekday morning in the first unlisted year
    beyond = beyond.replace(day=1 + (7 - beyond.weekday()) % 7)  # the first Monday of that November
    assert nse.is_open(beyond)
    assert known_until("NYSE") == date(datetime.now(UTC).year + calendars.YEARS_AHEAD, 12, 31)  # rules: computed ahead
    assert known_until("FX") is None


def test_asx_australia_day_and_christmas_eve_early_close() -> None:
    asx = trading_hours("ASX")
    assert not asx.is_open(utc(2026, 1, 25, 23, 30))  # Australia Day, Monday 26 January local
    assert asx.next_close(utc(2026, 12, 24, 0, 0)) == utc(2026, 12, 24, 3, 10)  # 14:10 Sydney


def test_the_demo_switch_opens_every_venue_and_crypto_and_fx_keep_their_rules() -> None:
    saturday = utc(2026, 12, 5, 15, 0)
    assert trading_hours("NASDAQ", always_open=True).is_open(saturday)
    assert trading_hours("NSE", always_open=True).is_open(utc(2025, 10, 22, 5, 0))
    assert not trading_hours("NASDAQ").is_open(saturday)
    assert trading_hours("CRYPTO").is_open(saturday)
    assert not trading_hours("FX").is_open(saturday)
    assert trading_hours("NASDAQ") is trading_hours("NASDAQ")  # one calendar object per venue and setting
    with pytest.raises(KeyError, match="known venues"):
        trading_hours("LSE")


def test_the_tables_are_cached_on_disk_and_read_back_without_the_library(
    fresh: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, shared = tmp_path / "data", tmp_path / "shared"
    computed = calendars.load(data, last_year=2027, shared=shared)
    (cache,) = data.glob("calendars-*.json")
    assert "pandas-market-calendars" in cache.name
    assert (shared / cache.name).read_bytes() == cache.read_bytes()
    calendars.reset()

    def refuse(first_year: int, last_year: int) -> None:
        raise AssertionError("computed again instead of reading the cache")

    monkeypatch.setattr(calendars, "compute", refuse)
    assert calendars.load(data, last_year=2027, shared=False) == computed
    assert not trading_hours("NYSE").is_open(utc(2026, 11, 26, 15, 0))
    calendars.reset()
    other = tmp_path / "another-data-dir"  # a new installation on the same machine: the shared file serves
    assert calendars.load(other, last_year=2027, shared=shared) == computed
    assert (other / cache.name).is_file()


def test_a_damaged_cache_file_is_recomputed(fresh: None, tmp_path: Path) -> None:
    calendars.load(tmp_path, last_year=2027, shared=False)
    (cache,) = tmp_path.glob("calendars-*.json")
    body = json.loads(cache.read_text())
    body["venues"]["NYSE"]["sessions"] = "garbage"
    cache.write_text(json.dumps(body))
    calendars.reset()
    assert len(calendars.load(tmp_path, last_year=2027, shared=False)["NYSE"].opens) > 6_000
    assert isinstance(json.loads(cache.read_text())["venues"]["NYSE"]["sessions"], list)  # repaired
    assert not trading_hours("NYSE").is_open(utc(2026, 11, 26, 15, 0))
