"""Time is injected: `Clock` is the only source of "now" in domain and service code."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Source of wall-clock (UTC) and monotonic time."""

    def now(self) -> datetime:
        """Return the current time as a timezone-aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Return seconds from an arbitrary origin that never goes backwards."""
        ...


class LiveClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Return `time.monotonic()`."""
        return time.monotonic()


class SimClock:
    """A clock that only moves when told to (tests, backtests)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None or start.utcoffset() != timedelta(0):
            raise ValueError("SimClock needs a UTC-aware start time")
        self._now = start
        self._monotonic = 0.0

    def now(self) -> datetime:
        """Return the simulated time."""
        return self._now

    def monotonic(self) -> float:
        """Return simulated seconds elapsed since construction."""
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move time forward; moving backwards is refused."""
        if seconds < 0:
            raise ValueError("time cannot move backwards")
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds
