"""SLO and duration parsing for load tests and release specs."""

from __future__ import annotations

import pytest

from tradestack.deploy.slo import SloError, parse_duration, parse_slos


def test_parse_slos_reads_latency_error_rate_and_throughput() -> None:
    slos = parse_slos("p95=200ms, error_rate=1%, rps=50, p99=1.5s")
    assert [(s.metric, s.threshold) for s in slos] == [("p95", 0.2), ("error_rate", 0.01), ("rps", 50.0), ("p99", 1.5)]
    assert slos[0].met_by(0.2)
    assert not slos[0].met_by(0.201)
    assert slos[2].met_by(50.0)
    assert not slos[2].met_by(49.9)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p97=1s", "unknown SLO 'p97'"),
        ("p95", "write NAME=VALUE"),
        ("error_rate=150%", "between 0% and 100%"),
        ("rps=fast", "rps is a number"),
        ("p95=soon", "not a duration"),
        ("", "no SLO given"),
    ],
)
def test_parse_slos_names_what_to_fix(text: str, message: str) -> None:
    with pytest.raises(SloError, match=message):
        parse_slos(text)


def test_parse_duration_units() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2m") == 120
    assert parse_duration("3") == 3
    assert parse_duration("3", default_unit="ms") == 0.003
