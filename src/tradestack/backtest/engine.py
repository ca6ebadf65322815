"""The event-driven backtest: one loop over the bars, the live platform's pure domain inside.

Per bar of a symbol, in time order (bars of several symbols at one time: in the order given):

1. Matching. When the symbol has working orders, the bar is replayed to its `MatchingEngine` as
   prints: the open, then the low and the high (the high first when the bar closed below its open),
   then the close, each with the bar's volume as its size. So a market order sent at a bar's close
   fills at the **next bar's open** (with the fee, slippage, latency and participation models of
   `domain.matching`); a limit or stop order fills at the first print that reaches it.
   Fills become `OrderFilled`/`OrderPartiallyFilled` events applied to the order (`domain.orders`),
   journal entries (`domain.ledger.fill_entry_with_effect`) and the books.
2. The strategy's `on_bar` with the cursor on this bar; orders it sends go through validation
   (`OrderRequest.validate`), the pre-trade risk checks (`domain.risk.evaluate`) on the account's
   risk state (`domain.riskstate.AccountRisk`, what `account_risk_state` of the `AccountBooks` of the running
   balances gives, kept by the backtest as the account's single writer: moved by each journal entry and fill,
   read with the `OpenOrders` and a `MarketSnapshot` marking each symbol at its last close) and, accepted, to
   the matching engine.
3. Order updates and fills are delivered to the strategy after `on_bar` returns (never re-entrantly).

The equity curve (cash plus positions at the last close, after each bar) is derived at the end from
the fills; cash, positions, fees and the final equity are exact Decimals from the books.
Not modelled yet: sessions (day orders do not expire), instruments quoted in another currency than
the account's, quotes (`on_quote` is not called by this bar loop).
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import numpy as np

from tradestack.backtest.data import BarSeries, FloatArray, IntArray, utc_of
from tradestack.backtest.indicators import SeriesBar, SeriesHistory, SeriesIndicators
from tradestack.core.clock import Clock
from tradestack.domain.books import AccountBooks, Holding
from tradestack.domain.frozen import fast_init
from tradestack.domain.instruments import Instrument
from tradestack.domain.instruments import instrument as catalogue_instrument
from tradestack.domain.ledger import Account, AccountKind, JournalEntry, deposit, fill_entry_with_effect
from tradestack.domain.marketdata import Side, Trade
from tradestack.domain.matching import (
    Expired,
    FeeModel,
    Fill,
    LatencyModel,
    MatchEvent,
    MatchingEngine,
    SlippageModel,
    Triggered,
    submitted_working_order,
)
from tradestack.domain.orders import (
    FillEvent,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderRequest,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    TimeInForce,
    fill_event,
)
from tradestack.domain.portfolio import PositionState
from tradestack.domain.risk import OrderIntent, RiskLimits, TradingState, evaluate
from tradestack.domain.riskstate import AccountRisk, OpenOrder, OpenOrders
from tradestack.domain.snapshot import MarketSnapshot, QuoteView
from tradestack.strategy.api import Cursor, Strategy, StrategyError

_ZERO = Decimal(0)
_MINUTE_US = 60_000_000
_UNLIMITED = Decimal(10) ** 15


def permissive_limits(currency: str) -> RiskLimits:
    """Limits that only the buying power, short selling and the 10 % price collar bind."""
    return RiskLimits(
        max_order_notional=_UNLIMITED,
        max_position_quantity=_UNLIMITED,
        max_gross_exposure=_UNLIMITED,
        price_collar_pct=Decimal(10),
        max_orders_per_minute=1_000_000,
        daily_loss_limit=_UNLIMITED,
        currency=currency,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestConfig:
    """The account and the execution models of a run."""

    capital: Decimal = Decimal(100_000)
    currency: str = "USD"
    fee: FeeModel = field(default_factory=lambda: FeeModel(bps=_ZERO, places=2))
    slippage: SlippageModel = field(default_factory=lambda: SlippageModel(_ZERO))
    latency: LatencyModel = field(default_factory=LatencyModel)
    participation_rate: Decimal = Decimal(1)
    """Largest fraction of each print's size (the bar's volume) one order may take."""
    limits: RiskLimits | None = None
    """None: `permissive_limits`."""
    allow_short: bool = False
    seed: int = 0
    account_id: str = "backtest"

    def __post_init__(self) -> None:
        if self.capital <= 0:
            raise StrategyError(f"capital must be positive, got {self.capital}")


@fast_init
@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One fill as the backtest booked it."""

    order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    ts: datetime
    realized: Decimal
    """Realized P&L of the units this fill closed, before fees."""
    closed: Decimal
    """Units of an existing position this fill closed (zero for a fill that only opens or adds)."""


