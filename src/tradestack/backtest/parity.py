"""Parity: one strategy on the same bars in the backtester and through the paper stack, compared order by order.

The paper run is `strategy.parity.replay_on_paper` (the service layer); this module is the pure
part: the backtest with the paper's models and the comparison (`parity_report`). The two runs:

* **backtest**: `backtest.engine` over the bars (fills at the next bar's open print, bar volume as
  the print's size), with the paper stack's own models: its fee schedule for the instrument's
  venue, slippage, latency, participation rate and default risk limits
  (`strategy.parity.backtest_config_of`);
* **paper**: the same bars replayed as quotes through the real order service, risk checks, engine
  and database books (see `strategy.parity`); its orders and fills as stored (`PaperReplay`).

Orders are paired by the bar whose close decided them and their rank in that bar. A pair whose
orders and fills (quantity, price, fee) are equal is **matched**. Otherwise the difference is
**explained** only when it has a named cause that is checked, not assumed:

* the paper fills are exactly what the backtest's models (fee, slippage, latency, participation)
  give on the quotes the replay produced (`MatchingEngine` fed those quotes from the order's
  submission): then a different price is the replayed quote's touch against the bar's print,
  several smaller fills are the quoted size times the participation rate, a different fee follows
  the different notional, a later fill is latency or the quotes' sizes;
* an order only one host sent: that host's strategy saw a different position or a still-working
  order of its own at that bar, which comes from an earlier difference that was itself explained;
* the backtest's order of the last bar stays unfilled (no bar after it), the paper host's fills on
  the last quote.

Anything else is **unexplained**; `ParityReport.ok` is False then (the command exits non-zero).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tradestack.backtest.data import BarSeries
from tradestack.backtest.engine import BacktestConfig, BacktestResult, run_backtest
from tradestack.domain.instruments import Instrument
from tradestack.domain.marketdata import Bar, Quote, Side
from tradestack.domain.matching import Fill, MatchingEngine, WorkingOrder
from tradestack.domain.orders import FillEvent, Order, OrderStatus
from tradestack.strategy.api import StrategyError
from tradestack.strategy.examples import build

DEFAULT_STEPS = 4
"""Quotes per bar: what the replay feed produces for 1-minute bars at its default speed (720) and tick (0.25 s)."""


@dataclass(frozen=True, slots=True)
class Cause:
    """A named reason for a difference, and its particulars."""

    name: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "detail": self.detail}


class Verdict(StrEnum):
    MATCHED = "matched"
    EXPLAINED = "explained"
    UNEXPLAINED = "unexplained"


@dataclass(frozen=True, slots=True)
class FillRow:
    """One fill as a host booked it."""

    quantity: Decimal
    price: Decimal
    fee: Decimal
    ts: datetime

    def same(self, other: FillRow) -> bool:
        """Equal quantity, price and fee (the time is compared separately)."""
        return (self.quantity, self.price, self.fee) == (other.quantity, other.price, other.fee)

    def to_dict(self) -> dict[str, str]:
        return {"quantity": str(self.quantity), "price": str(self.price), "fee": str(self.fee), "ts": self.ts.isoformat()}


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One order of one host: what was sent at which bar's close, how it ended, its fills."""

    decided_at: datetime
    """The start of the bar whose close decided it."""
    rank: int
    """1 for the first order sent while handling that bar, 2 for the second..."""
    order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    status: OrderStatus
    fills: tuple[FillRow, ...]
    order: Order

    @property
    def key(self) -> tuple[datetime, int]:
        return (self.decided_at, self.rank)

    @property
    def filled(self) -> Decimal:
        return sum((f.quantity for f in self.fills), Decimal(0))

    @property
    def fees(self) -> Decimal:
        return sum((f.fee for f in self.fills), Decimal(0))

    @property
    def average_price(self) -> Decimal | None:
        filled = self.filled
        return None if not filled else sum((f.quantity * f.price for f in self.fills), Decimal(0)) / filled

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "quantity": str(self.quantity),
            "status": self.status.value,
            "filled": str(self.filled),
            "fees": str(self.fees),
            "fills": [f.to_dict() for f in self.fills],
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """One decision compared: the backtest's order and the paper host's (either may be missing)."""

    decided_at: datetime
    rank: int
    backtest: OrderRow | None
    paper: OrderRow | None
    verdict: Verdict
    causes: tuple[Cause, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "decided_at": self.decided_at.isoformat(),
            "rank": self.rank,
            "verdict": self.verdict.value,
            "causes": [c.to_dict() for c in self.causes],
            "backtest": None if self.backtest is None else self.backtest.to_dict(),
            "paper": None if self.paper is None else self.paper.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class ParityReport:
    """Every decision of both hosts, compared."""

    strategy: str
    symbol: str
    params: Mapping[str, str]
    bars: int
    quotes: int
    config: BacktestConfig
    comparisons: tuple[Comparison, ...]
    backtest_equity: Decimal
    paper_cash: Decimal
    seconds: Mapping[str, float] = field(default_factory=dict)

    def count(self, verdict: Verdict) -> int:
        return sum(1 for c in self.comparisons if c.verdict is verdict)

    @property
    def ok(self) -> bool:
        """Every order matched or explained."""
        return self.count(Verdict.UNEXPLAINED) == 0

    @property
    def share_matched_or_explained(self) -> float:
        total = len(self.comparisons)
        return 1.0 if total == 0 else (total - self.count(Verdict.UNEXPLAINED)) / total

    def to_dict(self) -> dict[str, Any]:
        config = self.config
        return {
            "strategy": self.strategy,
            "symbol": self.symbol,
            "params": dict(self.params),
            "bars": self.bars,
            "quotes": self.quotes,
            "models": {
                "fee_bps": str(config.fee.bps),
                "fee_minimum": str(config.fee.minimum),
                "slippage_bps": str(config.slippage.bps),
                "latency_seconds": config.latency.seconds,
                "participation_rate": str(config.participation_rate),
                "capital": str(config.capital),
            },
            "orders": len(self.comparisons),
            "matched": self.count(Verdict.MATCHED),
            "explained": self.count(Verdict.EXPLAINED),
            "unexplained": self.count(Verdict.UNEXPLAINED),
            "share_matched_or_explained": self.share_matched_or_explained,
            "ok": self.ok,
            "seconds": dict(self.seconds),
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


# -- the two hosts' orders -------------------------------------------------------------------------


def _ranked(rows: list[tuple[datetime, str, Order, tuple[FillRow, ...]]]) -> list[OrderRow]:
    out: list[OrderRow] = []
    ranks: dict[datetime, int] = {}
    for decided, order_id, order, fills in rows:
        ranks[decided] = ranks.get(decided, 0) + 1
        request = order.request
        out.append(
            OrderRow(
                decided, ranks[decided], order_id, request.symbol, request.side, request.quantity, order.status, fills, order
            )
        )
    return out


def backtest_orders(result: BacktestResult) -> list[OrderRow]:
    """The backtest's orders; each decided at its creation time (the clock is the bar being handled)."""
    fills: dict[str, list[FillRow]] = {}
    for trade in result.trades:
        fills.setdefault(trade.order_id, []).append(FillRow(trade.quantity, trade.price, trade.fee, trade.ts))
    rows = [(o.created_at, o.id, o, tuple(fills.get(o.id, ()))) for o in result.orders]
    return _ranked(sorted(rows, key=lambda r: (r[0], int(r[1].rsplit("-", 1)[1]))))


def paper_orders(stored: Sequence[tuple[Order, list[FillEvent]]], prefix: str) -> list[OrderRow]:
    """The paper host's orders: each decided at the bar its client order id names (``{prefix}b{epoch}.{n}``)."""
    keyed = []
    for order, events in stored:
        key = order.request.client_order_id.removeprefix(prefix)
        event, _, number = key.partition(".")
        if not event.startswith("b") or not number.isdigit():
            raise StrategyError(
                f"order {order.request.client_order_id} was not sent at a bar's close; parity compares bar decisions"
            )
        decided = datetime.fromtimestamp(int(event[1:]), tz=order.created_at.tzinfo)
        fills = tuple(FillRow(e.quantity, e.price, e.fee, e.ts) for e in events)  # as booked, in order
        keyed.append(((decided, int(number)), (decided, order.id, order, fills)))
    keyed.sort(key=lambda pair: pair[0])
    return _ranked([row for _, row in keyed])


# -- explanations ----------------------------------------------------------------------------------


def model_fills(order: Order, quotes: Sequence[Quote], instrument: Instrument, config: BacktestConfig) -> list[Fill]:
    """The fills the backtest's models give `order` on the replayed `quotes` (time order) from its submission on."""
    engine = MatchingEngine(instrument, config.fee, config.slippage, config.latency, config.participation_rate, seed=config.seed)
    times = [q.ts for q in quotes]
    start = bisect.bisect_right(times, order.created_at)
    if start > 0:
        engine.on_quote(quotes[start - 1])  # the touch when it was sent (no order working yet: no events)
    request = order.request
    working = WorkingOrder(
        order.id,
        request.symbol,
        request.side,
        request.type,
        request.quantity,
        request.quantity,
        request.limit_price,
        request.stop_price,
        request.time_in_force,
        False,
        order.created_at,
    )
    events = engine.submit(working, order.created_at)
    for quote in quotes[start:]:
        if engine.working_order(order.id) is None:
            break
        events.extend(engine.on_quote(quote))
    return [e for e in events if isinstance(e, Fill)]


def _signed(row: OrderRow, fill: FillRow) -> Decimal:
    return fill.quantity if row.side is Side.BUY else -fill.quantity


def _at_decision(rows: Sequence[OrderRow], decided: datetime, symbol: str, booked_by: datetime) -> tuple[Decimal, list[OrderRow]]:
    """A host's position in `symbol` when it decided at bar `decided` (fills booked by `booked_by`), and its working orders."""
    held = Decimal(0)
    working = []
    for row in rows:
        if row.decided_at >= decided or row.symbol != symbol:
            continue
        done = Decimal(0)
        later = False
        for fill in row.fills:
            if fill.ts <= booked_by:
                held += _signed(row, fill)
                done += fill.quantity
            else:
                later = True
        if done < row.quantity and (later or row.status.is_open):
            working.append(row)
    return held, working


def _touch(quotes: Sequence[Quote], at: datetime, side: Side) -> tuple[Decimal, Decimal] | None:
    times = [q.ts for q in quotes]
    index = bisect.bisect_right(times, at) - 1
    if index < 0:
        return None
    quote = quotes[index]
    return (quote.ask, quote.ask_size) if side is Side.BUY else (quote.bid, quote.bid_size)


def _fill_causes(
    backtest: OrderRow, paper: OrderRow, quotes: Sequence[Quote], config: BacktestConfig, last_bar: datetime
) -> list[Cause]:
    """Why two orders' fills differ, once the paper fills are known to be the models' on the replayed quotes."""
    causes = []
    if not backtest.fills and paper.fills and backtest.decided_at == last_bar:
        causes.append(Cause("last bar", "the backtest has no next bar to fill it; the paper host fills on the last quote"))
        return causes
    if backtest.fills and paper.fills and backtest.fills[0].price != paper.fills[0].price:
        touch = _touch(quotes, paper.fills[0].ts, paper.side)
        where = "ask" if paper.side is Side.BUY else "bid"
        shown = "?" if touch is None else str(touch[0])
        causes.append(
            Cause(
                "quote vs print",
                f"the paper host filled at the replayed quote's {where} {shown} (with {config.slippage.bps} bps "
                "slippage), the backtest at the next bar's opening print",
            )
        )
    if [f.quantity for f in backtest.fills] != [f.quantity for f in paper.fills]:
        sizes = sorted({str(t[1]) for f in paper.fills if (t := _touch(quotes, f.ts, paper.side)) is not None})
        causes.append(
            Cause(
                "touch size",
                f"the replayed quotes offered {', '.join(sizes) or 'nothing'} units, {config.participation_rate} of it "
                f"per order ({len(paper.fills)} fills); the backtest's print carried the bar's volume",
            )
        )
    if backtest.fees != paper.fees:
        causes.append(Cause("fee on notional", f"fees {backtest.fees} vs {paper.fees}: the fee schedule on different fills"))
    if [f.ts for f in backtest.fills] != [f.ts for f in paper.fills]:
        causes.append(Cause("fill time", f"latency {config.latency.seconds} s and the replayed quotes' times and sizes"))
    if not causes and backtest.status != paper.status:
        causes.append(Cause("status", f"{backtest.status.value} vs {paper.status.value} with the same fills"))
    return causes


def _judge(
    backtest: OrderRow | None,
    paper: OrderRow | None,
    context: _Context,
    clean: bool,
) -> tuple[Verdict, tuple[Cause, ...]]:
    if backtest is not None and paper is not None:
        if (backtest.symbol, backtest.side, backtest.quantity) != (paper.symbol, paper.side, paper.quantity):
            return _one_sided(backtest, paper, context, clean, "different orders")
        same = (
            backtest.status == paper.status
            and len(backtest.fills) == len(paper.fills)
            and all(b.same(p) and b.ts == p.ts for b, p in zip(backtest.fills, paper.fills, strict=True))
        )
        if same:
            return Verdict.MATCHED, ()
        modelled = [
            FillRow(f.quantity, f.price, f.fee, f.ts)
            for f in model_fills(paper.order, context.quotes, context.instrument, context.config)
        ]
        for number, (want, got) in enumerate(zip(modelled, paper.fills, strict=False), start=1):
            if not got.same(want) or got.ts != want.ts:
                return Verdict.UNEXPLAINED, _unexplained(
                    f"paper fill {number} is {got.quantity} @ {got.price} fee {got.fee} at {got.ts:%H:%M:%S}; "
                    f"the backtest's models on the replayed quote give {want.quantity} @ {want.price} fee {want.fee} "
                    f"at {want.ts:%H:%M:%S}"
                )
        if len(modelled) != len(paper.fills):
            return Verdict.UNEXPLAINED, _unexplained(
                f"the paper host booked {len(paper.fills)} fills; "
                f"the backtest's models on the replayed quotes give {len(modelled)}"
            )
        return Verdict.EXPLAINED, tuple(_fill_causes(backtest, paper, context.quotes, context.config, context.last_bar))
    return _one_sided(backtest, paper, context, clean, "only one host sent it")


def _one_sided(
    backtest: OrderRow | None, paper: OrderRow | None, context: _Context, clean: bool, what: str
) -> tuple[Verdict, tuple[Cause, ...]]:
    one = backtest if backtest is not None else paper
    assert one is not None  # noqa: S101 - a comparison has at least one order
    decided, symbol = one.decided_at, one.symbol
    held_b, working_b = _at_decision(context.backtest, decided, symbol, decided)
    # the paper host decides when the first quote after the bar arrives, once the engine has matched on it
    ends = decided + timedelta(seconds=context.bar_seconds)
    closing = bisect.bisect_left([q.ts for q in context.quotes], ends)
    booked_by = context.quotes[closing].ts if closing < len(context.quotes) else ends + timedelta(seconds=1)
    held_p, working_p = _at_decision(context.paper, decided, symbol, booked_by)
    causes = []
    if working_p and not working_b:
        causes.append(Cause("still working", f"the paper host's order {working_p[0].order_id} was working at this bar's close"))
    if working_b and not working_p:
        causes.append(Cause("still working", f"the backtest's order {working_b[0].order_id} was working at this bar's close"))
    if held_b != held_p:
        causes.append(Cause("position", f"positions differed when deciding: backtest {held_b}, paper {held_p}"))
    if not causes:
        return Verdict.UNEXPLAINED, _unexplained(f"{what}: same position ({held_b}) and no working order in either host")
    if not clean:
        return Verdict.UNEXPLAINED, (*causes, Cause("unexplained", "it follows from an earlier unexplained difference"))
    return Verdict.EXPLAINED, tuple(causes)


def _unexplained(detail: str) -> tuple[Cause, ...]:
    return (Cause("unexplained", detail),)


@dataclass(frozen=True, slots=True)
class _Context:
    backtest: Sequence[OrderRow]
    paper: Sequence[OrderRow]
    quotes: Sequence[Quote]
    instrument: Instrument
    config: BacktestConfig
    bar_seconds: int
    last_bar: datetime


def compare(
    backtest: Sequence[OrderRow],
    paper: Sequence[OrderRow],
    quotes: Sequence[Quote],
    instrument: Instrument,
    config: BacktestConfig,
    *,
    bar_seconds: int,
    last_bar: datetime,
) -> list[Comparison]:
    """Pair the decisions of both hosts and judge each (see the module docstring)."""
    context = _Context(backtest, paper, quotes, instrument, config, bar_seconds, last_bar)
    by_backtest = {row.key: row for row in backtest}
    by_paper = {row.key: row for row in paper}
    clean = True
    out = []
    for key in sorted(by_backtest.keys() | by_paper.keys()):
        verdict, causes = _judge(by_backtest.get(key), by_paper.get(key), context, clean)
        clean = clean and verdict is not Verdict.UNEXPLAINED
        out.append(Comparison(key[0], key[1], by_backtest.get(key), by_paper.get(key), verdict, causes))
    return out


# -- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaperReplay:
    """What the paper stack did with the replayed bars."""

    strategy: str
    symbol: str
    params: Mapping[str, str]
    bars: tuple[Bar, ...]
    bar_seconds: int
    quotes: tuple[Quote, ...]
    instrument: Instrument
    config: BacktestConfig
    """The paper stack's models, as a backtest configuration."""
    orders: tuple[OrderRow, ...]
    cash: Decimal
    seconds: float


def parity_report(paper: PaperReplay, *, perturb: Callable[[BacktestConfig], BacktestConfig] | None = None) -> ParityReport:
    """Run the backtest of `paper`'s strategy on its bars with its models and compare (`perturb`: a test's deliberate
    change of the backtest's configuration)."""
    import time

    config = paper.config if perturb is None else perturb(paper.config)
    symbol = paper.symbol
    started = time.perf_counter()
    strategy = build(paper.strategy, [symbol], paper.params)
    result = run_backtest(strategy, [BarSeries.from_bars(symbol, paper.bars)], config, {symbol: paper.instrument})
    backtest_seconds = time.perf_counter() - started
    comparisons = compare(
        backtest_orders(result),
        paper.orders,
        paper.quotes,
        paper.instrument,
        config,
        bar_seconds=paper.bar_seconds,
        last_bar=paper.bars[-1].ts,
    )
    return ParityReport(
        paper.strategy,
        symbol,
        paper.params,
        len(paper.bars),
        len(paper.quotes),
        config,
        tuple(comparisons),
        result.final_equity,
        paper.cash,
        {"backtest": backtest_seconds, "paper": paper.seconds},
    )
