"""The paper host's pieces without a database: bars from quotes, live indicators, deterministic ids, fills."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from tradestack.backtest.data import BarSeries
from tradestack.backtest.indicators import SeriesIndicators
from tradestack.core.clock import SimClock
from tradestack.domain.marketdata import Bar, Quote, Side
from tradestack.domain.orders import (
    FillEvent,
    Liquidity,
    Order,
    OrderAccepted,
    OrderFilled,
    OrderRequest,
    OrderSubmitted,
    OrderType,
    TimeInForce,
)
from tradestack.strategy.api import Cursor, LookaheadError
from tradestack.strategy.examples import SmaCross
from tradestack.strategy.live import LiveMarket
from tradestack.strategy.paper import PaperHost
from tradestack.strategy.runner import BarBuilder

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def _bars(count: int, seed: int = 3) -> list[Bar]:
    rng = random.Random(seed)
    price = Decimal("100.00")
    bars = []
    for n in range(count):
        close = max(Decimal("1.00"), price + Decimal(rng.randint(-150, 150)) / 100)
        high, low = max(price, close) + Decimal("0.05"), min(price, close) - Decimal("0.05")
        bars.append(Bar("AAPL", T0 + timedelta(minutes=n), price, high, low, close, Decimal(1000)))
        price = close
    return bars


def test_live_indicators_equal_the_backtesters_bit_for_bit() -> None:
    bars = _bars(400)
    series = BarSeries.from_bars("AAPL", bars)
    cursor = Cursor()
    backtest = SeriesIndicators({"AAPL": series}, {"AAPL": cursor}, {"AAPL": series.floats(series.close)})
    market = LiveMarket(("AAPL",))
    live_sma = market.indicators.sma("AAPL", 7)
    live_bands = market.indicators.bollinger("AAPL", 20, 2.0)
    for bar in bars:
        market.add_bar(bar)
    cursor.index = len(bars) - 1
    want_sma = backtest.sma("AAPL", 7)
    want_bands = backtest.bollinger("AAPL", 20, 2.0)
    for ago in range(-len(bars) + 1, 1):
        assert np.array_equal(live_sma[ago], want_sma[ago], equal_nan=True), ago
        for live, want in zip(
            (live_bands.middle, live_bands.upper, live_bands.lower),
            (want_bands.middle, want_bands.upper, want_bands.lower),
            strict=True,
        ):
            assert np.array_equal(live[ago], want[ago], equal_nan=True), (ago, live.name)
    with pytest.raises(LookaheadError):
        live_sma[1]


def test_an_indicator_declared_late_is_filled_in_from_the_bars_already_seen() -> None:
    bars = _bars(30)
    market = LiveMarket(("AAPL",))
    for bar in bars[:20]:
        market.add_bar(bar)
    late = market.indicators.sma("AAPL", 5)
    for bar in bars[20:]:
        market.add_bar(bar)
    closes = [bar.close for bar in bars]
    for ago in range(-25, 1):
        end = len(bars) + ago
        assert late[ago] == float(sum(closes[end - 5 : end]) / 5)


def _quote(ts: datetime, last: str) -> Quote:
    price = Decimal(last)
    return Quote("AAPL", price - 1, price + 1, Decimal(1), Decimal(1), price, Decimal(10), ts)


def test_bars_close_on_the_next_interval_or_after_their_end_and_late_quotes_are_ignored() -> None:
    builder = BarBuilder("AAPL", 60)
    assert builder.add(_quote(T0, "100")) is None
    assert builder.add(_quote(T0 + timedelta(seconds=30), "103")) is None
    assert builder.add(_quote(T0 + timedelta(seconds=59), "99")) is None
    closed = builder.add(_quote(T0 + timedelta(seconds=61), "101"))
    assert closed == Bar("AAPL", T0, Decimal(100), Decimal(103), Decimal(99), Decimal(99), Decimal(30))
    assert builder.add(_quote(T0 + timedelta(seconds=10), "500")) is None  # late: its bar was handled
    assert builder.due(T0 + timedelta(seconds=120)) is None  # the grace second has not passed
    second = builder.due(T0 + timedelta(seconds=121))
    assert second is not None
    assert second.ts == T0 + timedelta(seconds=60)
    assert second.close == Decimal(101)
    assert builder.add(_quote(T0 + timedelta(seconds=119), "1")) is None  # late for the bar closed by time


class _Port:
    """Accepts every order; remembers the client order ids."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def submit(
        self,
        client_order_id: str,
        symbol: str,
        side: Side,
        quantity: Decimal,
        type: OrderType,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        time_in_force: TimeInForce,
    ) -> Order:
        self.sent.append(client_order_id)
        request = OrderRequest(
            client_order_id=client_order_id,
            account_id="acc",
            symbol=symbol,
            side=side,
            type=type,
            quantity=quantity,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
        )
        return Order.from_events(
            [
                OrderSubmitted(order_id=client_order_id, ts=T0, request=request),
                OrderAccepted(order_id=client_order_id, ts=T0),
            ]
        )

    def cancel(self, order_id: str) -> bool:
        return False


