"""Shipped history loaded once per run, stored into the database under test on demand."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence

import pytest

from tradestack.kit.runtime import Runtime
from tradestack.marketdata import datasets
from tradestack.marketdata.flows import ImportResult, import_datasets


@functools.cache
def shipped(name: str) -> datasets.LoadedDataSet:
    """A shipped data set, read and validated once per test run."""
    return datasets.load(name)


StoreHistory = Callable[[str, Sequence[str]], Awaitable[ImportResult]]


@pytest.fixture
def store_history(runtime: Runtime) -> StoreHistory:
    """Store some symbols of a shipped data set into the database under test."""

    async def store(name: str, symbols: Sequence[str]) -> ImportResult:
        loaded = shipped(name)
        subset = datasets.LoadedDataSet(loaded.dataset, {k: v for k, v in loaded.series.items() if k[0] in symbols})
        assert subset.series, f"{name} has none of {symbols}"
        return await import_datasets(runtime, [subset])

    return store