@dataclass(frozen=True, slots=True, eq=False)
class BacktestResult:
    """Everything a run produced."""

    strategy: str
    config: BacktestConfig
    symbols: tuple[str, ...]
    bars: int
    orders: tuple[Order, ...]
    events: tuple[OrderEvent, ...]
    trades: tuple[TradeRecord, ...]
    journal: tuple[JournalEntry, ...]
    books: AccountBooks
    final_cash: Decimal
    final_equity: Decimal
    fees_paid: Decimal
    equity_ts: IntArray
    """Epoch microseconds of each distinct bar time."""
    equity: FloatArray
    """Equity after the last bar at each of `equity_ts` (float: for statistics and charts)."""
    exposure: FloatArray
    """Gross position value at each of `equity_ts` (float)."""


class _Symbol:
    """One symbol's state in the loop."""

    __slots__ = ("bar", "closes", "cursor", "engine", "flat", "instrument", "number", "series", "working")

    def __init__(self, number: int, series: BarSeries, instrument: Instrument, config: BacktestConfig, seed: int) -> None:
        self.number = number
        self.series = series
        self.instrument = instrument
        self.cursor = Cursor()
        self.closes = series.floats(series.close)
        self.bar = SeriesBar(series, self.cursor, self.closes)
        self.engine = MatchingEngine(instrument, config.fee, config.slippage, config.latency, config.participation_rate, seed)
        self.working: set[str] = set()
        self.flat = PositionState(series.symbol)
        """The position before the symbol's first fill."""


@dataclass(slots=True)
class _Slot:
    """One running balance: the account and currency it is for, [amount, quantity], and its kind's balances by code."""

    account: Account
    currency: str
    held: list[Decimal]
    codes: dict[str, Decimal] | None
    """`Backtest._by_kind` of the account's kind (None for positions, which the books hold as holdings)."""


class _BarClock:
    """The simulated clock: the time of the bar being handled (no wall clock anywhere in a run).

    The loop only moves `step` (a position in `times`, the time of every bar of the run in order);
    the time of a step is read when something asks for it (bars with orders), and kept while the
    step stays.
    """

    __slots__ = ("_cached", "_cached_step", "_cached_us", "step", "times")

    def __init__(self) -> None:
        self.times: IntArray = np.zeros(1, dtype=np.int64)
        self.step = 0
        self._cached_step = 0
        self._cached_us = 0
        self._cached = utc_of(0)

    def _move(self) -> None:
        us = self.times.item(self.step)
        self._cached_step = self.step
        if us != self._cached_us:
            self._cached, self._cached_us = utc_of(us), us

    @property
    def us(self) -> int:
        """Epoch microseconds now."""
        if self.step != self._cached_step:
            self._move()
        return self._cached_us

    def now(self) -> datetime:
        if self.step != self._cached_step:
            self._move()
        return self._cached

    def monotonic(self) -> float:
        return self.us / 1e6


