"""The in-process order path counts an accepted order in `OpenOrders` when the risk state is read next, not when
accepted: every risk state it reads must equal the one of orders counted from their acceptance."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tradestack.domain.marketdata import Side

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delitem(sys.modules, "order_path_inprocess", raising=False)  # a fresh copy, dropped afterwards
    return importlib.import_module("order_path_inprocess")


def _reads(bench: ModuleType, flow: list[Any], *, eager: bool, count: bool = True) -> list[tuple[object, ...]]:
    """What each risk call reads (both sides' states, the open orders' sums); `eager` counts an order when accepted,
    as the path did before; without `count` an accepted order is never counted by `risk` (fills still count it)."""
    seen: list[tuple[object, ...]] = []

    class Recording(bench.Pipeline):  # type: ignore[name-defined, misc]
        def risk(self, order: Any, book: Any, spec: Any) -> Any:
            if not count:
                self._uncounted = None
            accepted = super().risk(order, book, spec)
            if eager and accepted is not None:
                self._uncounted = None
                self.working.put(bench._working(accepted.order, accepted.side))
            return accepted

        def market(self) -> Any:  # `risk` asks for it just before it reads the state
            market, working = super().market(), self.working
            seen.append(
                (
                    self.account.state(side=Side.BUY, orders_in_last_minute=0),
                    self.account.state(side=Side.SELL, orders_in_last_minute=0),
                    working.pending(Side.BUY), working.pending(Side.SELL), working.reserved(market), len(working),
                )
            )  # fmt: skip
            return market

    pipeline = Recording(7)
    pipeline.run(flow)
    if count:
        bench.verify(pipeline, flow)
    return seen


def _resting_flow(bench: ModuleType) -> list[Any]:
    """The benchmark's flow, every third limit priced away from the touch, so that orders rest unfilled."""
    flow = bench.draw_flow(1500, 7)
    return [dataclasses.replace(s, ticks_through=-20 * s.ticks_through) if i % 3 == 0 else s for i, s in enumerate(flow)]


def test_the_state_read_equals_the_state_of_orders_counted_when_accepted(bench: ModuleType) -> None:
    for flow in (bench.draw_flow(1500, 7), _resting_flow(bench)):
        deferred, eager = _reads(bench, flow, eager=False), _reads(bench, flow, eager=True)
        assert len(deferred) == len(eager) > 1000
        assert sum(1 for read in eager if read[-1]) > 500  # open orders counted in most reads
        assert deferred == eager


def test_an_order_left_uncounted_shows(bench: ModuleType) -> None:
    flow = _resting_flow(bench)
    assert _reads(bench, flow, eager=False, count=False) != _reads(bench, flow, eager=True)
