"""The access log's line equals what structlog renders for the same request, and honours the level."""

from __future__ import annotations

import subprocess
import sys

import orjson

SCRIPT = """
import structlog
from tradestack.kit.logging import ACCESS_LOG, configure_logging, get_logger

fields = dict(route="/api/x/{id}", method="GET", path="/api/x/1", status=404, duration_ms=0.125)
configure_logging("info", json=True)
structlog.contextvars.bind_contextvars(request_id="r-1")
get_logger("tradestack.access").info("request", **fields)
ACCESS_LOG.request("r-1", **dict(fields))
configure_logging("warning", json=True)
ACCESS_LOG.request("r-2", **dict(fields))
"""


def test_access_line_is_the_line_structlog_writes() -> None:
    output = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, check=True, timeout=60).stdout
    lines = output.splitlines()
    assert len(lines) == 2  # nothing at level warning
    by_structlog, ours = (orjson.loads(line) for line in lines)
    assert list(ours) == list(by_structlog)  # same keys in the same order
    assert ours.pop("ts").endswith("Z")
    by_structlog.pop("ts")
    assert ours == by_structlog