def _filled(order: Order, price: str) -> tuple[Order, list[FillEvent]]:
    fill = OrderFilled(
        order_id=order.id,
        ts=T0 + timedelta(minutes=1),
        fill_id=f"{order.id}-1",
        quantity=order.request.quantity,
        price=Decimal(price),
        fee=Decimal("0.50"),
        fee_currency="USD",
        liquidity=Liquidity.TAKER,
    )
    return order.apply(fill), [fill]


def test_sma_cross_on_the_host_sends_deterministic_ids_and_rebuilds_its_position_from_fills() -> None:
    closes = ["100", "100", "100", "100", "110", "120", "130", "90", "80"]
    bars = [Bar("AAPL", T0 + timedelta(minutes=n), *(Decimal(c),) * 4, Decimal(1)) for n, c in enumerate(closes)]
    port = _Port()
    host = PaperHost(
        SmaCross(["AAPL"], fast=2, slow=3, quantity=Decimal(5)),
        prefix="st.abc.",
        port=port,
        clock=SimClock(T0),
        base_currency="USD",
        account_id="acc",
    )
    host.sync([], Decimal(10_000), notify=False)
    host.start()
    for bar in bars[:6]:
        host.on_bar(bar)
    buy_key = f"st.abc.b{int(bars[4].ts.timestamp())}.1"
    assert port.sent == [buy_key]
    assert host.position("AAPL") == 0
    assert len(host.open_orders("AAPL")) == 1
    bought = host.orders[0]
    host.sync([_filled(bought, "121")], Decimal("9394.50"))
    assert host.position("AAPL") == Decimal(5)
    assert host.open_orders() == ()
    assert host.cash == Decimal("9394.50")
    host.sync([_filled(bought, "121")], Decimal("9394.50"))  # the same fill again: counted once
    assert host.position("AAPL") == Decimal(5)
    for bar in bars[6:]:
        host.on_bar(bar)
    assert port.sent == [buy_key, f"st.abc.b{int(bars[7].ts.timestamp())}.1"]


def test_a_restored_history_gives_the_indicators_and_indexes_of_an_uninterrupted_one() -> None:
    bars = _bars(120)
    whole = LiveMarket(("AAPL",))
    whole_sma = whole.indicators.sma("AAPL", 20)
    for bar in bars[:100]:
        whole.add_bar(bar)
    restarted = LiveMarket(("AAPL",))
    restarted.restore("AAPL", bars[40:100], before=40)  # the newest stored bars, 40 older ones not given
    restarted_sma = restarted.indicators.sma("AAPL", 20)  # declared after the restore, as in on_start
    for bar in bars[100:]:
        want, got = whole.add_bar(bar), restarted.add_bar(bar)
        assert got.index == want.index
        assert got.close == want.close
        assert restarted_sma[0] == whole_sma[0]
        assert restarted_sma[-5] == whole_sma[-5]
    restarted.restore("AAPL", bars[:10], before=0)  # a retried start does not add bars twice
    assert len(restarted.histories["AAPL"].bars) == 80


def test_a_restarted_bar_builder_ignores_quotes_of_a_bar_already_handled() -> None:
    builder = BarBuilder("AAPL", 60)
    handled = Bar("AAPL", T0, Decimal(100), Decimal(100), Decimal(100), Decimal(100), Decimal(1))
    builder.resume_after(handled)
    late = Quote("AAPL", Decimal(99), Decimal(101), Decimal(1), Decimal(1), Decimal(100), Decimal(1), T0 + timedelta(seconds=30))
    assert builder.add(late) is None
    assert builder.current is None
    fresh = Quote("AAPL", Decimal(99), Decimal(101), Decimal(1), Decimal(1), Decimal(100), Decimal(1), T0 + timedelta(seconds=61))
    assert builder.add(fresh) is None
    assert builder.current is not None


def test_the_live_history_keeps_exact_integers_and_the_backtesters_floats() -> None:
    bars = _bars(50)
    series = BarSeries.from_bars("AAPL", bars)
    market = LiveMarket(("AAPL",))
    for bar in bars:
        market.add_bar(bar)
    history = market.histories["AAPL"]
    scale = 10 ** (10 - series.places)
    assert history.scaled["close"] == [int(v) * scale for v in series.close]
    assert history.close.window(50) == tuple(series.floats(series.close).tolist())
    assert history.volume.window(50) == tuple(series.volume_floats().tolist())
