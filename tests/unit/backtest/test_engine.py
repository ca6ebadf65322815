"""The backtester: fill rule, books invariants, risk checks, and that no strategy sees a future bar."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from tradestack.backtest.data import BarSeries, microseconds_of
from tradestack.backtest.engine import BacktestConfig, BacktestResult, permissive_limits, run_backtest
from tradestack.backtest.metrics import compute_metrics, max_drawdown_duration
from tradestack.domain.instruments import Instrument, InstrumentKind
from tradestack.domain.ledger import cash_balances, check_zero_sum, position_quantities
from tradestack.domain.marketdata import Bar, Side
from tradestack.domain.matching import FeeModel
from tradestack.domain.orders import Order, OrderStatus, OrderType, TimeInForce
from tradestack.strategy.api import BarView, Line, LookaheadError, Strategy, StrategyContext
from tradestack.strategy.examples import BollingerReversion, SmaCross

START = datetime(2024, 1, 1, tzinfo=UTC)


def series_of(closes: Sequence[float], symbol: str = "AAPL", *, gap: float = 0.5) -> BarSeries:
    """Daily bars: open = previous close + `gap`, high/low one dollar around, in cents."""
    close = np.round(np.asarray(closes) * 100).astype(np.int64)
    open_ = np.r_[close[0], close[:-1] + round(gap * 100)]
    return BarSeries(
        symbol,
        np.array([microseconds_of(START + timedelta(days=i)) for i in range(len(close))], dtype=np.int64),
        open_,
        np.maximum(open_, close) + 100,
        np.minimum(open_, close) - 100,
        close,
        np.full(len(close), 1_000_000, dtype=np.int64),
        2,
    )


def wave(n: int = 400, seed: int = 7) -> list[float]:
    rng = np.random.default_rng(seed)
    return (100 + 10 * np.sin(np.arange(n) / 15) + np.cumsum(rng.normal(0, 0.5, n))).round(2).tolist()


class BuyOnce(Strategy):
    """Buys `quantity` at the close of bar `at` (a market order, or a limit order at `limit`)."""

    name = "buy_once"

    def __init__(self, at: int, quantity: Decimal, limit: Decimal | None = None) -> None:
        super().__init__(["AAPL"])
        self.at, self.quantity, self.limit = at, quantity, limit
        self.updates: list[Order] = []
        self.sent: Order | None = None

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        if bar.index == self.at:
            if self.limit is None:
                self.sent = ctx.submit("AAPL", Side.BUY, self.quantity)
            else:
                self.sent = ctx.submit(
                    "AAPL",
                    Side.BUY,
                    self.quantity,
                    type=OrderType.LIMIT,
                    limit_price=self.limit,
                    time_in_force=TimeInForce.GTC,
                )

    def on_order_update(self, ctx: StrategyContext, order: Order) -> None:
        self.updates.append(order)


def test_market_order_fills_at_next_bar_open_with_fee_in_cents() -> None:
    series = series_of([100, 101, 102, 103])
    strategy = BuyOnce(at=1, quantity=Decimal(7))
    result = run_backtest(strategy, [series], BacktestConfig(fee=FeeModel(bps=Decimal(10), places=2)))
    (trade,) = result.trades
    assert trade.price == Decimal("101.50")  # bar 2 opens at bar 1's close + 0.50
    assert trade.ts == START + timedelta(days=2)
    assert trade.fee == Decimal("0.71")  # 7 x 101.50 x 10 bps = 0.7105
    assert result.final_cash == Decimal(100_000) - Decimal("710.50") - Decimal("0.71")
    assert result.final_equity == result.final_cash + 7 * Decimal("103.00")
    assert [o.status for o in strategy.updates] == [OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.FILLED]


def test_order_sent_on_last_bar_stays_open() -> None:
    result = run_backtest(BuyOnce(at=3, quantity=Decimal(1)), [series_of([100, 101, 102, 103])])
    assert result.trades == ()
    assert [o.status for o in result.orders] == [OrderStatus.ACCEPTED]


def test_limit_order_fills_when_the_low_reaches_it() -> None:
    series = series_of([100, 100, 98, 97])  # lows: 99.00 (bar 1), 97.00 (bar 2: open 100.50, close 98)
    result = run_backtest(BuyOnce(at=0, quantity=Decimal(5), limit=Decimal("97.50")), [series])
    (trade,) = result.trades
    assert trade.ts == START + timedelta(days=2)
    assert trade.price <= Decimal("97.50")


def test_buy_beyond_buying_power_is_denied_by_the_risk_checks() -> None:
    strategy = BuyOnce(at=1, quantity=Decimal(10_000))  # 10 000 x ~101 > 100 000
    result = run_backtest(strategy, [series_of([100, 101, 102, 103])])
    assert result.trades == ()
    (order,) = result.orders
    assert order.status is OrderStatus.DENIED
    assert order.reason is not None
    assert order.reason.startswith("buying_power")
    assert strategy.updates[-1].status is OrderStatus.DENIED


def test_books_hold_the_ledger_invariants() -> None:
    result = run_backtest(
        SmaCross(["AAPL"], fast=5, slow=20), [series_of(wave())], BacktestConfig(fee=FeeModel(bps=Decimal(10), places=2))
    )
    assert len(result.trades) > 4
    check_zero_sum(result.journal)
    assert cash_balances(result.journal)["USD"] == result.final_cash
    held = {s: q for s, q in position_quantities(result.journal).items() if q}
    assert held == {s: h.quantity for s, h in result.books.holdings.items()}
    assert result.fees_paid == sum((t.fee for t in result.trades), Decimal(0))
    assert math.isclose(result.equity[-1], float(result.final_equity), abs_tol=1e-6)


# -- no future data -------------------------------------------------------------------------------


class Peek(Strategy):
    """Buys when tomorrow's close is higher: possible only by looking ahead."""

    name = "peek"

    def __init__(self, how: str) -> None:
        super().__init__(["AAPL"])
        self.how = how

    def on_start(self, ctx: StrategyContext) -> None:
        self.sma = ctx.indicators.sma("AAPL", 3)

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        history = ctx.history("AAPL")
        if self.how == "close":
            tomorrow = history.close[1]
        elif self.how == "bar":
            tomorrow = float(history.bar(1).close)
        elif self.how == "indicator":
            tomorrow = self.sma[1]
        else:
            tomorrow = history.close.window(2)[-1]  # the window ends now: no future in it
        if tomorrow > bar.close and ctx.position("AAPL") == 0:
            ctx.submit("AAPL", Side.BUY, Decimal(1))


