"""`AccountRisk` kept by its single writer equals `account_risk_state` of books built afresh, after any sequence.

A seeded random account books fills (long and short, in USD and AUD, and conversions through EURUSD), deposits,
quotes (marks appearing, moving and vanishing; FX rates too) and open orders, under both FX policies; after every
step the state kept by updates is compared with the state of books rebuilt from the journal's running balances,
for both sides and every order currency. Leaving one update out must show.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tradestack.domain.books import AccountBooks, BalanceLine, FxPolicy, books_of
from tradestack.domain.instruments import instrument
from tradestack.domain.ledger import AccountKind, JournalEntry, currency_fill_entry, deposit, fill_entry_with_effect
from tradestack.domain.marketdata import Side
from tradestack.domain.matching import FeeModel
from tradestack.domain.orders import OrderType
from tradestack.domain.portfolio import FxRates, MissingFxRate, PositionState
from tradestack.domain.risk import AccountRiskState, RiskLimits
from tradestack.domain.riskstate import AccountRisk, OpenOrder, OpenOrders, account_risk_state
from tradestack.domain.snapshot import MarketSnapshot, QuoteView

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
BASE = "USD"
TRADED = {"AAPL": "USD", "BHP": "AUD"}  # symbol -> quote currency, held as positions
INSTRUMENTS = {s: instrument(s) for s in (*TRADED, "EURUSD")}
FEE = FeeModel(bps=Decimal(5), minimum=Decimal(1))
LIMITS = RiskLimits(
    max_order_notional=Decimal(1_000_000),
    max_position_quantity=Decimal(10_000),
    max_gross_exposure=Decimal(10_000_000),
    price_collar_pct=Decimal(5),
    max_orders_per_minute=600,
    daily_loss_limit=Decimal(100_000),
    currency=BASE,
)


class Books:
    """The account's journal as running balances, folded independently of `AccountRisk`: what the books answer."""

    def __init__(self, policy: FxPolicy) -> None:
        self.policy = policy
        self.balances: dict[tuple[str, str], list[Decimal]] = {}
        self.realized: dict[str, Decimal] = {}
        self.positions = {s: PositionState(s) for s in TRADED}

    def book(self, entry: JournalEntry) -> None:
        for posting in entry.postings:
            held = self.balances.setdefault((str(posting.account), posting.currency), [Decimal(0), Decimal(0)])
            held[0] += posting.amount
            if posting.quantity is not None:
                held[1] += posting.quantity
            if posting.account.kind is AccountKind.REALIZED_PNL:
                self.realized[posting.currency] = self.realized.get(posting.currency, Decimal(0)) - posting.amount

    def snapshot(self) -> AccountBooks:
        lines = [BalanceLine(name, currency, amount, quantity) for (name, currency), (amount, quantity) in self.balances.items()]
        return books_of("acct", BASE, lines, allow_short=True, fx_policy=self.policy, realized_today=self.realized)


def _quote(rng: random.Random, around: Decimal) -> QuoteView | None:
    kind = rng.random()
    if kind < 0.15:
        return None  # no mark: a holding counts at cost
    mid = (around * Decimal(rng.randint(900, 1100)) / 1000).quantize(Decimal("0.01"))
    if kind < 0.4:
        return QuoteView(None, None, mid)  # a last price
    return QuoteView(mid - Decimal("0.01"), mid + Decimal("0.03"))  # the mid of a quote


def _rates(rng: random.Random) -> FxRates:
    pairs = {}
    if rng.random() < 0.9:
        pairs[("AUD", "USD")] = Decimal(rng.randint(6000, 7000)) / 10_000
    if rng.random() < 0.9:
        pairs[("EUR", "USD")] = Decimal(rng.randint(10_500, 11_500)) / 10_000
    return FxRates(pairs)


def _outcome(read: object) -> AccountRiskState | str:
    try:
        return read()  # type: ignore[operator, no-any-return]
    except MissingFxRate as exc:
        return f"MissingFxRate: {exc}"


def _compare(
    kept: AccountRisk, books: Books, orders: OpenOrders, open_ids: list[str], market: MarketSnapshot, rng: random.Random
) -> bool:
    """Whether every state the kept inputs give equals the state of the books rebuilt; asserts nothing."""
    fresh = books.snapshot()
    same = True
    for side in (Side.BUY, Side.SELL):
        for currency in (None, "USD", "AUD", "EUR"):
            excluding = rng.choice([None, *open_ids[:2]])  # a counted order, or none
            args = {
                "side": side, "currency": currency, "orders_in_last_minute": 3, "excluding": excluding,
                "fx_fee_bps": Decimal(25),
            }  # fmt: skip
            kept_state = _outcome(lambda a=args: kept.state(**a))  # type: ignore[misc]
            fresh_state = _outcome(lambda a=args: account_risk_state(fresh, orders, market, **a))  # type: ignore[misc]
            same = same and kept_state == fresh_state
    return same


