"""The risk checks' view of an account, from its books, its open orders and the market.

`account_risk_state` is what the trading service calls, on books it reads per request; an account's
single writer (the backtester, the in-process benchmark) keeps an `AccountRisk` instead, built from the
same books once and then moved by each journal entry, position and market snapshot, whose `state` is what
`account_risk_state` of books built afresh gives (that function builds one and reads it); no caller
assembles these numbers itself. The open orders are an `OpenOrders`, which keeps them summed as they
change, so the cost of a risk state does not grow with them. Money ends up in the account's base
currency, converted by the snapshot's FX rates (`MissingFxRate` when one is needed and absent).

* cash: what the account's FX policy lets a purchase in the order's currency spend (`buying_power`):
  - multi-currency margin: every cash balance, converted; one currency may go negative while the
    others, valued in the base currency, cover it;
  - auto-convert: the order currency's cash and the base currency's, the latter net of the FX fee the
    conversion at fill time costs; cash in a third currency is not spent (convert it first), and what
    open orders in a third currency need beyond its cash comes out of the base currency.
* positions: the held quantities (for a currency pair, which is bought as cash rather than held as a
  position, the cash in its base currency), plus the account's other open orders **on the new order's side**
  as if they had filled (the worst case in its direction): three sells of 10 against a long of 20
  cannot each pass the short-selling check on their own.
* gross exposure: |quantity| x mark of each holding, at cost when it has no mark (`exposure`), summed exactly per
  holding currency, each sum then converted.
* reserved: what the open buys reserve out of that cash (`reserve_for` on their remaining quantity,
  summed per quote currency, then converted); a market buy that cannot be priced yet reserves nothing.
* realized P&L today: the books' `realized_today`, converted.

`excluding` leaves one open order out of the reservations and of that count (the order being
replaced).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from tradestack.core.money import UNROUNDED
from tradestack.domain.books import AccountBooks, FxPolicy
from tradestack.domain.frozen import builder, fast_init
from tradestack.domain.instruments import Instrument
from tradestack.domain.ledger import AccountKind, JournalEntry
from tradestack.domain.marketdata import Side
from tradestack.domain.matching import FeeModel
from tradestack.domain.orders import OrderType
from tradestack.domain.portfolio import FxRates, PositionState
from tradestack.domain.risk import AccountRiskState, OrderIntent, RiskLimits, TradingState, reserve_at, reserve_for
from tradestack.domain.snapshot import MarketSnapshot

_ZERO = Decimal(0)
_BPS = Decimal(10_000)
# Sums of exposure terms are made in `UNROUNDED`: exact, so a sum kept by adding and removing terms equals the sum of
# the terms held.


@fast_init
@dataclass(frozen=True, slots=True)
class OpenOrder:
    """A working order as the risk state counts it: what is left of it and at what prices."""

    order_id: str
    symbol: str
    side: Side
    type: OrderType
    remaining: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None


def converter(rates: FxRates, currency: str, base: str) -> Callable[[Decimal], Decimal]:
    """A function converting amounts in `currency` into `base` at `rates`."""
    if currency == base:
        return _same
    return lambda amount: rates.convert(amount, currency, base)


def _same(amount: Decimal) -> Decimal:
    return amount


@dataclass(slots=True)
class _Held:
    order: OpenOrder
    reserve: Decimal | None  # in `currency`, fixed by the order's own prices; None: priced at the mark (market buys)
    currency: str | None  # the instrument's quote currency; None: unknown instrument or a sell (reserves nothing)
    # A market buy: the mark it was last priced at and what it reserved there (`reserve_for` is a function of the
    # mark alone once the order is put), so a risk state on an unchanged mark does not price it again.
    priced_at: Decimal | None = None
    priced: Decimal = _ZERO
    summed: bool = False  # a market buy whose `priced` is in `OpenOrders._market_sums`


class OpenOrders:
    """An account's open orders, kept summed the way the risk state reads them, and updated as they change.

    Cost per risk state is per symbol and currency, not per order: what a limit or stop buy reserves
    is fixed by its own prices (and the limits' collar) and is summed per quote currency when the
    order is put; only market buys are priced at the mark. Those are summed too, for the snapshot they
    were last priced in: a state built on that same snapshot again (several orders between two quotes, as a
    backtest's rebalance sends them) adds the sums, and a market buy put or removed meanwhile moves them; a new
    snapshot prices every market buy again. Rebuild it when the limits change.
    """

    __slots__ = (
        "_fee_model", "_held", "_instruments", "_limits", "_market_buys", "_market_sums", "_pairs", "_pending",
        "_priced_in", "_reserved",
    )  # fmt: skip

    def __init__(
        self,
        limits: RiskLimits,
        instruments: Mapping[str, Instrument],
        fee_model: Callable[[Instrument], FeeModel],
        orders: Iterable[OpenOrder] = (),
    ) -> None:
        self._limits, self._instruments, self._fee_model = limits, instruments, fee_model
        self._pairs = {s: pair[0] for s, i in instruments.items() if (pair := i.currency_pair) is not None}
        self._held: dict[str, _Held] = {}
        self._pending: dict[Side, dict[str, Decimal]] = {_SIDE_BUY: {}, _SIDE_SELL: {}}
        self._reserved: dict[str, Decimal] = {}
        self._market_buys: dict[str, _Held] = {}
        self._priced_in: MarketSnapshot | None = None  # the snapshot the market buys' reservations were summed in
        self._market_sums: dict[str, Decimal] = {}  # those reservations, per quote currency
        for order in orders:
            self.put(order)

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._held

    @property
    def currency_pairs(self) -> Mapping[str, str]:
        """The currency pairs among the instruments, by symbol, with the currency each one buys (its base)."""
        return self._pairs

    def get(self, order_id: str) -> OpenOrder | None:
        """The open order `order_id` as counted now (None when not open)."""
        held = self._held.get(order_id)
        return held.order if held is not None else None

    def put(self, order: OpenOrder) -> None:
        """Count `order` (replacing what was counted for its id); one with nothing remaining is removed."""
        if order.order_id in self._held:
            self.remove(order.order_id)
        if order.remaining <= 0:
            return
        pending = self._pending[order.side]
        signed = order.remaining if order.side is _SIDE_BUY else -order.remaining
        pending[order.symbol] = pending.get(order.symbol, _ZERO) + signed
        instrument = self._instruments.get(order.symbol)
        held = _Held(order, None, None)
        if order.side is _SIDE_BUY and instrument is not None:
            held.currency = instrument.quote_currency
            if order.type is _ORDER_TYPE_MARKET:
                self._market_buys[order.order_id] = held
                if self._priced_in is not None:
                    self._sum_market_buy(held, self._priced_in)
            else:
                limit = order.limit_price
                if (  # a limit buy as its intent takes it: priced at its limit, as `reserve_for` prices it
                    order.type is _ORDER_TYPE_LIMIT and order.stop_price is None and type(order.remaining) is Decimal
                    and order.remaining.is_finite() and type(limit) is Decimal and limit.is_finite() and limit > 0
                ):  # fmt: skip
                    held.reserve = reserve_at(order.remaining * limit, self._fee_model(instrument))
                else:
                    held.reserve = reserve_for(_intent(order), self._limits, None, fee_model=self._fee_model(instrument))
                self._reserved[held.currency] = self._reserved.get(held.currency, _ZERO) + held.reserve
        self._held[order.order_id] = held

    def sync(self, orders: Iterable[OpenOrder]) -> None:
        """Count exactly `orders` (the account's open orders as stored now): an order counted already just as it is
        is kept as counted, the new or changed ones are put, the others removed. The same sums as a new
        `OpenOrders` of them, without pricing again the reservation of every order that did not change."""
        held = self._held
        current: set[str] = set()
        for order in orders:
            current.add(order.order_id)
            kept = held.get(order.order_id)
            if kept is None or kept.order != order:
                self.put(order)
        for order_id in [order_id for order_id in held if order_id not in current]:
            self.remove(order_id)

    def remove(self, order_id: str) -> OpenOrder | None:
        """Stop counting `order_id` (it ended); the order as it was counted, or None."""
        held = self._held.pop(order_id, None)
        if held is None:
            return None
        order = held.order
        pending = self._pending[order.side]
        signed = order.remaining if order.side is _SIDE_BUY else -order.remaining
        left = pending.get(order.symbol, _ZERO) - signed
        if left:
            pending[order.symbol] = left
        else:
            pending.pop(order.symbol, None)
        if held.reserve is not None and held.currency is not None:
            total = self._reserved[held.currency] - held.reserve
            if total:
                self._reserved[held.currency] = total
            else:
                del self._reserved[held.currency]
        self._market_buys.pop(order_id, None)
        if held.summed and held.currency is not None:
            total = UNROUNDED.subtract(self._market_sums[held.currency], held.priced)
            if total:
                self._market_sums[held.currency] = total
            else:
                del self._market_sums[held.currency]
        return order

    def pending(self, side: Side, *, excluding: str | None = None) -> dict[str, Decimal]:
        """Signed remaining quantity of the open orders on `side`, by symbol (buys +, sells -)."""
        totals = dict(self._pending[side])
        held = self._held.get(excluding) if excluding is not None else None
        if held is not None and held.order.side is side:
            order = held.order
            totals[order.symbol] = totals.get(order.symbol, _ZERO) - (order.remaining if side is _SIDE_BUY else -order.remaining)
        return totals

    def pending_now(self, side: Side, excluding: str | None) -> Mapping[str, Decimal]:
        """`pending`, read-only: the kept totals themselves when nothing is excluded (no copy)."""
        return self._pending[side] if excluding is None else self.pending(side, excluding=excluding)

    def reserved_now(self, market: MarketSnapshot, excluding: str | None) -> Mapping[str, Decimal]:
        """`reserved`, read-only: the kept sums themselves when nothing is excluded and no market buy is open."""
        if excluding is None and not self._market_buys and all(self._reserved.values()):
            return self._reserved  # what `reserved` answers: no market buy to price, no zero sum to drop
        return self.reserved(market, excluding=excluding)

    def reserved(self, market: MarketSnapshot, *, excluding: str | None = None) -> dict[str, Decimal]:
        """What the open buys reserve, per quote currency: fixed reservations, and market buys at the mark."""
        sums = dict(self._reserved)
        held = self._held.get(excluding) if excluding is not None else None
        if held is not None and held.reserve is not None and held.currency is not None:
            sums[held.currency] -= held.reserve
        if self._market_buys:
            if market is not self._priced_in:  # every market buy priced in `market`, and summed
                self._priced_in, self._market_sums = market, {}
                for market_buy in self._market_buys.values():
                    self._sum_market_buy(market_buy, market)
            for currency, amount in self._market_sums.items():
                sums[currency] = sums.get(currency, _ZERO) + amount
            if held is not None and held.summed and held.currency is not None:
                sums[held.currency] -= held.priced
        return {currency: amount for currency, amount in sums.items() if amount}

    def _sum_market_buy(self, market_buy: _Held, market: MarketSnapshot) -> None:
        """Price `market_buy` at `market`'s mark and add it to `_market_sums` (nothing, when the mark cannot price it)."""
        market_buy.summed = False
        order = market_buy.order
        mark = market.mark(order.symbol)
        if mark is None:
            return  # a market buy waiting for its first price reserves nothing we can price
        known = market_buy.priced_at
        if known is not None and known == mark and known.as_tuple() == mark.as_tuple():  # the same mark, digit for digit
            reserve = market_buy.priced
        else:
            instrument = self._instruments[order.symbol]
            try:
                reserve = reserve_for(_intent(order), self._limits, mark, fee_model=self._fee_model(instrument))
            except ValueError:
                return  # a mark that cannot price a buy (not positive) reserves nothing we can price
            market_buy.priced_at, market_buy.priced = mark, reserve
        currency = self._instruments[order.symbol].quote_currency
        self._market_sums[currency] = UNROUNDED.add(self._market_sums.get(currency, _ZERO), reserve)  # exact: see remove
        market_buy.summed = True


def _intent(order: OpenOrder) -> OrderIntent:
    return OrderIntent("", order.symbol, order.side, order.type, order.remaining, order.limit_price, order.stop_price)


@fast_init
@dataclass(frozen=True, slots=True)
class BuyingPower:
    """The cash a purchase in one currency may spend under the account's FX policy, in the base currency."""

    cash: Decimal
    """The cash that counts (auto-convert: the base currency's net of the FX fee)."""
    reserved: Decimal
    """What open orders hold of it."""
    counted: str
    """Which cash counts, as a denial says it."""

    @property
    def available(self) -> Decimal:
        """What is left for a new purchase."""
        return self.cash - self.reserved


def buying_power(
    books: AccountBooks,
    rates: FxRates,
    currency: str,
    reserved: Mapping[str, Decimal],
    *,
    fx_fee_bps: Decimal = _ZERO,
) -> BuyingPower:
    """What a purchase in `currency` may spend, in the account's base currency (see the module docstring).

    `reserved` is what open buys hold, per their quote currency. Under auto-convert a purchase in a
    currency other than the base pays from that currency's cash first and buys what is missing with
    the base currency at the rate plus `fx_fee_bps`, so base cash counts net of the fee: the order
    passes exactly when the fill's conversion can be paid. `MissingFxRate` when a needed rate is absent.
    """
    return _buying_power(books.base_currency, books.fx_policy, books.cash, rates, currency, reserved, fx_fee_bps)


def _buying_power(
    base: str,
    fx_policy: FxPolicy,
    cash: Mapping[str, Decimal],
    rates: FxRates,
    currency: str,
    reserved: Mapping[str, Decimal],
    fx_fee_bps: Decimal,
) -> BuyingPower:
    """`buying_power` of an account in `base` under `fx_policy` holding `cash` (per currency)."""
    held = reserved
    if _one_currency(base, fx_policy, cash, currency, held):
        # one currency in play: no conversion, nothing owed from a third currency (the general rule gives the same)
        return BuyingPower(cash.get(base, _ZERO), held.get(base, _ZERO), _auto_convert_counted(base))
    if fx_policy is _FX_POLICY_MULTI_CURRENCY:
        return BuyingPower(
            _in(rates, cash, base),
            _in(rates, held, base),
            f"cash in every currency, valued in {base} (multi-currency margin)",
        )
    markup = 1 + fx_fee_bps / _BPS
    # A third currency's cash is not spent for this purchase; what its open orders need beyond it comes from the base.
    third = {c: held.get(c, _ZERO) - cash.get(c, _ZERO) for c in {*cash, *held} - {base, currency}}
    from_base = held.get(base, _ZERO) + markup * _in(rates, {c: short for c, short in third.items() if short > 0}, base)
    if currency == base:
        return BuyingPower(cash.get(base, _ZERO), from_base, f"{base} cash (auto-convert)")
    order_currency = {currency: cash.get(currency, _ZERO)}
    return BuyingPower(
        _in(rates, order_currency, base) + cash.get(base, _ZERO) / markup,
        _in(rates, {currency: held.get(currency, _ZERO)}, base) + from_base / markup,
        f"{currency} and {base} cash, {base} net of the {fx_fee_bps} bp FX fee (auto-convert; convert other currencies first)",
    )


def _one_currency(
    base: str, fx_policy: FxPolicy, cash: Mapping[str, Decimal], currency: str, reserved: Mapping[str, Decimal]
) -> bool:
    """Whether a purchase in `currency` is `buying_power`'s one-currency case: the base currency under auto-convert,
    and each of the cash and `reserved` holding nothing but (at most) the base currency."""
    return (
        currency == base and fx_policy is _FX_POLICY_AUTO_CONVERT
        and (not cash or (len(cash) == 1 and base in cash)) and (not reserved or (len(reserved) == 1 and base in reserved))
    )  # fmt: skip


def _in(rates: FxRates, amounts: Mapping[str, Decimal], base: str) -> Decimal:
    """The sum of `amounts` (by currency) in `base`."""
    total = _ZERO
    for currency, amount in amounts.items():
        if amount:
            total += rates.convert(amount, currency, base) if currency != base else amount
    return total


def exposure(position: PositionState, mark: Decimal | None) -> Decimal:
    """What one holding adds to the gross exposure, in its own currency: |quantity| x mark, at cost without a mark."""
    return abs(position.quantity) * mark if mark is not None else abs(position.cost)


class AccountRisk:
    """The risk checks' inputs of one account, kept in memory by the account's single writer and moved by each event.

    Built from the account's `AccountBooks`, its `OpenOrders` and the `MarketSnapshot` in force, then
    updated instead of rebuilt: `on_entry` for each journal entry booked (cash and realized P&L move by its
    postings, as the books move), `on_position` for the position a fill leaves, `on_market` for a new
    snapshot (the marks of the symbols whose quotes changed move their gross exposure terms), `new_day`
    when the day's realized P&L starts again; the open orders are the `OpenOrders` it was given, which
    its writer keeps up to date. `state` answers what `account_risk_state` of books built afresh answers
    (that function is this class, built and read once).

    Gross exposure is kept per holding currency as an exact sum of each holding's `exposure` term, so
    updating one term gives the same sum as adding every term again; it is converted into the base currency
    when read. Only the account's single writer may call the `on_*` methods.
    """

    __slots__ = (
        "_cash", "_exposure", "_fx_policy", "_market", "_positions", "_realized", "_terms",
        "allow_short", "base_currency", "open_orders",
    )  # fmt: skip

    def __init__(self, books: AccountBooks, open_orders: OpenOrders, market: MarketSnapshot) -> None:
        self.base_currency, self.allow_short, self._fx_policy = books.base_currency, books.allow_short, books.fx_policy
        self.open_orders = open_orders
        self._market = market
        self._cash: dict[str, Decimal] = dict(books.cash)
        self._realized: dict[str, Decimal] = dict(books.realized_today)
        self._positions: dict[str, Decimal] = {}  # signed quantities of the holdings
        self._terms: dict[str, tuple[PositionState, str, Decimal]] = {}  # holdings at cost, currency, exposure term
        self._exposure: dict[str, Decimal] = {}  # exact sums of the terms, per holding currency (none at zero)
        for holding in books.holdings.values():
            self.on_position(holding.position, holding.currency)

    @property
    def market(self) -> MarketSnapshot:
        """The snapshot in force (see `on_market`)."""
        return self._market

    def on_entry(self, entry: JournalEntry) -> None:
        """`entry` was booked: cash moves by its cash postings and today's realized P&L by its realized P&L postings."""
        cash, realized = self._cash, self._realized
        for posting in entry.postings:
            kind = posting.account.kind
            if kind is _ACCOUNT_KIND_CASH:
                currency = posting.currency
                cash[currency] = cash.get(currency, _ZERO) + posting.amount
            elif kind is _ACCOUNT_KIND_REALIZED_PNL:  # the journal keeps gains as credits
                currency = posting.currency
                realized[currency] = realized.get(currency, _ZERO) - posting.amount

    def new_day(self) -> None:
        """A new day starts: nothing realized today yet."""
        self._realized = {}

    def on_position(self, position: PositionState, currency: str) -> None:
        """The account's position in `position.symbol` (priced in `currency`) is now `position` (flat: none)."""
        symbol = position.symbol
        if position.quantity:
            self._positions[symbol] = position.quantity
            self._mark(symbol, position, currency)
        elif symbol in self._terms:
            del self._positions[symbol]
            self._mark(symbol, None, currency)

    def on_market(self, market: MarketSnapshot, changed: Iterable[str] | None = None) -> None:
        """`market` is in force now; the quotes of the symbols in `changed` moved (every symbol's when None)."""
        self._market = market
        terms = self._terms
        for symbol in list(terms) if changed is None else changed:
            known = terms.get(symbol)
            if known is not None:
                self._mark(symbol, known[0], known[1])

    def _mark(self, symbol: str, position: PositionState | None, currency: str) -> None:
        """Put the exposure term of `position` (None: no holding) in place of the one `symbol` had."""
        terms, sums = self._terms, self._exposure
        known = terms.pop(symbol, None)
        if known is not None:
            _, was_in, term = known
            total = UNROUNDED.subtract(sums[was_in], term)
            if total:
                sums[was_in] = total
            else:
                del sums[was_in]
        if position is not None:
            term = exposure(position, self._market.mark(symbol))
            terms[symbol] = (position, currency, term)
            total = UNROUNDED.add(sums.get(currency, _ZERO), term)
            if total:
                sums[currency] = total
            else:
                sums.pop(currency, None)

    def state(
        self,
        *,
        side: Side,
        currency: str | None = None,
        orders_in_last_minute: int,
        trading_state: TradingState = TradingState.ACTIVE,
        excluding: str | None = None,
        fx_fee_bps: Decimal = _ZERO,
    ) -> AccountRiskState:
        """What the checks need about the account now, for a new order on `side` in `currency` (the instrument's
        quote currency; the base currency when None), under the FX fee `fx_fee_bps` (see the module docstring)."""
        base, market, open_orders, cash = self.base_currency, self._market, self.open_orders, self._cash
        rates = market.rates
        reserved = open_orders.reserved_now(market, excluding)
        if _one_currency(base, self._fx_policy, cash, currency or base, reserved):  # `_buying_power`'s first case
            cash_available, held, counted = cash.get(base, _ZERO), reserved.get(base, _ZERO), _auto_convert_counted(base)
        else:
            power = _buying_power(base, self._fx_policy, cash, rates, currency or base, reserved, fx_fee_bps)
            cash_available, held, counted = power.cash, power.reserved, power.counted
        positions = dict(self._positions)
        for symbol, bought in open_orders.currency_pairs.items():
            positions[symbol] = cash.get(bought, _ZERO)  # a currency pair is held as cash in its base currency
        for symbol, pending in open_orders.pending_now(side, excluding).items():
            positions[symbol] = positions.get(symbol, _ZERO) + pending
        sums = self._exposure
        gross = sums[base] if len(sums) == 1 and base in sums else _in(rates, sums, base)
        realized = self._realized  # in the common case, one currency: nothing to convert
        realized_today = realized[base] if len(realized) == 1 and base in realized else _in(rates, realized, base)
        return _new_risk_state(  # the fields in declaration order (see `AccountRiskState`), checked as its constructor checks
            cash_available, held, positions, gross, realized_today, orders_in_last_minute, self.allow_short,
            trading_state, counted,
        )  # fmt: skip


def account_risk_state(
    books: AccountBooks,
    open_orders: OpenOrders,
    market: MarketSnapshot,
    *,
    side: Side,
    currency: str | None = None,
    orders_in_last_minute: int,
    trading_state: TradingState = TradingState.ACTIVE,
    excluding: str | None = None,
    fx_fee_bps: Decimal = _ZERO,
) -> AccountRiskState:
    """What the checks need about the account now, for a new order on `side` in `currency` (the instrument's
    quote currency; the base currency when None), under the FX fee `fx_fee_bps` (see the module docstring):
    `AccountRisk.state` of the books, built once."""
    return AccountRisk(books, open_orders, market).state(
        side=side,
        currency=currency,
        orders_in_last_minute=orders_in_last_minute,
        trading_state=trading_state,
        excluding=excluding,
        fx_fee_bps=fx_fee_bps,
    )


_new_risk_state = builder(AccountRiskState)


@lru_cache(maxsize=64)
def _auto_convert_counted(base: str) -> str:
    """`BuyingPower.counted` of a one-currency auto-convert account (what `buying_power` says), formatted once."""
    return f"{base} cash (auto-convert)"


# Enum members as module constants: a member looked up on its class goes through EnumType's attribute
# hook on every use (about 80 ns in 3.11), a module global does not; the hot paths above use these.
_FX_POLICY_AUTO_CONVERT = FxPolicy.AUTO_CONVERT
_FX_POLICY_MULTI_CURRENCY = FxPolicy.MULTI_CURRENCY
_ACCOUNT_KIND_CASH = AccountKind.CASH
_ACCOUNT_KIND_REALIZED_PNL = AccountKind.REALIZED_PNL
_ORDER_TYPE_LIMIT = OrderType.LIMIT
_ORDER_TYPE_MARKET = OrderType.MARKET
_SIDE_BUY = Side.BUY
_SIDE_SELL = Side.SELL
