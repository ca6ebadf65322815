"""Analysis runs against Prometheus, with Argo Rollouts' semantics.

Each measurement queries every metric over the last `window` of the new colour's requests (label ``track``):

* requests: ``sum(increase(api_requests_total{track=T}[W]))``; fewer than ``minRequests`` → inconclusive;
* ``error_ratio``: 5xx requests over all requests; above ``max`` → failed;
* ``latency``: ``histogram_quantile(q, sum by (le) (rate(api_request_duration_seconds_bucket{track=T}[W])))``;
  above ``max`` seconds → failed;
* a query that errors (Prometheus down, bad answer) is an error.

The run stops as soon as a metric has more failures than ``failureLimit`` (→ failed) or more consecutive errors than
``consecutiveErrorLimit`` (→ error, treated as failed); after ``count`` measurements it is successful, unless some
metric's measurements were all inconclusive (→ inconclusive). Probes and scrapes are not traffic and are excluded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tradestack.deploy.spec import Analysis, Metric

EXCLUDED_ROUTES = "/metrics|/api/health|/api/ready|/api/health/database|/api/db/health|/api/version"


class PrometheusError(Exception):
    """Prometheus did not answer a query usefully; the message says why."""


def _selector(track: str, extra: str = "") -> str:
    return f'track="{track}",route!~"{EXCLUDED_ROUTES}"' + (f",{extra}" if extra else "")


def requests_query(track: str, window: float) -> str:
    return f"sum(increase(api_requests_total{{{_selector(track)}}}[{window:g}s]))"


def metric_query(metric: Metric, track: str, window: float) -> str:
    """The PromQL of one metric (also rendered into Argo AnalysisTemplates, with the track as an argument)."""
    if metric.kind == "error_ratio":
        server_errors = _selector(track, 'status_class="5xx"')
        errors = f"sum(increase(api_requests_total{{{server_errors}}}[{window:g}s]))"
        return f"({errors} or vector(0)) / {requests_query(track, window)}"
    buckets = f"api_request_duration_seconds_bucket{{{_selector(track)}}}"
    return f"histogram_quantile({metric.quantile:g}, sum by (le) (rate({buckets}[{window:g}s])))"


class Prometheus:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def scalar(self, query: str) -> float | None:
        """The single value of an instant query, None when the result is empty."""
        try:
            response = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=self.timeout)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"{query}: {body.get('errorType')}: {body.get('error')}")
        result = body["data"]["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value


@dataclass(frozen=True)
class Measurement:
    metric: str
    phase: str  # successful, failed, inconclusive, error
    value: float | None
    requests: float | None
    detail: str


@dataclass
class AnalysisResult:
    phase: str  # successful, failed, inconclusive, error
    measurements: list[Measurement] = field(default_factory=list)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.phase == "successful"


def measure(prometheus: Prometheus, metric: Metric, track: str, window: float) -> Measurement:
    try:
        requests = prometheus.scalar(requests_query(track, window)) or 0.0
        if requests < metric.min_requests:
            detail = f"{requests:.0f} requests in {window:g}s < minRequests {metric.min_requests}"
            return Measurement(metric.name, "inconclusive", None, requests, detail)
        value = prometheus.scalar(metric_query(metric, track, window))
    except PrometheusError as exc:
        return Measurement(metric.name, "error", None, None, str(exc))
    if value is None:
        return Measurement(metric.name, "inconclusive", None, requests, "no samples")
    shown = f"{value:.2%}" if metric.kind == "error_ratio" else f"{value * 1000:.0f} ms"
    limit = f"{metric.max:.2%}" if metric.kind == "error_ratio" else f"{metric.max * 1000:.0f} ms"
    phase = "failed" if value > metric.max else "successful"
    return Measurement(metric.name, phase, value, requests, f"{metric.name} {shown} (max {limit}, {requests:.0f} requests)")


def run_analysis(
    prometheus: Prometheus,
    analysis: Analysis,
    track: str,
    *,
    on_measurement: Callable[[Measurement], None] = lambda _: None,
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> AnalysisResult:
    """Take `analysis.count` measurements `analysis.interval` apart; stop early on failure or errors."""
    result = AnalysisResult("successful")
    failures = dict.fromkeys((m.name for m in analysis.metrics), 0)
    consecutive_errors = dict.fromkeys(failures, 0)
    conclusive = dict.fromkeys(failures, 0)
    for n in range(analysis.count):
        sleep(analysis.interval)
        if should_stop():
            return AnalysisResult("error", result.measurements, "stopped by an operator command")
        for metric in analysis.metrics:
            taken = measure(prometheus, metric, track, analysis.query_window)
            result.measurements.append(taken)
            on_measurement(taken)
            if taken.phase == "error":
                consecutive_errors[metric.name] += 1
                if consecutive_errors[metric.name] > analysis.consecutive_error_limit:
                    return AnalysisResult("error", result.measurements, f"{metric.name}: {taken.detail}")
                continue
            consecutive_errors[metric.name] = 0
            if taken.phase == "failed":
                failures[metric.name] += 1
                conclusive[metric.name] += 1
                if failures[metric.name] > analysis.failure_limit:
                    return AnalysisResult("failed", result.measurements, taken.detail)
            elif taken.phase == "successful":
                conclusive[metric.name] += 1
        del n
    undecided = [name for name, count in conclusive.items() if count == 0]
    if undecided:
        last = {m.metric: m.detail for m in result.measurements}
        reason = "; ".join(f"{name}: {last.get(name, 'no measurement')}" for name in undecided)
        return AnalysisResult("inconclusive", result.measurements, reason)
    return result