@pytest.mark.parametrize("how", ["close", "bar", "indicator"])
def test_strategy_peeking_at_the_next_bar_fails(how: str) -> None:
    with pytest.raises(LookaheadError, match="future"):
        run_backtest(Peek(how), [series_of(wave(50))])


def test_window_ends_at_the_current_bar() -> None:
    run_backtest(Peek("window"), [series_of(wave(50))])  # runs; it never sees tomorrow


class Cheat(SmaCross):
    """SMA crossover that also reads tomorrow's close behind the API's back."""

    name = "cheat"

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        closes = ctx.history(bar.symbol).close
        values: list[float] = closes._values  # type: ignore[assignment]
        if bar.index + 1 < len(values) and values[bar.index + 1] > bar.close:
            ctx.submit(bar.symbol, Side.BUY, Decimal(1))
        super().on_bar(ctx, bar)


def decisions(result: BacktestResult, until: datetime) -> list[tuple[str, str, Decimal, datetime]]:
    return [
        (o.request.symbol, o.request.side.value, o.request.quantity, o.created_at) for o in result.orders if o.created_at <= until
    ]


def leaks_future(strategy: type[Strategy], closes: list[float]) -> bool:
    """Whether the strategy's orders before some bar change when later bars are cut off."""
    full = series_of(closes)
    complete = run_backtest(strategy(["AAPL"]), [full])  # type: ignore[call-arg]
    for cut in range(40, len(closes), 37):
        cut_short = run_backtest(strategy(["AAPL"]), [full.head(cut)])  # type: ignore[call-arg]
        last = START + timedelta(days=cut - 1)
        if decisions(cut_short, last) != decisions(complete, last):
            return True
    return False


@pytest.mark.parametrize("strategy", [SmaCross, BollingerReversion])
def test_decisions_never_depend_on_later_bars(strategy: type[Strategy]) -> None:
    assert not leaks_future(strategy, wave())


def test_the_cut_off_check_catches_a_strategy_that_reads_ahead() -> None:
    assert leaks_future(Cheat, wave())


def test_line_refuses_future_offsets() -> None:
    from tradestack.strategy.api import Cursor

    cursor = Cursor()
    line = Line("close", [1.0, 2.0, 3.0], cursor)
    cursor.index = 1
    assert (line[0], line[-1], len(line), line.window(5)) == (2.0, 1.0, 2, (1.0, 2.0))
    with pytest.raises(LookaheadError):
        line[1]
    with pytest.raises(IndexError):
        line[-2]


