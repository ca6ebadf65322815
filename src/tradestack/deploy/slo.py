"""Service-level objectives for load tests (``p95=200ms,error_rate=1%,rps=50``) and durations (``30s``, ``200ms``, ``2m``).

An SLO is a bound on one figure of a run: a latency percentile is a maximum, ``error_rate`` a maximum share of failed
requests, ``rps`` a minimum throughput. Parsing errors name the piece to fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
PERCENTILES = ("50", "66", "75", "80", "90", "95", "98", "99", "99.9", "99.99", "100")
DEFAULT_SLOS = "p95=500ms,error_rate=1%"


class SloError(ValueError):
    """An SLO or duration that cannot be read; the message names it and the accepted forms."""


def parse_duration(text: str, *, default_unit: str = "s") -> float:
    """Seconds in ``text``: ``250ms``, ``30s``, ``2m``, ``1h``, or a bare number in `default_unit`."""
    match = DURATION.match(text)
    if not match:
        raise SloError(f"{text!r} is not a duration: write e.g. 250ms, 30s, 2m or 1h")
    return float(match.group(1)) * UNIT_SECONDS[match.group(2) or default_unit]


@dataclass(frozen=True)
class Slo:
    """One objective: `metric` (``p95``, ``error_rate``, ``rps``) against `threshold` (seconds, fraction, per second)."""

    metric: str
    threshold: float
    text: str

    @property
    def is_minimum(self) -> bool:
        return self.metric == "rps"

    def met_by(self, value: float) -> bool:
        return value >= self.threshold if self.is_minimum else value <= self.threshold


def parse_slos(text: str) -> list[Slo]:
    """``p95=200ms,error_rate=1%,rps=50`` as SLOs (latency percentiles p50..p100, error_rate in % or a fraction, rps)."""
    slos: list[Slo] = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        name, sep, value = raw.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep or not value:
            raise SloError(f"{raw!r}: write NAME=VALUE, e.g. p95=200ms, error_rate=1%, rps=50")
        if name.startswith("p") and name[1:] in PERCENTILES:
            slos.append(Slo(name, parse_duration(value, default_unit="ms"), raw))
        elif name == "error_rate":
            try:
                rate = float(value[:-1]) / 100 if value.endswith("%") else float(value)
            except ValueError:
                raise SloError(f"{raw!r}: error_rate is a percentage (1%) or a fraction (0.01)") from None
            if not 0 <= rate <= 1:
                raise SloError(f"{raw!r}: error_rate must be between 0% and 100%")
            slos.append(Slo(name, rate, raw))
        elif name == "rps":
            try:
                slos.append(Slo(name, float(value), raw))
            except ValueError:
                raise SloError(f"{raw!r}: rps is a number of requests per second") from None
        else:
            known = ", ".join(f"p{p}" for p in PERCENTILES)
            raise SloError(f"{raw!r}: unknown SLO {name!r}; use one of {known}, error_rate, rps")
    if not slos:
        raise SloError("no SLO given: e.g. --slo p95=200ms,error_rate=1%")
    return slos
