"""Prometheus metrics shared by every module, correct with several worker processes.

When ``PROMETHEUS_MULTIPROC_DIR`` is set (the CLI sets it for ``--workers > 1`` before any
worker starts) prometheus-client writes samples to per-process files and `/metrics` merges
them; otherwise the default in-process registry is used.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)

API_REQUEST_DURATION = Histogram(
    "api_request_duration_seconds",
    "Time from request start to response end, by method, route template and status class.",
    ["method", "route", "status_class"],
    buckets=LATENCY_BUCKETS,
)
API_REQUESTS = Counter(
    "api_requests",
    "HTTP requests served, by method, route template and status class.",
    ["method", "route", "status_class"],
)
DATABASE_CONNECTIONS_ACTIVE = Gauge(
    "database_connections_active",
    "Database connections checked out of the pool right now.",
    ["database"],
    multiprocess_mode="livesum",
)

BACKEND_UNAVAILABLE = Counter(
    "backend_unavailable",
    "Operations that ran degraded (or answered 503) because a backend was unreachable, by backend and operation.",
    ["backend", "operation"],
)
BACKGROUND_TASK_FAILURES = Counter(
    "background_task_failures",
    "Failures of a background task (engine, feeds, strategies) that were not a backend outage: a bug, by task.",
    ["task"],
)


def is_multiprocess() -> bool:
    """True when samples are shared between worker processes through files."""
    return bool(os.environ.get(MULTIPROCESS_ENV))


class Batched:
    """Counter increments and histogram observations of the busiest series, written to the shared files in batches.

    With several workers every ``inc`` and ``observe`` writes this process's sample file under a
    lock - several microseconds each, a few per request on the hot routes. Here they add up in
    plain Python and the totals are written by `flush`: at most `seconds` after the first one
    pending (a timer on the running event loop), before this process renders ``/metrics``, and when
    the worker stops. The totals are those of direct writes (a histogram's sum up to float
    rounding); another worker's ``/metrics`` sees them up to `seconds` late, well within a scrape
    interval. In one process (no shared files, ``enabled`` False) every call writes directly.
    """

    def __init__(self, *, enabled: bool | None = None, seconds: float = 1.0) -> None:
        self.enabled = is_multiprocess() if enabled is None else enabled
        self.seconds = seconds
        self._counts: dict[Any, float] = {}  # counter series -> pending increment
        self._observed: dict[Any, list[float]] = {}  # histogram series -> [sum, count per bucket...]
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def inc(self, counter: Any, amount: float = 1.0) -> None:
        """``counter.inc(amount)`` for a labelled (or label-less) counter series."""
        if not self.enabled:
            counter.inc(amount)
            return
        self._counts[counter] = self._counts.get(counter, 0.0) + amount
        self._schedule()

    def observe(self, histogram: Any, value: float) -> None:
        """``histogram.observe(value)`` for a labelled (or label-less) histogram series."""
        if not self.enabled:
            histogram.observe(value)
            return
        bounds: list[float] = histogram._upper_bounds  # observe's own bounds (the last is +Inf)
        pending = self._observed.get(histogram)
        if pending is None:
            pending = self._observed[histogram] = [0.0] * (len(bounds) + 1)
        pending[0] += value
        if not math.isnan(value):  # observe counts a NaN in no bucket
            pending[1 + bisect.bisect_left(bounds, value)] += 1  # the first bound >= value, as observe finds it
        self._schedule()

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()  # no event loop to flush later from
            return
        if self._timer is not None and self._loop is loop:
            return
        if self._timer is not None:
            self.flush()  # pending from a loop that has gone
            return
        self._loop, self._timer = loop, loop.call_later(self.seconds, self.flush)

    def flush(self) -> None:
        """Write every pending total to its series."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop = None
        counts, observed = self._counts, self._observed
        self._counts, self._observed = {}, {}
        for counter, amount in counts.items():
            counter.inc(amount)
        for histogram, pending in observed.items():
            histogram._sum.inc(pending[0])  # what observe writes (prometheus-client's own series), once a batch
            for bucket, count in zip(histogram._buckets, pending[1:], strict=True):
                if count:
                    bucket.inc(count)


BATCHED = Batched()
"""This process's batch of the hot routes' request and prediction metrics."""


def render_latest() -> tuple[bytes, str]:
    """The exposition text of every metric of every worker, and its content type."""
    BATCHED.flush()
    if is_multiprocess():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_worker_exited(pid: int | None = None) -> None:
    """Write this worker's batched metrics, and drop its live gauges, as it shuts down."""
    BATCHED.flush()
    if is_multiprocess():
        multiprocess.mark_process_dead(pid if pid is not None else os.getpid())  # type: ignore[no-untyped-call]


USER_LOGINS = Counter("user_logins", "Login attempts by result.", ["result"])
AUTH_FAILURES = Counter("auth_failures", "Requests refused for authentication or authorisation, by reason.", ["reason"])
RATE_LIMITED = Counter("rate_limited_requests", "Requests refused with 429, by which limit refused them.", ["limit"])