# -- metrics --------------------------------------------------------------------------------------


def test_metrics_of_a_run() -> None:
    result = run_backtest(
        SmaCross(["AAPL"], fast=5, slow=20), [series_of(wave())], BacktestConfig(fee=FeeModel(bps=Decimal(10), places=2))
    )
    metrics = compute_metrics(result)
    closing = [t for t in result.trades if t.side.value == "sell"]
    assert metrics.round_trips == len(closing)
    assert metrics.hit_rate == sum(1 for t in closing if t.realized > t.fee) / len(closing)
    assert metrics.final_equity == result.final_equity
    assert math.isclose(metrics.total_return, float(result.final_equity) / 100_000 - 1, rel_tol=1e-9)
    assert metrics.max_drawdown <= 0
    assert 0 < metrics.exposure < 1


def test_max_drawdown_duration_counts_periods_below_the_peak() -> None:
    assert max_drawdown_duration(np.array([1.0, 2.0, 1.5, 1.8, 2.0, 2.5, 2.4])) == 2


# -- several symbols, cancels, bad orders -----------------------------------------------------------


def test_two_symbols_trade_on_one_timeline_and_the_books_agree() -> None:
    aapl = series_of(wave(300, seed=1), "AAPL")
    msft = series_of(wave(250, seed=2), "MSFT")
    shifted = dataclasses.replace(msft, ts=msft.ts + 43_200_000_000)
    config = BacktestConfig(fee=FeeModel(bps=Decimal(10), places=2))
    result = run_backtest(SmaCross(["AAPL", "MSFT"], fast=5, slow=20), [aapl, shifted], config)
    assert result.bars == 550
    assert {t.symbol for t in result.trades} == {"AAPL", "MSFT"}
    assert list(result.equity_ts) == sorted(result.equity_ts)
    check_zero_sum(result.journal)
    assert cash_balances(result.journal)["USD"] == result.final_cash
    assert math.isclose(result.equity[-1], float(result.final_equity), abs_tol=1e-6)
    for symbol, series in (("AAPL", aapl), ("MSFT", shifted)):
        alone = run_backtest(SmaCross([symbol], fast=5, slow=20), [series], config)
        assert [(t.ts, t.price) for t in alone.trades] == [(t.ts, t.price) for t in result.trades if t.symbol == symbol]


def _equity_from_the_trades(result: BacktestResult, series: Sequence[BarSeries], capital: Decimal) -> list[Decimal]:
    """Cash plus each position at its symbol's last close after every distinct bar time, in Decimals from the trades."""
    bars = sorted((int(ts), s.symbol, s.price(int(close))) for s in series for ts, close in zip(s.ts, s.close, strict=True))
    cash, held, marks, points = capital, dict[str, Decimal](), dict[str, Decimal](), dict[int, Decimal]()
    trades = list(result.trades)
    for ts, symbol, close in bars:
        while trades and microseconds_of(trades[0].ts) <= ts:
            trade = trades.pop(0)
            signed = trade.quantity if trade.side is Side.BUY else -trade.quantity
            cash -= signed * trade.price + trade.fee
            held[trade.symbol] = held.get(trade.symbol, Decimal(0)) + signed
        marks[symbol] = close
        points[ts] = cash + sum((q * marks[s] for s, q in held.items() if q), Decimal(0))
    return list(points.values())


@pytest.mark.parametrize("symbols", [("AAPL",), ("AAPL", "MSFT")])
def test_the_equity_curve_is_the_books_at_each_bars_close(symbols: tuple[str, ...]) -> None:
    series = [
        series_of(wave(300, seed=1), "AAPL"),
        dataclasses.replace(msft := series_of(wave(250, seed=2), "MSFT"), ts=msft.ts + 43_200_000_000),
    ]
    series = series[: len(symbols)]
    config = BacktestConfig(fee=FeeModel(bps=Decimal(10), places=2))
    result = run_backtest(SmaCross(list(symbols), fast=3, slow=8), series, config)
    assert len(result.trades) >= 4
    expected = _equity_from_the_trades(result, series, config.capital)
    assert len(result.equity) == len(expected)
    assert all(math.isclose(got, float(want), abs_tol=1e-6) for got, want in zip(result.equity, expected, strict=True))