class Backtest:
    """One run of `strategy` over `series`; also the strategy's `StrategyContext`. Use `run_backtest`."""

    def __init__(
        self,
        strategy: Strategy,
        series: Sequence[BarSeries],
        config: BacktestConfig,
        instruments: Mapping[str, Instrument] | None = None,
    ) -> None:
        self.strategy = strategy
        self.config = config
        given = dict(instruments or {})
        self._symbols: dict[str, _Symbol] = {}
        for number, one in enumerate(series):
            instrument = given.get(one.symbol) or _catalogue(one.symbol)
            if instrument.quote_currency != config.currency:
                raise StrategyError(
                    f"{one.symbol} is quoted in {instrument.quote_currency}, the account in {config.currency}: "
                    "multi-currency backtests are not supported yet"
                )
            self._symbols[one.symbol] = _Symbol(number, one, instrument, config, config.seed + number)
        missing = [s for s in strategy.symbols if s not in self._symbols]
        if missing:
            raise StrategyError(f"no bars for {', '.join(missing)}")
        self._instruments = {s: state.instrument for s, state in self._symbols.items()}
        self._fees = {s: config.fee for s in self._symbols}
        self._limits = config.limits or permissive_limits(config.currency)
        self._open = OpenOrders(self._limits, self._instruments, lambda instrument: self._fees[instrument.symbol])
        self._clock = _BarClock()
        self._cursors = {s: state.cursor for s, state in self._symbols.items()}
        self.indicators = SeriesIndicators(
            {s: state.series for s, state in self._symbols.items()},
            self._cursors,
            {s: state.closes for s, state in self._symbols.items()},
        )
        self._histories: dict[str, SeriesHistory] = {}
        # books: running balances by (ledger account, currency) -> [amount, quantity]
        self._balances: dict[tuple[Account, str], list[Decimal]] = {}
        self._by_kind: dict[AccountKind, dict[str, Decimal]] = {}  # the balances of every account but positions
        self._slots: dict[int, _Slot] = {}  # `_balances` entries by the identity of their account (see `_slot`)
        self._holding_of: dict[str, Holding] = {}  # the open positions as the books hold them
        self._books: AccountBooks | None = None
        self._cash_account = Account.cash(config.currency)
        self._no_fx = MarketSnapshot().rates  # one currency: no conversions (built once, not per order)
        # the risk checks' inputs, kept by this single writer and moved by each entry, fill and snapshot (not rebuilt)
        self._risk = AccountRisk(
            AccountBooks(config.account_id, config.currency, config.allow_short), self._open, MarketSnapshot({}, self._no_fx)
        )
        self._risk_day = -1  # the day `_risk`'s realized P&L is of
        # The last close of each symbol as the risk checks last saw it, and the bar it is of: brought up to date at each
        # order for the symbols whose bars came since the last one (`_market_now`), not built again for every symbol.
        self._quotes: dict[str, QuoteView] = {}
        self._quoted_bar: dict[str, int] = {}
        self._quoted_step = 0  # the timeline step of the last order (its symbol's bar may have come after it: see there)
        self._market = MarketSnapshot({}, self._no_fx)
        self._numbers: list[int] | None = None  # the timeline's symbol numbers (`_timeline`), once the run starts
        self._by_number = list(self._symbols.values())  # the symbols by those numbers
        self._holdings: dict[str, PositionState] = {}
        self._positions: dict[str, Decimal] = {}
        self._realized_day: tuple[int, Decimal] = (-1, _ZERO)
        self._journal: list[JournalEntry] = []
        self._orders: dict[str, Order] = {}
        self._working_by_symbol: dict[str, dict[str, Order]] = {s: {} for s in self._symbols}
        self._events: list[OrderEvent] = []
        self._trades: list[TradeRecord] = []
        # per trade, for the equity curve: its step in the timeline, its symbol's number, the cash and
        # the symbol's position after it (floats of the exact balances)
        self._trade_steps: list[int] = []
        self._trade_numbers: list[int] = []
        self._trade_cash: list[float] = []
        self._trade_held: list[float] = []
        self._cash_held: list[Decimal] = [_ZERO, _ZERO]  # the cash balance's entry in `_balances`, once booked
        self._submitted_us: deque[int] = deque()
        self._sequence = 0
        self._notices: list[tuple[Order, FillEvent | None]] = []
        hooks = type(strategy)
        self._notify = (
            getattr(hooks, "on_fill", None) is not Strategy.on_fill
            or getattr(hooks, "on_order_update", None) is not Strategy.on_order_update
        )
        """Whether the strategy reads order updates or fills (else none are queued for it)."""

    # -- StrategyContext -----------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def now(self) -> datetime:
        return self._clock.now()

    @property
    def base_currency(self) -> str:
        return self.config.currency

    @property
    def cash(self) -> Decimal:
        entry = self._balances.get((self._cash_account, self.config.currency))
        return entry[0] if entry is not None else _ZERO

    @property
    def positions(self) -> Mapping[str, Decimal]:
        return dict(self._positions)

    def position(self, symbol: str) -> Decimal:
        return self._positions.get(symbol, _ZERO)

    def open_orders(self, symbol: str | None = None) -> tuple[Order, ...]:
        if symbol is not None:
            working = self._working_by_symbol.get(symbol)
            return tuple(working.values()) if working else ()
        return tuple(o for by in self._working_by_symbol.values() for o in by.values())

    def history(self, symbol: str) -> SeriesHistory:
        history = self._histories.get(symbol)
        if history is None:
            state = self._symbols.get(symbol)
            if state is None:
                raise StrategyError(f"no bars for {symbol}; the backtest has {', '.join(self._symbols)}")
            history = self._histories[symbol] = SeriesHistory(state.series, state.cursor, state.bar.close_list())
        return history

    def submit(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        *,
        type: OrderType = OrderType.MARKET,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        time_in_force: TimeInForce = TimeInForce.DAY,
    ) -> Order:
        state = self._symbols.get(symbol)
        if state is None:
            raise StrategyError(f"no bars for {symbol}; the backtest has {', '.join(self._symbols)}")
        self._sequence += 1
        order_id = f"{self.strategy.name}-{self._sequence}"
        clock = self._clock
        ts = clock.now()
        try:
            request = OrderRequest(
                client_order_id=order_id,
                account_id=self.config.account_id,
                symbol=symbol,
                side=side,
                type=type,
                quantity=quantity,
                limit_price=limit_price,
                stop_price=stop_price,
                time_in_force=time_in_force,
            )
            submitted = OrderSubmitted(order_id=order_id, ts=ts, request=request)
        except (TypeError, ValueError) as error:
            raise StrategyError(f"{self.strategy.name} sent an invalid order: {error}") from None
        order = Order.from_events((submitted,))
        self._events.append(submitted)
        self._orders[order_id] = order
        if self._notify:
            self._notices.append((order, None))
        problems = request.validate(state.instrument)
        denial = "; ".join(problems) if problems else self._risk_denial(request, ts)
        self._submitted_us.append(clock.us)
        if denial is not None:
            return self._apply(order, OrderDenied(order_id=order_id, ts=ts, reason=denial))
        order = self._apply(order, OrderAccepted(order_id=order_id, ts=ts))
        self._open.put(OpenOrder(order_id, symbol, side, type, quantity, limit_price, stop_price))
        self._working_by_symbol[symbol][order_id] = order
        state.working.add(order_id)
        matched = state.engine.submit(submitted_working_order(order), ts)
        if matched:
            self._on_match(state, matched)
        return self._orders[order_id]

    def cancel(self, order_id: str) -> bool:
        order = self._orders.get(order_id)
        if order is None or order.status.is_terminal:
            return False
        state = self._symbols[order.request.symbol]
        state.engine.cancel(order_id)
        self._close(state, order_id)
        self._apply(order, OrderCanceled(order_id=order_id, ts=self._clock.now(), reason="canceled by the strategy"))
        return True

    # -- the loop ------------------------------------------------------------------------------

    def run(self, progress: Callable[[int, int], None] | None = None) -> BacktestResult:
        """Replay every bar once; the result of the run. `progress(done, total)` is called about 100 times.

        The cyclic garbage collector is paused during the run (restored after): the loop makes no
        reference cycles, and full collections over a growing journal would cost time for nothing.
        What the run made (orders, events, journal: hundreds of thousands of objects on a long run)
        is then moved to the collector's oldest generation at once (`gc.freeze` and `gc.unfreeze`,
        unless something else froze objects): otherwise the first young collection after the run
        walks every one of them to find no garbage. Later full collections still visit them, as they
        visit any long-lived data.
        """
        numbers, indexes, times = self._timeline()
        self._numbers = numbers
        clock = self._clock
        clock.times, clock.step = times if len(times) else np.zeros(1, dtype=np.int64), 0  # the first bar's time
        clock._move()
        self._book(deposit("deposit-1", clock.now(), self.config.currency, self.config.capital, "backtest capital"))
        self._cash_held = self._balances[(self._cash_account, self.config.currency)]
        strategy = self.strategy
        strategy.on_start(self)
        states = list(self._symbols.values())
        notices = self._notices
        on_bar = strategy.on_bar
        total = len(times)
        chunk = max(1, total // 100) if progress is not None else max(1, total)
        collecting = gc.isenabled()
        gc.disable()
        try:
            for first in range(0, total, chunk):
                last = min(first + chunk, total)
                if numbers is None or indexes is None:  # one symbol: its bar index is the step
                    state = states[0]
                    working, cursor, bar = state.working, state.cursor, state.bar
                    for step in range(first, last):
                        clock.step = step
                        if working:
                            self._match_bar(state, step)
                        cursor.index = step
                        on_bar(self, bar)
                        if notices:
                            self._deliver()
                else:
                    for step in range(first, last):
                        state = states[numbers[step]]
                        index = indexes[step]
                        clock.step = step
                        if state.working:
                            self._match_bar(state, index)
                        state.cursor.index = index
                        on_bar(self, state.bar)
                        if notices:
                            self._deliver()
                if progress is not None:
                    progress(last, total)
            strategy.on_stop(self)
            if notices:
                self._deliver()
            result = self._result(numbers, indexes, times)
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
        finally:
            if collecting:
                gc.enable()
        return result

    def _timeline(self) -> tuple[list[int] | None, list[int] | None, IntArray]:
        """Symbol number, bar index and time of every bar in time order; ties in the order the series were given.

        With one symbol the numbers and indexes are None: the step is the bar's index.
        """
        states = self._by_number
        if len(states) == 1:
            return None, None, states[0].series.ts
        times = np.concatenate([state.series.ts for state in states])
        lengths = [len(state.series.ts) for state in states]
        numbers = np.repeat(np.arange(len(states), dtype=np.int64), lengths)
        indexes = np.concatenate([np.arange(length, dtype=np.int64) for length in lengths])
        order = np.lexsort((indexes, numbers, times))  # by time, then symbol number, then bar index
        return numbers[order].tolist(), indexes[order].tolist(), times[order]

    def _match_bar(self, state: _Symbol, index: int) -> None:
        series = state.series
        ts = self._clock.now()
        size = series.volume_of(index)
        symbol, price, engine, working = series.symbol, series.price, state.engine, state.working
        open_ = series.open.item(index)
        self._on_match(state, engine.on_trade(Trade(symbol, price(open_), size, Side.BUY, ts)))
        if not working:
            return  # filled at the open (market orders): the rest of the bar matches nothing
        high, low, close = series.high.item(index), series.low.item(index), series.close.item(index)
        previous = open_
        for scaled in (high, low, close) if close < open_ else (low, high, close):
            if scaled == previous:
                continue
            previous = scaled
            self._on_match(state, engine.on_trade(Trade(symbol, price(scaled), size, Side.BUY, ts)))
            if not working:
                break

    def _on_match(self, state: _Symbol, events: list[MatchEvent]) -> None:
        for event in events:
            order = self._orders[event.order_id]
            if isinstance(event, Fill):
                self._filled(state, order, event)
            elif isinstance(event, Triggered):
                self._apply(order, OrderTriggered(order_id=order.id, ts=event.ts))
            elif isinstance(event, Expired):
                self._close(state, order.id)
                self._apply(order, OrderExpired(order_id=order.id, ts=event.ts))

    def _filled(self, state: _Symbol, order: Order, fill: Fill) -> None:
        instrument = state.instrument
        symbol, currency = instrument.symbol, instrument.quote_currency
        left = order.remaining_quantity - fill.quantity
        event = fill_event(order, fill, currency)
        request = order.request
        side = request.side
        entry, effect = fill_entry_with_effect(
            f"fill-{fill.fill_id}",
            fill.ts,
            symbol,
            side,
            fill.quantity,
            fill.price,
            currency,
            fill.fee,
            currency,
            self._holdings.get(symbol) or state.flat,
            order.id,
        )
        self._book(entry)
        position = effect.position
        held = position.quantity
        self._holdings[symbol] = position
        self._risk.on_position(position, currency)
        if held:
            self._positions[symbol] = held
            self._holding_of[symbol] = Holding(position, currency)
        else:
            self._positions.pop(symbol, None)
            self._holding_of.pop(symbol, None)
        self._add_realized(effect.realized)
        self._trades.append(
            TradeRecord(
                order.id, symbol, side, fill.quantity, fill.price, fill.fee, fill.ts, effect.realized, abs(effect.closed_quantity)
            )
        )
        self._trade_steps.append(self._clock.step)
        self._trade_numbers.append(state.number)
        self._trade_cash.append(float(self._cash_held[0]))
        self._trade_held.append(float(held))
        if left == 0:
            self._close(state, order.id)
        else:
            self._open.put(OpenOrder(order.id, symbol, side, request.type, left, request.limit_price, request.stop_price))
        self._apply(order, event, event)

    # -- books ---------------------------------------------------------------------------------

    def _book(self, entry: JournalEntry) -> None:
        self._journal.append(entry)
        self._books = None
        self._risk_today()
        self._risk.on_entry(entry)
        slots = self._slots
        for posting in entry.postings:
            account, currency = posting.account, posting.currency
            slot = slots.get(id(account))
            if slot is None or slot.account is not account or slot.currency != currency:
                slot = self._slot(account, currency)
            held = slot.held
            held[0] += posting.amount
            if posting.quantity is not None:
                held[1] += posting.quantity
            if slot.codes is not None:
                slot.codes[account.code] = held[0]

    def _slot(self, account: Account, currency: str) -> _Slot:
        """The running balance of `account` in `currency` (created at zero), remembered by the account's identity.

        Ledger accounts are shared instances (`Account.cash` and the others), so the identity finds
        them without hashing the account; an equal account that is another instance still reaches the
        same balance through `_balances`.
        """
        key = (account, currency)
        held = self._balances.get(key)
        if held is None:
            held = self._balances[key] = [_ZERO, _ZERO]
        codes = None if account.kind is AccountKind.POSITION else self._by_kind.setdefault(account.kind, {})
        slot = self._slots[id(account)] = _Slot(account, currency, held, codes)
        return slot

    def _risk_today(self) -> None:
        """Start `_risk`'s realized P&L again when the clock reached another day (as `books` counts it)."""
        today = self._clock.us // 86_400_000_000
        if today != self._risk_day:
            self._risk_day = today
            self._risk.new_day()

    def _add_realized(self, realized: Decimal) -> None:
        day = self._clock.us // 86_400_000_000
        current_day, total = self._realized_day
        self._realized_day = (day, (total if day == current_day else _ZERO) + realized)

    def books(self) -> AccountBooks:
        """The account's books now (`domain.books.AccountBooks`): balances by kind, holdings at cost."""
        day, realized = self._realized_day
        today = self._clock.us // 86_400_000_000
        realized_today = {self.config.currency: realized} if day == today and realized else {}
        books = self._books
        if books is None or books.realized_today != realized_today:
            books = self._books = AccountBooks(
                account_id=self.config.account_id,
                base_currency=self.config.currency,
                allow_short=self.config.allow_short,
                balances={kind: dict(codes) for kind, codes in self._by_kind.items()},
                holdings=dict(sorted(self._holding_of.items())),
                realized_today=realized_today,
            )
        return books

    # -- orders --------------------------------------------------------------------------------

    def _risk_denial(self, request: OrderRequest, now: datetime) -> str | None:
        market, changed = self._market_now(now)
        last = market.mark(request.symbol)
        self._risk_today()
        if changed:
            self._risk.on_market(market, changed)  # re-marks only the holdings whose close moved
        risk_state = self._risk.state(side=request.side, orders_in_last_minute=self._orders_in_last_minute())
        intent = OrderIntent(
            request.account_id,
            request.symbol,
            request.side,
            request.type,
            request.quantity,
            request.limit_price,
            request.stop_price,
        )
        denial = evaluate(intent, self._limits, risk_state, TradingState.ACTIVE, last, fee_model=self._fees[request.symbol])
        return None if denial is None else str(denial)

    def _market_now(self, now: datetime) -> tuple[MarketSnapshot, list[str]]:
        """The last close of every symbol that has had a bar, as a snapshot, and the symbols whose close changed since
        the last order's.

        Only the symbols with a bar since the last order's step (at that step, the symbol's own bar may have come
        after the order: its cursor moves after `on_start`) can have moved: the timeline says which. So an order costs
        what moved since the last, not a quote per symbol and a mark per holding (with 200 symbols that was three
        quarters of a cross-sectional strategy's run)."""
        step, numbers, states = self._clock.step, self._numbers, self._by_number
        since = self._quoted_step
        self._quoted_step = step
        if numbers is None or step + 1 - since >= len(states):  # one symbol, or more bars since than symbols
            moved: Iterable[_Symbol] = states
        else:
            moved = [states[number] for number in set(numbers[since : step + 1])]
        quotes, quoted_bar = self._quotes, self._quoted_bar
        changed: list[str] = []
        for one in moved:
            index = one.cursor.index
            symbol = one.series.symbol
            if index >= 0 and quoted_bar.get(symbol) != index:
                quotes[symbol] = QuoteView(None, None, one.series.price(one.series.close.item(index)), now)
                quoted_bar[symbol] = index
                changed.append(symbol)
        if changed:
            self._market = MarketSnapshot(dict(quotes), self._no_fx)  # a snapshot stays as it was made
        return self._market, changed

    def _orders_in_last_minute(self) -> int:
        window = self._submitted_us
        while window and window[0] <= self._clock.us - _MINUTE_US:
            window.popleft()
        return len(window)

    def _close(self, state: _Symbol, order_id: str) -> None:
        state.working.discard(order_id)
        self._working_by_symbol[state.instrument.symbol].pop(order_id, None)
        self._open.remove(order_id)

    def _apply(self, order: Order, event: OrderEvent, fill: FillEvent | None = None) -> Order:
        updated = order.apply(event)
        self._events.append(event)
        order_id = updated.id
        working = self._working_by_symbol[updated.request.symbol]
        if order_id in working:
            working[order_id] = updated
        self._orders[order_id] = updated
        if self._notify:
            self._notices.append((updated, fill))
        return updated

    def _deliver(self) -> None:
        notices = list(self._notices)
        self._notices.clear()
        strategy = self.strategy
        for order, fill in notices:
            if fill is not None:
                strategy.on_fill(self, order, fill)
            strategy.on_order_update(self, order)

    # -- result --------------------------------------------------------------------------------

    def _result(self, timeline_numbers: list[int] | None, timeline_indexes: list[int] | None, times: IntArray) -> BacktestResult:
        states = self._by_number
        steps = len(times)
        trade_steps = np.asarray(self._trade_steps, dtype=np.int64)
        trade_numbers = np.asarray(self._trade_numbers, dtype=np.int64)
        # cash after the last trade at or before each step, plus each symbol's position at its last close
        equity = _after_trades(steps, trade_steps, np.asarray(self._trade_cash), float(self.config.capital))
        gross = np.zeros(steps)
        held_after = np.asarray(self._trade_held)
        # each symbol's steps and bar indexes in the timeline, from one sort (not a pass over the timeline per symbol)
        steps_of: list[IntArray] = []
        indexes = np.zeros(0, dtype=np.int64)
        if timeline_numbers is not None and timeline_indexes is not None:
            numbers = np.asarray(timeline_numbers, dtype=np.int64)
            indexes = np.asarray(timeline_indexes, dtype=np.int64)
            by_number = np.argsort(numbers, kind="stable")
            steps_of = np.split(by_number, np.searchsorted(numbers[by_number], np.arange(1, len(states))))
        for number, state in enumerate(states):
            mine = trade_numbers == number
            if not mine.any():
                continue
            value = _after_trades(steps, trade_steps[mine], held_after[mine], 0.0)
            if not steps_of:  # one symbol: step = bar index
                value *= state.closes
            else:
                # the symbol's last close at every step (NaN before its first bar, when nothing is held)
                last_close = np.full(steps, np.nan)
                at = steps_of[number]
                last_close[at] = state.closes[indexes[at]]
                value *= np.nan_to_num(_forward_fill(last_close))
            equity += value
            gross += np.abs(value, out=value)
        # one point per distinct time: the state after the last bar at that time
        if steps and bool(np.any(times[1:] == times[:-1])):
            last_of_time = np.r_[times[1:] != times[:-1], True]
            times, equity, gross = times[last_of_time], equity[last_of_time], gross[last_of_time]
        final_cash = self.cash
        marks = {
            s: state.series.price(int(state.series.close[state.cursor.index]))
            for s, state in self._symbols.items()
            if state.cursor.index >= 0
        }
        final_equity = final_cash + sum((q * marks[s] for s, q in self._positions.items()), _ZERO)
        fees = sum((t.fee for t in self._trades), _ZERO)
        return BacktestResult(
            strategy=self.strategy.name,
            config=self.config,
            symbols=tuple(self._symbols),
            bars=steps,
            orders=tuple(self._orders.values()),
            events=tuple(self._events),
            trades=tuple(self._trades),
            journal=tuple(self._journal),
            books=self.books(),
            final_cash=final_cash,
            final_equity=final_equity,
            fees_paid=fees,
            equity_ts=times,
            equity=equity,
            exposure=gross,
        )


def _after_trades(steps: int, trade_steps: IntArray, after: FloatArray, before: float) -> FloatArray:
    """At each of `steps`, the value `after` the last trade at or before it (`before` until the first trade).

    `trade_steps` ascend; the values are constant from one trade's step to the next one's.
    """
    if not len(trade_steps):
        return np.full(steps, before)
    last = np.r_[trade_steps[1:] != trade_steps[:-1], True]  # several trades at one step: the last one's
    at = trade_steps[last]
    lengths = np.diff(np.r_[np.int64(0), at, np.int64(steps)])
    return np.repeat(np.r_[before, after[last]], lengths)


def _forward_fill(values: FloatArray) -> FloatArray:
    valid = ~np.isnan(values)
    positions = np.where(valid, np.arange(len(values)), 0)
    np.maximum.accumulate(positions, out=positions)
    filled: FloatArray = values[positions]
    return filled


def _catalogue(symbol: str) -> Instrument:
    try:
        return catalogue_instrument(symbol)
    except KeyError as error:
        raise StrategyError(f"{error.args[0]}; pass an Instrument for other symbols") from None


def run_backtest(
    strategy: Strategy,
    series: Sequence[BarSeries],
    config: BacktestConfig | None = None,
    instruments: Mapping[str, Instrument] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Run `strategy` over `series` (one per symbol) with `config` (defaults: 100 000 USD, no fees)."""
    return Backtest(strategy, series, config or BacktestConfig(), instruments).run(progress)