MARKET_DATA_LATENCY = Histogram(
    "market_data_latency_seconds",
    "Time from a market event's timestamp to its publication to subscribers, by feed.",
    ["feed"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
MARKET_DATA_LAST_UPDATE = Gauge(
    "market_data_last_update_timestamp_seconds",
    "Unix time of the last quote published for a symbol.",
    ["symbol"],
    multiprocess_mode="max",
)
MARKET_DATA_EVENTS = Counter("market_data_events", "Market events published, by feed and kind.", ["feed", "kind"])
GC_PAUSE = Histogram(
    "python_gc_pause_seconds",
    "Time the cyclic garbage collector stopped this process, by generation collected (2: a full pass).",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
EVENT_LOOP_LAG = Histogram(
    "event_loop_lag_seconds",
    "How late the event loop ran a callback due every 20 ms: the wait everything on the loop had then.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
WEBSOCKET_CONNECTIONS_ACTIVE = Gauge(
    "websocket_connections_active",
    "Authenticated WebSocket connections open right now.",
    multiprocess_mode="livesum",
)
WEBSOCKET_MESSAGES_CONFLATED = Counter(
    "websocket_messages_conflated",
    "Market-data messages replaced by a newer value before a slow client could receive them, by channel kind.",
    ["kind"],
)

WEBSOCKET_FANOUT_DURATION = Histogram(
    "websocket_fanout_duration_seconds",
    "Time to hand one market-data message to every local subscriber of its channel: the wait of the last one served.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25),
)
WEBSOCKET_FANOUT_CPU = Histogram(
    "websocket_fanout_cpu_seconds",
    "CPU time of the fan-out thread while handing one market-data message to its local subscribers (below the "
    "duration: the thread was preempted or waited for the interpreter lock meanwhile).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25),
)

ORDERS = Counter(
    "orders",
    "Orders reaching a status (accepted, denied, partially_filled once, filled, canceled, expired, rejected), by type.",
    ["type", "status"],
)
ORDER_PLACEMENT_LATENCY = Histogram(
    "order_placement_latency_seconds",
    "Time to accept or deny a submitted order: validation, risk checks and the durable write.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
TRADE_EXECUTION_SUCCESS_RATIO = Gauge(
    "trade_execution_success_ratio",
    "Of the accepted orders that finished in the last 24 hours, the share that got at least one fill.",
    multiprocess_mode="mostrecent",
)
PORTFOLIO_VALUE_AUD = Gauge(
    "portfolio_value_aud",
    "Total equity of the accounts whose base currency is AUD, in AUD.",
    multiprocess_mode="mostrecent",
)
PORTFOLIO_VALUE = Gauge(
    "portfolio_value",
    "Total equity of the accounts of each base currency, in that currency.",
    ["currency"],
    multiprocess_mode="mostrecent",
)
ENGINE_ORDERS_WORKING = Gauge(
    "engine_orders_working",
    "Orders working in the paper matching engine, by shard.",
    ["shard"],
    multiprocess_mode="livesum",
)


# Dependencies and resources, refreshed by the background probe (`tradestack.ops.probes`).
DATABASE_UP = Gauge(
    "database_up", "1 when this process reached the primary database at its last probe, else 0.", multiprocess_mode="livemin"
)
REDIS_UP = Gauge("redis_up", "1 when this process reached Redis at its last probe, else 0.", multiprocess_mode="livemin")
BROKER_CONNECTED = Gauge(
    "broker_connected",
    "1 when a configured venue (ccxt exchange, broker gateway) answered its last probe, else 0.",
    ["venue"],
    multiprocess_mode="livemin",
)
DATABASE_POOL_WAIT = Histogram(
    "database_pool_wait_seconds",
    "Time to get a connection from the pool (waiting for a free one included), by database role.",
    ["database"],
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CACHE_REQUESTS = Counter("cache_requests", "Cache lookups by result (hit or miss).", ["result"])
DATA_DIR_FILESYSTEM_SIZE = Gauge(
    "data_dir_filesystem_size_bytes", "Size of the filesystem holding the data directory.", multiprocess_mode="max"
)
DATA_DIR_FILESYSTEM_AVAIL = Gauge(
    "data_dir_filesystem_avail_bytes", "Free bytes of the filesystem holding the data directory.", multiprocess_mode="min"
)
DATA_DIR_USED = Gauge("data_dir_used_bytes", "Bytes used by the files of the data directory.", multiprocess_mode="max")
MEMORY_LIMIT = Gauge(
    "memory_limit_bytes",
    "Memory this process may use: its cgroup limit, else the machine's memory.",
    multiprocess_mode="max",
)

# Audit chain (`tradestack.audit.chainer`): every chainer process (leader or not) refreshes the backlog
# gauges, so the backlog stays visible when the leader is the process that stopped.
AUDIT_OUTBOX_BACKLOG = Gauge(
    "audit_outbox_backlog",
    "Audit entries committed to the outbox and not yet chained, at this process's last look.",
    multiprocess_mode="livemax",
)
AUDIT_OUTBOX_OLDEST_AGE = Gauge(
    "audit_outbox_oldest_age_seconds",
    "Age of the oldest audit entry waiting in the outbox (the chain's lag), 0 when none waits.",
    multiprocess_mode="livemax",
)
AUDIT_ENTRIES_CHAINED = Counter("audit_entries_chained", "Audit entries moved from the outbox into the hash chain.")
AUDIT_CHAINER_LEADER = Gauge(
    "audit_chainer_leader",
    "1 while this process holds the audit chainer lease (exactly one process should), else 0.",
    multiprocess_mode="livesum",
)
