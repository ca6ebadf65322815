"""The latest day's window (`latest_window`): from each symbol's last bars, the same features as from whole histories,
or None when the last bars cannot prove it; the first-training marker."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from tradestack.domain.marketdata import Bar
from tradestack.signals import alpha, artifacts
from tradestack.signals.features.daily import LOOKBACK
from tradestack.signals.service import latest_window

START = date(2000, 1, 3)


def _bars(symbol: str, days: list[date], seed: int, *, volume: bool = True) -> list[Bar]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, len(days))))
    out = []
    for day, c in zip(days, close, strict=True):
        price = Decimal(f"{c:.4f}")
        wiggle = Decimal(f"{abs(rng.normal(0, 0.5)):.4f}")
        out.append(
            Bar(
                symbol, datetime(day.year, day.month, day.day, tzinfo=UTC), price - wiggle / 2, price + wiggle,
                price - wiggle, price, Decimal(int(rng.integers(1_000, 100_000))) if volume else Decimal(0),
            )
        )  # fmt: skip
    return out


def _weekdays(first: date, count: int, *, skip_every: int = 0) -> list[date]:
    days, day = [], first
    while len(days) < count:
        if day.weekday() < 5 and not (skip_every and day.toordinal() % skip_every == 0):
            days.append(day)
        day += timedelta(days=1)
    return days


def _ragged() -> dict[str, list[Bar]]:
    """Symbols ending years apart (like the shipped demo data), some missing days, one starting late."""
    return {
        "AAA": _bars("AAA", _weekdays(START, 900), 1),
        "BBB": _bars("BBB", _weekdays(START, 1500, skip_every=7), 2),
        "CCC": _bars("CCC", _weekdays(START + timedelta(days=400), 1400), 3),
        "DDD": _bars("DDD", _weekdays(START, 1700, skip_every=11), 4),
        "EEE": _bars("EEE", _weekdays(START, 2500), 5),
    }


def _cut(bars: dict[str, list[Bar]], limit: int, until: date) -> dict[str, list[Bar]]:
    """What `_compute` reads: each symbol's last `limit` bars before `until`."""
    return {s: [b for b in series if b.ts.date() < until][-limit:] for s, series in bars.items()}


def _features_of_latest_day(panel: alpha.Panel) -> tuple[date, np.ndarray]:
    usable = np.flatnonzero((~np.isnan(panel.close)).sum(axis=1) >= alpha.MIN_SYMBOLS)
    t = int(usable[-1])
    return panel.dates[t], panel.features()[1][t]


@pytest.mark.parametrize("limit", [LOOKBACK + 5, 2 * LOOKBACK, 4 * LOOKBACK])
def test_the_latest_days_window_gives_the_whole_historys_features_of_that_day(limit: int) -> None:
    whole = _ragged()
    day, expected = _features_of_latest_day(alpha.panel_from_bars(whole))
    until = sorted((series[-1].ts.date() for series in whole.values()), reverse=True)[alpha.MIN_SYMBOLS - 1]
    window = latest_window(_cut(whole, limit, until + timedelta(days=1)), limit)
    assert window is not None
    panel, t = window
    assert panel.dates[t] == day
    assert len(panel.dates) == LOOKBACK
    assert np.array_equal(panel.features()[1][t], expected, equal_nan=True)
    assert np.isfinite(expected).any()
    # Whole histories give a window too, the same.
    whole_panel, whole_t = latest_window(whole, None)  # type: ignore[misc]
    assert np.array_equal(whole_panel.features()[1][whole_t], expected, equal_nan=True)


def test_bars_that_may_not_give_the_whole_historys_rows_give_none() -> None:
    whole = _ragged()
    until = date(2009, 1, 1)
    # Too few bars to cover the look-back.
    assert latest_window(_cut(whole, LOOKBACK - 10, until), LOOKBACK - 10) is None
    # A cut symbol that starts inside the window: the calendar before its first bar may lack its days.
    late = _cut(whole, 4 * LOOKBACK, until)
    late["EEE"] = late["EEE"][-LOOKBACK // 2 :]
    assert latest_window(late, LOOKBACK // 2) is None
    # Cut bars without volumes: the whole history might have them (OHLCV features, not close-only).
    quiet = _cut(whole, 4 * LOOKBACK, until)
    quiet["AAA"] = _bars("AAA", [b.ts.date() for b in quiet["AAA"]], 1, volume=False)
    assert latest_window(quiet, 4 * LOOKBACK) is None
    # Cut bars without a day of MIN_SYMBOLS symbols.
    apart = {s: series[-30:] for s, series in whole.items()}
    assert latest_window(apart, 30) is None


def test_the_first_training_marker_names_a_live_process(tmp_path: Path) -> None:
    assert not artifacts.first_training_in_progress(tmp_path)
    artifacts.mark_first_training(tmp_path, os.getpid())
    assert artifacts.first_training_in_progress(tmp_path)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    artifacts.mark_first_training(tmp_path, finished.pid)  # killed or ended without clearing it
    assert not artifacts.first_training_in_progress(tmp_path)
    artifacts.mark_first_training(tmp_path, os.getpid())
    artifacts.clear_first_training(tmp_path)
    assert not artifacts.first_training_in_progress(tmp_path)
    artifacts.clear_first_training(tmp_path)  # twice is fine


def test_a_marker_whose_pid_now_belongs_to_another_process_is_not_taken_for_the_trainer(tmp_path: Path) -> None:
    artifacts.mark_first_training(tmp_path, os.getpid())
    marker = tmp_path / "models" / artifacts.FIRST_TRAINING_FILE
    pid, started = marker.read_text().split()
    assert int(pid) == os.getpid()
    # The trainer was killed and its pid went to this process, started at another time.
    marker.write_text(f"{pid} {int(started) - 1}")
    assert not artifacts.first_training_in_progress(tmp_path)
    marker.write_text(pid)  # a marker of the earlier format (pid only): alive is all that can be told
    assert artifacts.first_training_in_progress(tmp_path)
    marker.write_text("not a pid")
    assert not artifacts.first_training_in_progress(tmp_path)