def _run(seed: int, policy: FxPolicy, skip: str | None) -> tuple[int, int]:
    """Steps of a random account, (steps compared, steps whose kept state differed); `skip` leaves one update out."""
    rng = random.Random(seed)
    books = Books(policy)
    orders = OpenOrders(LIMITS, INSTRUMENTS, lambda _: FEE)
    open_ids: list[str] = []
    quotes: dict[str, QuoteView] = {}
    market = MarketSnapshot(dict(quotes), _rates(rng))
    opening = deposit("je-0", T0, BASE, Decimal(500_000))
    books.book(opening)
    kept = AccountRisk(books.snapshot(), orders, market)
    prices = {"AAPL": Decimal(190), "BHP": Decimal(45)}
    skipped = False
    differed = compared = 0
    for step in range(1, 160):
        ts = T0 + timedelta(minutes=step)
        draw = rng.random()
        if draw < 0.4:  # a fill of a traded symbol, long or short
            symbol = rng.choice(list(TRADED))
            currency = TRADED[symbol]
            side = rng.choice([Side.BUY, Side.SELL])
            price = (prices[symbol] * Decimal(rng.randint(950, 1050)) / 1000).quantize(Decimal("0.01"))
            entry, effect = fill_entry_with_effect(
                f"je-{step}", ts, symbol, side, Decimal(rng.randint(1, 60)), price, currency,
                Decimal(rng.randint(0, 300)) / 100, currency, books.positions[symbol], cash_places=2,
            )  # fmt: skip
            books.book(entry)
            books.positions[symbol] = effect.position
            if skip == "entry" and not skipped:
                skipped = True
            else:
                kept.on_entry(entry)
            if skip == "position" and not skipped:
                skipped = True
            else:
                kept.on_position(effect.position, currency)
        elif draw < 0.5:  # a currency conversion through the pair, or a deposit in another currency
            if rng.random() < 0.5:
                side = rng.choice([Side.BUY, Side.SELL])
                rate = Decimal(rng.randint(10_500, 11_500)) / 10_000
                entry = currency_fill_entry(
                    f"je-{step}", ts, side, Decimal(1000 * rng.randint(1, 5)), rate, ("EUR", "USD"), Decimal(1), "USD",
                    cash_places=2,
                )  # fmt: skip
            else:
                entry = deposit(f"je-{step}", ts, rng.choice(["AUD", "EUR"]), Decimal(rng.randint(1, 9000)))
            books.book(entry)
            kept.on_entry(entry)
        elif draw < 0.75:  # quotes move (some vanish), and the rates may
            changed = rng.sample(list(TRADED), rng.randint(1, 2))
            for symbol in changed:
                quote = _quote(rng, prices[symbol])
                if quote is None:
                    quotes.pop(symbol, None)
                else:
                    quotes[symbol] = quote
                    prices[symbol] = quote.mark[0] if quote.mark is not None else prices[symbol]
            rates = _rates(rng) if rng.random() < 0.3 else market.rates
            market = MarketSnapshot(dict(quotes), rates)
            if skip == "market" and not skipped and any(books.positions[s].quantity for s in changed):
                skipped = True
            else:
                kept.on_market(market, None if rng.random() < 0.3 else changed)
        elif draw < 0.95:  # open orders come and go (the writer keeps them in the `OpenOrders` both read)
            if open_ids and rng.random() < 0.4:
                orders.remove(open_ids.pop(rng.randrange(len(open_ids))))
            else:
                symbol = rng.choice([*TRADED, "EURUSD"])
                market_order = rng.random() < 0.3
                limit = None if market_order else (prices.get(symbol, Decimal("1.1")) * Decimal("0.99")).quantize(Decimal("0.01"))
                open_ids.append(f"o-{step}")
                orders.put(
                    OpenOrder(
                        f"o-{step}", symbol, rng.choice([Side.BUY, Side.SELL]),
                        OrderType.MARKET if market_order else OrderType.LIMIT, Decimal(rng.randint(1, 40)), limit,
                    )
                )  # fmt: skip
        else:  # a new day: nothing realized yet
            books.realized = {}
            kept.new_day()
        compared += 1
        if not _compare(kept, books, orders, open_ids, market, rng):
            differed += 1
    assert skip is None or skipped, "the update to leave out never came"
    return compared, differed


@pytest.mark.parametrize("policy", [FxPolicy.AUTO_CONVERT, FxPolicy.MULTI_CURRENCY])
@pytest.mark.parametrize("seed", range(6))
def test_the_kept_state_equals_the_state_of_books_built_afresh_after_every_step(seed: int, policy: FxPolicy) -> None:
    compared, differed = _run(seed, policy, None)
    assert compared > 100
    assert differed == 0


