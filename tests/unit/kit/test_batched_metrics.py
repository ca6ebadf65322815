"""`Batched`: the hot routes' metrics written in batches give the samples direct writes give, shared files included."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from tradestack.kit.metrics import Batched

BUCKETS = (0.001, 0.01, 0.1, 1.0)
VALUES = [0.0, 0.0005, 0.001, 0.0010001, 0.01, 0.5, 1.0, 3.0, 1e9, -1.0, math.nan, 0.02, 0.02]


def _pair() -> tuple[CollectorRegistry, CollectorRegistry]:
    return CollectorRegistry(), CollectorRegistry()


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def _assert_same(batched: CollectorRegistry, direct: CollectorRegistry) -> None:
    got, expected = _samples(batched), _samples(direct)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-12), key


async def test_a_flushed_batch_equals_direct_writes() -> None:
    batched_registry, direct_registry = _pair()
    series = {}
    for name, registry in (("batched", batched_registry), ("direct", direct_registry)):
        histogram = Histogram("latency_seconds", "h", ["route"], buckets=BUCKETS, registry=registry)
        counter = Counter("requests", "c", ["route"], registry=registry)
        series[name] = (histogram.labels("a"), histogram.labels("b"), counter.labels("a"))
    batch = Batched(enabled=True)
    for i, value in enumerate(VALUES):
        histogram_a, histogram_b, counter = series["direct"]
        (histogram_a if i % 3 else histogram_b).observe(value)
        counter.inc()
        histogram_a, histogram_b, counter = series["batched"]
        batch.observe(histogram_a if i % 3 else histogram_b, value)
        batch.inc(counter)
    assert _samples(batched_registry)[("requests_total", (("route", "a"),))] == 0  # nothing written yet
    batch.flush()
    _assert_same(batched_registry, direct_registry)
    batch.flush()  # nothing pending: nothing written twice
    _assert_same(batched_registry, direct_registry)


async def test_a_batch_is_written_within_its_seconds_on_the_event_loop() -> None:
    registry = CollectorRegistry()
    counter = Counter("requests", "c", registry=registry)
    batch = Batched(enabled=True, seconds=0.05)
    batch.inc(counter)
    batch.inc(counter, 2)
    assert registry.get_sample_value("requests_total") == 0
    await asyncio.sleep(0.2)
    assert registry.get_sample_value("requests_total") == 3
    batch.inc(counter)  # a new batch, a new timer
    await asyncio.sleep(0.2)
    assert registry.get_sample_value("requests_total") == 4


def test_without_an_event_loop_or_shared_files_writes_are_direct() -> None:
    registry = CollectorRegistry()
    counter = Counter("requests", "c", registry=registry)
    Batched(enabled=True).inc(counter)  # no running loop: nothing could flush it later
    Batched(enabled=False).inc(counter)
    assert registry.get_sample_value("requests_total") == 2


def test_batches_of_several_workers_add_up_in_the_shared_files(tmp_path: Path) -> None:
    # Two processes, each writing its batch to prometheus-client's per-process files; then merged as /metrics does.
    script = textwrap.dedent(
        f"""
        import asyncio
        from prometheus_client import Counter, Histogram
        from tradestack.kit.metrics import Batched
        histogram = Histogram("latency_seconds", "h", buckets={BUCKETS!r})
        counter = Counter("predictions", "c", ["model"]).labels("m1")
        batch = Batched()
        assert batch.enabled

        async def main():
            for value in (0.0005, 0.02, 0.02, 5.0):
                batch.observe(histogram, value)
                batch.inc(counter)
            batch.flush()

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], env=env, check=True)
    merge = (
        "from prometheus_client import CollectorRegistry, generate_latest, multiprocess\n"
        "r = CollectorRegistry(); multiprocess.MultiProcessCollector(r); print(generate_latest(r).decode())"
    )
    text = subprocess.run([sys.executable, "-c", merge], env=env, check=True, capture_output=True, text=True).stdout
    lines = set(text.splitlines())
    assert 'predictions_total{model="m1"} 8.0' in lines
    assert 'latency_seconds_bucket{le="0.001"} 2.0' in lines
    assert 'latency_seconds_bucket{le="0.1"} 6.0' in lines
    assert 'latency_seconds_bucket{le="+Inf"} 8.0' in lines
    assert "latency_seconds_count 8.0" in lines
    assert "latency_seconds_sum 10.081" in lines
