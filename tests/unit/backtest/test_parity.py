"""The parity judge without a paper stack: equal rows match; a fill or an order that differs without a cause does not."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tradestack.backtest.data import BarSeries
from tradestack.backtest.engine import BacktestConfig, run_backtest
from tradestack.backtest.parity import OrderRow, Verdict, backtest_orders, compare, paper_orders
from tradestack.domain.instruments import instrument
from tradestack.domain.marketdata import Bar
from tradestack.domain.orders import Order, OrderRequest, OrderSubmitted, OrderType, Side
from tradestack.strategy.api import StrategyError
from tradestack.strategy.examples import SmaCross

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
AAPL = instrument("AAPL")


def _rows() -> tuple[list[OrderRow], list[Bar]]:
    rng = random.Random(7)
    price = Decimal("100.00")
    bars = []
    for n in range(300):
        close = max(Decimal("1.00"), price + Decimal(rng.randint(-80, 80)) / 100)
        high, low = max(price, close) + Decimal("0.05"), min(price, close) - Decimal("0.05")
        bars.append(Bar("AAPL", T0 + timedelta(minutes=n), price, high, low, close, Decimal(100_000)))
        price = close
    result = run_backtest(SmaCross(["AAPL"], fast=3, slow=8), [BarSeries.from_bars("AAPL", bars)], BacktestConfig())
    rows = backtest_orders(result)
    assert len(rows) >= 6
    return rows, bars


def _judge(backtest: list[OrderRow], paper: list[OrderRow], bars: list[Bar]) -> list[Verdict]:
    found = compare(backtest, paper, [], AAPL, BacktestConfig(), bar_seconds=60, last_bar=bars[-1].ts)
    return [row.verdict for row in found]


def test_equal_orders_and_fills_match() -> None:
    rows, bars = _rows()
    assert _judge(rows, list(rows), bars) == [Verdict.MATCHED] * len(rows)


def test_a_fill_a_cent_off_is_unexplained_when_the_models_do_not_give_it() -> None:
    rows, bars = _rows()
    paper = list(rows)
    first = paper[0]
    paper[0] = replace(first, fills=(replace(first.fills[0], price=first.fills[0].price + Decimal("0.01")),))
    found = compare(rows, paper, [], AAPL, BacktestConfig(), bar_seconds=60, last_bar=bars[-1].ts)
    assert found[0].verdict is Verdict.UNEXPLAINED
    assert "models" in found[0].causes[0].detail
    assert all(row.verdict is Verdict.MATCHED for row in found[1:])


def test_an_order_one_host_did_not_send_is_unexplained_and_so_is_what_follows_from_it() -> None:
    rows, bars = _rows()
    found = compare(rows, rows[2:], [], AAPL, BacktestConfig(), bar_seconds=60, last_bar=bars[-1].ts)
    assert found[0].verdict is Verdict.UNEXPLAINED  # the paper host never sent the buy: same position, nothing working
    # nor the sell after it: the positions differ then, but because of an unexplained difference
    assert found[1].verdict is Verdict.UNEXPLAINED
    assert [c.name for c in found[1].causes] == ["position", "unexplained"]
    assert all(row.verdict is Verdict.MATCHED for row in found[2:])


def test_paper_orders_are_keyed_by_the_bar_their_client_order_id_names() -> None:
    def order(client_order_id: str) -> Order:
        request = OrderRequest(
            client_order_id=client_order_id,
            account_id="a",
            symbol="AAPL",
            side=Side.BUY,
            type=OrderType.MARKET,
            quantity=Decimal(1),
        )
        return Order.from_events([OrderSubmitted(order_id=f"id-{client_order_id}", ts=T0, request=request)])

    epoch = int(T0.timestamp())
    rows = paper_orders([(order(f"st.x.b{epoch}.2"), []), (order(f"st.x.b{epoch}.1"), [])], "st.x.")
    assert [(row.decided_at, row.rank, row.order_id) for row in rows] == [
        (T0, 1, f"id-st.x.b{epoch}.1"),
        (T0, 2, f"id-st.x.b{epoch}.2"),
    ]
    with pytest.raises(StrategyError, match="bar's close"):
        paper_orders([(order(f"st.x.q{epoch}.1"), [])], "st.x.")