class RestThenCancel(Strategy):
    name = "rest_then_cancel"

    def __init__(self) -> None:
        super().__init__(["AAPL"])
        self.order_id = ""
        self.canceled: bool | None = None

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        if bar.index == 0:
            order = ctx.submit(
                "AAPL", Side.BUY, Decimal(1), type=OrderType.LIMIT, limit_price=Decimal(1), time_in_force=TimeInForce.GTC
            )
            self.order_id = order.id
        elif bar.index == 2:
            assert [o.id for o in ctx.open_orders("AAPL")] == [self.order_id]
            self.canceled = ctx.cancel(self.order_id)
            assert ctx.open_orders() == ()
            assert not ctx.cancel(self.order_id)


def test_strategy_cancels_a_resting_order() -> None:
    strategy = RestThenCancel()
    result = run_backtest(strategy, [series_of([100, 101, 102, 103])])
    assert strategy.canceled is True
    (order,) = result.orders
    assert order.status is OrderStatus.CANCELED
    assert result.trades == ()


class Sloppy(Strategy):
    name = "sloppy"

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        ctx.submit("AAPL", Side.BUY, Decimal(0))


def test_an_invalid_order_stops_the_run_with_what_is_wrong() -> None:
    from tradestack.strategy.api import StrategyError

    with pytest.raises(StrategyError, match="quantity must be positive"):
        run_backtest(Sloppy(["AAPL"]), [series_of([100, 101])])


def test_fractional_volumes_stay_exact_from_the_bars_to_the_participation_cap() -> None:
    """A volume a float cannot hold (9876543.123456789) caps a fill at exactly that quantity."""
    volume = Decimal("9876543.123456789")
    assert Decimal(repr(float(volume))) != volume  # what the float path would have used
    coin = Instrument("XBT", InstrumentKind.CRYPTO, "KRAKEN", "Bitcoin", "USD", "XBT", Decimal("0.01"), Decimal("1e-9"))
    bars = [Bar("XBT", START + timedelta(days=i), Decimal(1), Decimal(1), Decimal(1), Decimal(1), volume) for i in range(3)]
    series = BarSeries.from_bars("XBT", bars)
    assert series.volume_places == 9
    assert series.bar(1).volume == volume
    assert series.volume_of(2) == volume

    class BuyAll(Strategy):
        name = "buy_all"

        def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
            if bar.index == 0:
                ctx.submit("XBT", Side.BUY, Decimal(20_000_000))

    config = BacktestConfig(capital=Decimal(10**9), participation_rate=Decimal(1))
    result = run_backtest(BuyAll(["XBT"]), [series], config, {"XBT": coin})
    assert result.trades[0].quantity == volume  # the first print's size, exactly
    assert sum((t.quantity for t in result.trades), Decimal(0)) == 2 * volume  # bar 1 and bar 2, one print each


def test_series_refuse_float_columns() -> None:
    with pytest.raises(TypeError, match="volume must be int64"):
        BarSeries("AAPL", np.array([0], dtype=np.int64), *(np.array([1], dtype=np.int64),) * 4, np.array([1.5]), 2)


class RoundTrips(Strategy):
    """At each bar in `plan`, a market order for 100 AAPL on the side it names."""

    name = "round_trips"

    def __init__(self, plan: dict[int, Side]) -> None:
        super().__init__(["AAPL"])
        self.plan = plan

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        side = self.plan.get(bar.index)
        if side is not None:
            ctx.submit("AAPL", side, Decimal(100))


def test_the_kept_risk_state_counts_the_days_realized_loss_and_the_exposure_at_the_last_close() -> None:
    # Bar 0 buys (filled at bar 1's open, 100.50), bar 1 sells (filled at bar 2's open, 90.50: 1 000 lost on day 2);
    # day 2's buy meets the daily loss limit, day 3's does not (a new day), day 4's meets the gross exposure limit:
    # 100 held at the last close 95 is 9 500 of 15 000, and 100 more at that mark would take it to 19 000.
    limits = dataclasses.replace(permissive_limits("USD"), daily_loss_limit=Decimal(500), max_gross_exposure=Decimal(15_000))
    plan = {0: Side.BUY, 1: Side.SELL, 2: Side.BUY, 3: Side.BUY, 4: Side.BUY}
    result = run_backtest(RoundTrips(plan), [series_of([100, 90, 94, 95, 95, 96])], BacktestConfig(limits=limits))
    statuses = [(o.status, (o.reason or "").split(":")[0]) for o in result.orders]
    assert statuses == [
        (OrderStatus.FILLED, ""),
        (OrderStatus.FILLED, ""),
        (OrderStatus.DENIED, "daily_loss"),
        (OrderStatus.FILLED, ""),
        (OrderStatus.DENIED, "max_gross_exposure"),
    ]