@pytest.mark.parametrize("skip", ["entry", "position", "market"])
@pytest.mark.parametrize("policy", [FxPolicy.AUTO_CONVERT, FxPolicy.MULTI_CURRENCY])
def test_leaving_one_update_out_shows(skip: str, policy: FxPolicy) -> None:
    _, differed = _run(11, policy, skip)
    assert differed > 0


def test_gross_exposure_is_kept_per_currency_at_the_mark_else_at_cost() -> None:
    books = books_of(
        "acct",
        BASE,
        [
            BalanceLine("cash:USD", "USD", Decimal(1000)),
            BalanceLine("position:AAPL", "USD", Decimal(-1900), Decimal(-10)),  # short 10 at 190
            BalanceLine("position:BHP", "AUD", Decimal(450), Decimal(10)),
        ],
        allow_short=True,
    )
    rates = FxRates({("AUD", "USD"): Decimal("0.65")})
    orders = OpenOrders(LIMITS, INSTRUMENTS, lambda _: FEE)
    kept = AccountRisk(books, orders, MarketSnapshot({"AAPL": QuoteView(last=Decimal(200))}, rates))
    state = kept.state(side=Side.BUY, orders_in_last_minute=0)
    assert state.gross_exposure == Decimal(2000) + Decimal(450) * Decimal("0.65")  # BHP at cost: no mark
    kept.on_market(MarketSnapshot({"AAPL": QuoteView(last=Decimal(200)), "BHP": QuoteView(last=Decimal(50))}, rates), ["BHP"])
    assert kept.state(side=Side.BUY, orders_in_last_minute=0).gross_exposure == Decimal(2000) + Decimal(500) * Decimal("0.65")
    kept.on_position(PositionState("AAPL"), "USD")  # closed
    state = kept.state(side=Side.SELL, orders_in_last_minute=0)
    assert state.gross_exposure == Decimal(500) * Decimal("0.65")
    assert state.positions == {"BHP": Decimal(10), "EURUSD": Decimal(0)}  # a pair counts as its base currency's cash


@pytest.mark.parametrize("seed", range(4))
def test_market_buys_summed_in_one_snapshot_equal_them_priced_afresh(seed: int) -> None:
    """`OpenOrders` sums its market buys' reservations for the snapshot it last priced them in, and moves the sums as
    orders are put, replaced and removed on that snapshot; a new snapshot prices them all again. After every step its
    `reserved` (with no order left out, and with each open one left out) equals that of `OpenOrders` built afresh from
    the orders open then (but the one left out), on the same snapshot."""
    rng = random.Random(seed)
    orders = OpenOrders(LIMITS, INSTRUMENTS, lambda _: FEE)
    open_orders: dict[str, OpenOrder] = {}
    prices = {"AAPL": Decimal(190), "BHP": Decimal(45), "EURUSD": Decimal("1.1")}
    market = MarketSnapshot({}, _rates(rng))
    snapshots = 0
    for step in range(200):
        draw = rng.random()
        if draw < 0.15:  # a new snapshot: marks move, appear or vanish
            quotes = {s: q for s in prices if (q := _quote(rng, prices[s])) is not None}
            market = MarketSnapshot(quotes, _rates(rng))
            snapshots += 1
        elif draw < 0.35 and open_orders:  # one ends
            order_id = rng.choice(list(open_orders))
            del open_orders[order_id]
            orders.remove(order_id)
        elif draw < 0.5 and open_orders:  # one partly fills: counted again with what is left
            order = open_orders[rng.choice(list(open_orders))]
            left = OpenOrder(order.order_id, order.symbol, order.side, order.type, order.remaining - 1, order.limit_price)
            open_orders[order.order_id] = left
            orders.put(left)
            if left.remaining <= 0:
                del open_orders[order.order_id]
        else:  # a new one, mostly market buys
            symbol = rng.choice(list(prices))
            market_order = rng.random() < 0.7
            limit = None if market_order else (prices[symbol] * Decimal("0.99")).quantize(Decimal("0.01"))
            side = Side.BUY if rng.random() < 0.8 else Side.SELL
            order = OpenOrder(
                f"o-{step}", symbol, side, OrderType.MARKET if market_order else OrderType.LIMIT,
                Decimal(rng.randint(1, 40)), limit,
            )  # fmt: skip
            open_orders[order.order_id] = order
            orders.put(order)
        for excluding in (None, *open_orders):
            others = [order for order in open_orders.values() if order.order_id != excluding]
            assert orders.reserved(market, excluding=excluding) == OpenOrders(
                LIMITS, INSTRUMENTS, lambda _: FEE, others
            ).reserved(market), step
    assert snapshots > 10
