"""Prometheus metrics of the signals module."""

from __future__ import annotations

from prometheus_client import Counter

TRADING_SIGNALS = Counter("trading_signals", "Alpha signals served (one per symbol in an answer), by model version.", ["model"])
