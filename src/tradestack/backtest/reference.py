"""The independent engine we check the backtester against: the SMA crossover in backtrader.

Backtrader (a dev dependency, imported when called) runs with its own data feed, SMA, broker and
cash; only the rules are shared: decide at a bar's close, a market order fills at the next bar's
open, long `quantity` on a fast-over-slow cross and flat on the cross back, fee `fee_bps` of the
notional rounded half-even to the cent per execution. Used by the acceptance test and by
`benchmarks/backtest.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class ReferenceFill:
    """One execution reported by backtrader, prices and fees as exact Decimals of its floats."""

    ts: datetime
    side: str
    quantity: int
    price: Decimal
    fee: Decimal


@dataclass(frozen=True, slots=True)
class ReferenceRun:
    """Backtrader's fills and final portfolio value (rounded half-even to the cent)."""

    fills: tuple[ReferenceFill, ...]
    final_equity: Decimal


def cent_fee(notional: Decimal, bps: Decimal) -> Decimal:
    """`bps` of `notional`, rounded half-even to the cent."""
    return (notional * bps / Decimal(10_000)).quantize(_CENT, rounding=ROUND_HALF_EVEN)


def run_backtrader_sma(frame: Any, *, fast: int, slow: int, quantity: int, capital: Decimal, fee_bps: Decimal) -> ReferenceRun:
    """Run the SMA crossover over `frame` (a pandas DataFrame: naive UTC index; open, high, low, close, volume)."""
    import backtrader as bt  # type: ignore[import-untyped]

    class CentFee(bt.CommInfoBase):  # type: ignore[misc]
        params = (("stocklike", True), ("commtype", bt.CommInfoBase.COMM_FIXED))

        def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
            return float(cent_fee(abs(Decimal(repr(size))) * Decimal(repr(price)), fee_bps))

    fills: list[ReferenceFill] = []

    class SmaCross(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.fast = bt.indicators.SMA(self.data.close, period=fast)
            self.slow = bt.indicators.SMA(self.data.close, period=slow)
            self.pending: Any = None

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                fills.append(
                    ReferenceFill(
                        bt.num2date(order.executed.dt),
                        "buy" if order.isbuy() else "sell",
                        abs(int(order.executed.size)),
                        Decimal(repr(order.executed.price)),
                        Decimal(repr(order.executed.comm)),
                    )
                )
            if order.status in (order.Completed, order.Canceled, order.Margin, order.Rejected):
                self.pending = None

        def next(self) -> None:
            if len(self) <= slow or self.pending is not None:
                return
            now_above = self.fast[0] > self.slow[0]
            if now_above == (self.fast[-1] > self.slow[-1]):
                return
            held = self.position.size
            if now_above and held == 0:
                self.pending = self.buy(size=quantity)
            elif not now_above and held > 0:
                self.pending = self.sell(size=held)

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame, openinterest=None))
    cerebro.addstrategy(SmaCross)
    cerebro.broker.setcash(float(capital))
    cerebro.broker.addcommissioninfo(CentFee())
    cerebro.run()
    value = Decimal(repr(cerebro.broker.getvalue())).quantize(_CENT, rounding=ROUND_HALF_EVEN)
    return ReferenceRun(tuple(fills), value)