_UNTRADED = ("IBM", "MSFT", "NVDA", "TSLA")


class _HoldThenAdd(Strategy):
    """Buys 100 GOOG on its bar of day 1 and 60 AAPL on AAPL's bar of day 7; on every bar of the other symbols, sells one
    of it, which is never held (denied: no short selling; it only makes the risk checks look at the market)."""

    name = "hold-then-add"

    def __init__(self) -> None:
        super().__init__(("AAPL", "GOOG", *_UNTRADED))
        self.orders: list[Order] = []
        self.probes: list[Order] = []

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        if (bar.symbol, bar.index) == ("GOOG", 1):
            self.orders.append(ctx.submit("GOOG", Side.BUY, Decimal(100)))
        elif (bar.symbol, bar.index) == ("AAPL", 7):
            self.orders.append(ctx.submit("AAPL", Side.BUY, Decimal(60)))
        elif bar.symbol in _UNTRADED:
            self.probes.append(ctx.submit(bar.symbol, Side.SELL, Decimal(1)))


@pytest.mark.parametrize(("limit", "accepted"), [(18_000, False), (22_000, True)])
def test_the_risk_checks_mark_a_holding_at_its_latest_close_after_bars_with_no_order(limit: int, accepted: bool) -> None:
    """GOOG, bought at 50 (5,000), closes at 150 from day 5, and no order is sent on its bars; AAPL's order on day 7
    (6,000) sees a gross exposure of 15,000 + 6,000: above a limit of 18,000 it is denied, under 22,000 accepted. A mark
    left at GOOG's close when an order last looked at it (50: 11,000 in all) would pass it. The other symbols' orders
    (on four of the six bars of each day) keep each look at the market fewer bars after the last than there are
    symbols, so only the symbols with a bar since are looked at again."""
    goog = [50.0] * 5 + [150.0] * 5
    series = [series_of([100.0] * 10, "AAPL", gap=0), series_of(goog, "GOOG", gap=0)]
    series += [series_of([40.0] * 10, symbol, gap=0) for symbol in _UNTRADED]
    strategy = _HoldThenAdd()
    limits = dataclasses.replace(permissive_limits("USD"), max_gross_exposure=Decimal(limit))
    result = run_backtest(strategy, series, BacktestConfig(limits=limits))
    goog_order, aapl_order = strategy.orders
    assert goog_order.status is OrderStatus.ACCEPTED
    assert position_quantities(result.journal)["GOOG"] == 100
    assert {probe.status for probe in strategy.probes} == {OrderStatus.DENIED}
    if accepted:
        assert aapl_order.status is OrderStatus.ACCEPTED
    else:
        assert aapl_order.status is OrderStatus.DENIED
        assert "gross exposure would rise from 15,000.00 USD to 21,000.00 USD" in (aapl_order.reason or "")


class _Seen(Strategy):
    """Notes each bar it is shown, as (symbol, index)."""

    name = "seen"

    def __init__(self, symbols: Sequence[str]) -> None:
        super().__init__(symbols)
        self.bars: list[tuple[str, int]] = []

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        self.bars.append((bar.symbol, bar.index))


def test_bars_of_several_symbols_come_in_time_order_ties_in_the_order_the_series_were_given() -> None:
    """IBM (2 bars) and AAPL (3) close at midnight, GOOG (3) at noon: a day's IBM bar before its AAPL bar (IBM's series
    is given first), both before GOOG's."""
    half_day_us = 12 * 3600 * 1_000_000
    goog = series_of([50.0] * 3, "GOOG")
    goog = dataclasses.replace(goog, ts=goog.ts + half_day_us)
    series = [series_of([40.0] * 2, "IBM"), series_of([100.0] * 3, "AAPL"), goog]
    strategy = _Seen(("IBM", "AAPL", "GOOG"))
    result = run_backtest(strategy, series)
    assert strategy.bars == [
        ("IBM", 0), ("AAPL", 0), ("GOOG", 0), ("IBM", 1), ("AAPL", 1), ("GOOG", 1), ("AAPL", 2), ("GOOG", 2),
    ]  # fmt: skip
    assert result.bars == 8
