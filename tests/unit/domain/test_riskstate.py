"""`account_risk_state` from books, open orders and a market snapshot; `OpenOrders` kept summed as orders change."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

import pytest

from tradestack.domain.books import AccountBooks, BalanceLine, FxPolicy, books_of
from tradestack.domain.instruments import instrument
from tradestack.domain.ledger import AccountKind
from tradestack.domain.marketdata import Side
from tradestack.domain.matching import FeeModel
from tradestack.domain.orders import OrderType
from tradestack.domain.portfolio import FxRates, MissingFxRate
from tradestack.domain.risk import OrderIntent, RiskLimits, TradingState, check_buying_power, reserve_for
from tradestack.domain.riskstate import OpenOrder, OpenOrders, account_risk_state, buying_power
from tradestack.domain.snapshot import MarketSnapshot, QuoteView, decode_quote

AAPL = instrument("AAPL")
INSTRUMENTS = {"AAPL": AAPL}
FEE = FeeModel(bps=Decimal(10), minimum=Decimal(1))
LIMITS = RiskLimits(
    max_order_notional=Decimal(1_000_000),
    max_position_quantity=Decimal(1_000),
    max_gross_exposure=Decimal(10_000_000),
    price_collar_pct=Decimal(10),
    max_orders_per_minute=600,
    daily_loss_limit=Decimal(100_000),
    currency="USD",
)
MARKET = MarketSnapshot({"AAPL": QuoteView(Decimal("99.9"), Decimal("100.1"), Decimal(100))}, FxRates({}))


def _orders(*orders: OpenOrder) -> OpenOrders:
    return OpenOrders(LIMITS, INSTRUMENTS, lambda _: FEE, orders)


def _books(cash: str = "10000", **extra: object) -> AccountBooks:
    lines = [BalanceLine("cash:USD", "USD", Decimal(cash))]
    lines += [BalanceLine(f"position:{s}", "USD", Decimal(q) * 90, Decimal(q)) for s, q in extra.items()]  # type: ignore[arg-type]
    return books_of("acct", "USD", lines)


def test_open_buys_reserve_notional_plus_fee_and_count_on_their_side_only() -> None:
    buys = [OpenOrder(f"b{n}", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(2), Decimal(95)) for n in range(3)]
    sell = OpenOrder("s", "AAPL", Side.SELL, OrderType.LIMIT, Decimal(4), Decimal(110))
    orders = _orders(*buys, sell)
    books = _books(AAPL="10")
    buy_state = account_risk_state(books, orders, MARKET, side=Side.BUY, orders_in_last_minute=3)
    # Each buy: 2 x 95 = 190 plus the minimum fee 1.
    assert buy_state.reserved_by_open_orders == 3 * Decimal(191)
    assert buy_state.positions == {"AAPL": Decimal(16)}  # 10 held + 6 pending buys
    sell_state = account_risk_state(books, orders, MARKET, side=Side.SELL, orders_in_last_minute=3)
    assert sell_state.positions == {"AAPL": Decimal(6)}  # 10 held - 4 pending sells
    assert sell_state.gross_exposure == Decimal(1000)  # 10 at the mark 100 (the last price)
    assert sell_state.cash_available == Decimal(10000)


def test_removing_and_replacing_orders_moves_the_sums_back() -> None:
    orders = _orders(OpenOrder("b", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(2), Decimal(95)))
    orders.put(OpenOrder("b", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(1), Decimal(95)))  # partly filled
    assert orders.reserved(MARKET) == {"USD": Decimal(96)}
    assert orders.pending(Side.BUY) == {"AAPL": Decimal(1)}
    assert orders.remove("b") is not None
    assert (orders.reserved(MARKET), orders.pending(Side.BUY), len(orders)) == ({}, {}, 0)
    orders.put(OpenOrder("gone", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(0), Decimal(95)))  # nothing left: not counted
    assert "gone" not in orders


def test_excluding_leaves_the_replaced_order_out() -> None:
    orders = _orders(
        OpenOrder("a", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(2), Decimal(95)),
        OpenOrder("b", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(3), Decimal(95)),
    )
    state = account_risk_state(_books(), orders, MARKET, side=Side.BUY, orders_in_last_minute=0, excluding="a")
    assert state.reserved_by_open_orders == Decimal(3 * 95 + 1)
    assert state.positions == {"AAPL": Decimal(3)}


def test_market_buys_reserve_at_the_mark_plus_the_collar_and_nothing_without_one() -> None:
    orders = _orders(OpenOrder("m", "AAPL", Side.BUY, OrderType.MARKET, Decimal(1)))
    assert orders.reserved(MARKET) == {"USD": Decimal(110) + Decimal(1)}  # 100 + 10 % collar, fee minimum 1
    assert orders.reserved(MarketSnapshot()) == {}


def test_money_in_other_currencies_is_converted_and_a_missing_rate_is_said() -> None:
    books = books_of("acct", "AUD", [BalanceLine("cash:USD", "USD", Decimal(100)), BalanceLine("cash:AUD", "AUD", Decimal(50))])
    rates = MarketSnapshot({}, FxRates({("AUD", "USD"): Decimal("0.625")}))
    state = account_risk_state(
        books,
        _orders(),
        rates,
        side=Side.BUY,
        currency="USD",
        orders_in_last_minute=0,
        trading_state=TradingState.REDUCING,
    )
    assert state.cash_available == Decimal(50) + Decimal(160)
    assert state.trading_state is TradingState.REDUCING
    with pytest.raises(MissingFxRate):
        account_risk_state(books, _orders(), MarketSnapshot(), side=Side.BUY, currency="USD", orders_in_last_minute=0)


def test_books_of_splits_balances_and_drops_flat_positions() -> None:
    books = books_of(
        "acct",
        "USD",
        [
            BalanceLine("cash:USD", "USD", Decimal(5)),
            BalanceLine("position:AAPL", "USD", Decimal(0), Decimal(0)),
            BalanceLine("fees:USD", "USD", Decimal(2)),
        ],
        realized_today={"USD": Decimal(-3)},
    )
    assert books.cash == {"USD": Decimal(5)}
    assert books.holdings == {}
    assert books.balances[AccountKind.FEES] == {"USD": Decimal(2)}
    assert books.position("AAPL").quantity == 0


@pytest.mark.parametrize(
    ("data", "mark", "rate"),
    [
        ({"bid": "99", "ask": "101", "last": "100.5"}, (Decimal("100.5"), "last"), Decimal(100)),
        ({"bid": "99", "ask": "101", "last": "0"}, (Decimal(100), "mid"), Decimal(100)),
        ({"bid": "101", "ask": "99", "last": None}, None, None),  # crossed: no mid
        ({"bid": "x", "ask": "99", "last": "7"}, (Decimal(7), "last"), Decimal(7)),
        ({"bid": "NaN", "ask": "-1", "last": "Infinity"}, None, None),
    ],
)
def test_one_rule_for_the_mark_and_one_for_the_rate(data: dict[str, object], mark: object, rate: object) -> None:
    quote = decode_quote(data)
    assert quote is not None
    assert (quote.mark, quote.rate) == (mark, rate)
    assert decode_quote(["not", "a", "quote"]) is None


AUD_USD = FxRates({("AUD", "USD"): Decimal("0.5")})  # 1 AUD = 0.5 USD: 1 USD = 2 AUD


def _aud_account(policy: FxPolicy, **cash: str) -> AccountBooks:
    lines = [BalanceLine(f"cash:{c}", c, Decimal(amount)) for c, amount in cash.items()]
    return books_of("acct", "AUD", lines, fx_policy=policy)


def test_auto_convert_spends_the_order_currency_and_the_base_net_of_the_fx_fee_never_a_third_currency() -> None:
    books = _aud_account(FxPolicy.AUTO_CONVERT, AUD="1000", USD="100", EUR="5000")
    power = buying_power(books, AUD_USD, "USD", {}, fx_fee_bps=Decimal(100))  # a 1 % fee, for round numbers
    # 100 USD = 200 AUD, plus 1000 AUD buys 1000 / 1.01 AUD worth of USD; the EUR does not count.
    assert power.cash == Decimal(200) + Decimal(1000) / Decimal("1.01")
    assert (power.reserved, "auto-convert" in power.counted) == (Decimal(0), True)
    assert buying_power(books, AUD_USD, "AUD", {}).available == Decimal(1000)  # an AUD purchase: AUD cash only


def test_auto_convert_passes_exactly_what_the_fill_time_conversion_can_pay() -> None:
    books = _aud_account(FxPolicy.AUTO_CONVERT, AUD="1010")
    fee = Decimal(100)
    # 500 USD at 2 AUD each, plus the 1 % FX fee: 1010 AUD exactly.
    fits = OrderIntent("acct", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(5), Decimal(100))
    too_much = OrderIntent("acct", "AAPL", Side.BUY, OrderType.LIMIT, Decimal("5.01"), Decimal(100))
    state = account_risk_state(
        books, _orders(), MarketSnapshot({}, AUD_USD), side=Side.BUY, currency="USD", orders_in_last_minute=0,
        fx_fee_bps=fee,
    )  # fmt: skip
    limits = replace(LIMITS, currency="AUD")

    def to_aud(amount: Decimal) -> Decimal:
        return AUD_USD.convert(amount, "USD", "AUD")

    assert check_buying_power(fits, limits, state, None, to_base=to_aud) is None
    denial = check_buying_power(too_much, limits, state, None, to_base=to_aud)
    assert denial is not None
    assert "counted: USD and AUD cash, AUD net of the 100 bp FX fee" in denial.reason


def test_open_orders_in_a_third_currency_draw_on_the_base_beyond_their_own_cash() -> None:
    books = _aud_account(FxPolicy.AUTO_CONVERT, AUD="1000", USD="50")
    # Open USD buys hold 150 USD: 50 from the USD cash, the other 100 USD (200 AUD) from the AUD.
    power = buying_power(books, AUD_USD, "AUD", {"USD": Decimal(150)})
    assert power.available == Decimal(800)
    # For another USD purchase the USD cash and its reservations count as they are.
    assert buying_power(books, AUD_USD, "USD", {"USD": Decimal(150)}).available == Decimal(800)


def test_multi_currency_margin_pools_every_currency_and_lets_one_go_negative() -> None:
    books = _aud_account(FxPolicy.MULTI_CURRENCY, AUD="1000", USD="-100", EUR="0")
    power = buying_power(books, AUD_USD, "USD", {"AUD": Decimal(100)}, fx_fee_bps=Decimal(100))
    assert (power.cash, power.reserved, power.available) == (Decimal(800), Decimal(100), Decimal(700))
    assert "multi-currency margin" in power.counted
    auto = buying_power(_aud_account(FxPolicy.AUTO_CONVERT, AUD="1000", EUR="1000"), AUD_USD, "AUD", {})
    pooled = buying_power(_aud_account(FxPolicy.MULTI_CURRENCY, AUD="1000", USD="1000"), AUD_USD, "AUD", {})
    assert (auto.available, pooled.available) == (Decimal(1000), Decimal(3000))


def test_a_currency_pair_is_held_as_the_cash_of_its_base_currency() -> None:
    eurusd = instrument("EURUSD")
    orders = OpenOrders(LIMITS, {"AAPL": AAPL, "EURUSD": eurusd}, lambda _: FEE)
    books = books_of("acct", "USD", [BalanceLine("cash:USD", "USD", Decimal(100)), BalanceLine("cash:EUR", "EUR", Decimal(2000))])
    rates = MarketSnapshot({}, FxRates({("EUR", "USD"): Decimal("1.08")}))
    state = account_risk_state(books, orders, rates, side=Side.SELL, currency="USD", orders_in_last_minute=0)
    assert state.position("EURUSD") == Decimal(2000)  # selling up to 2000 EURUSD is not a short


def _state_of(orders: OpenOrders, side: Side) -> object:
    return account_risk_state(_books(AAPL="10"), orders, MARKET, side=side, orders_in_last_minute=0)


def test_sync_counts_exactly_the_stored_open_orders_as_a_new_count_would() -> None:
    kept = [
        OpenOrder("filled", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(2), Decimal(95)),
        OpenOrder("part", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(5), Decimal(96)),
        OpenOrder("repriced", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(1), Decimal(97)),
        OpenOrder("same", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(3), Decimal(94)),
        OpenOrder("sell", "AAPL", Side.SELL, OrderType.LIMIT, Decimal(4), Decimal(110)),
        OpenOrder("market", "AAPL", Side.BUY, OrderType.MARKET, Decimal(1)),
    ]
    stored = [  # what another writer left: one filled, one part filled, one repriced, two new, the market buy done
        replace(kept[1], remaining=Decimal(2)),
        replace(kept[2], limit_price=Decimal(99)),
        kept[3],
        kept[4],
        OpenOrder("new buy", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(7), Decimal(93)),
        OpenOrder("new sell", "AAPL", Side.SELL, OrderType.STOP, Decimal(1), stop_price=Decimal(90)),
    ]
    synced = _orders(*kept)
    synced.sync(stored)
    fresh = _orders(*stored)
    assert {o.order_id for o in stored if synced.get(o.order_id) == o} == {o.order_id for o in stored}
    assert len(synced) == len(fresh) == len(stored)
    assert "filled" not in synced
    assert "market" not in synced
    for side in (Side.BUY, Side.SELL):
        assert _state_of(synced, side) == _state_of(fresh, side)
    assert synced.reserved(MARKET) == fresh.reserved(MARKET) == {"USD": Decimal(2 * 96 + 99 + 3 * 94 + 7 * 93 + 4)}
    synced.sync([])
    assert len(synced) == 0
    assert synced.reserved(MARKET) == {}
    assert _state_of(synced, Side.BUY) == _state_of(_orders(), Side.BUY)


def _exactly(amounts: dict[str, Decimal]) -> dict[str, tuple[object, ...]]:
    """Amounts digit for digit (``Decimal("1.0") == Decimal("1.00")``, but a stored amount keeps its digits)."""
    return {currency: tuple(amount.as_tuple()) for currency, amount in amounts.items()}


def test_a_marked_snapshot_marks_a_replaced_quote_afresh_and_still_equals_an_unmarked_one() -> None:
    quotes = {"AAPL": QuoteView(Decimal("99.9"), Decimal("100.1"))}
    market = MarketSnapshot(quotes, FxRates({}))
    assert market.marked("AAPL") == (Decimal(100), "mid")
    assert market.marked("AAPL") is market.marked("AAPL")  # worked out once for this quote
    quotes["AAPL"] = QuoteView(Decimal("101.9"), Decimal("102.1"), Decimal("102.05"))  # the same symbol, a new quote
    assert market.marked("AAPL") == (Decimal("102.05"), "last")
    assert market.mark("MSFT") is None
    assert market == MarketSnapshot(dict(quotes), FxRates({}))  # the memo takes no part in equality
    assert "_marks" not in repr(market)


@pytest.mark.parametrize("limit_buys", [False, True])
def test_market_buy_reservations_equal_a_fresh_count_over_random_marks_and_orders(limit_buys: bool) -> None:
    """The kept `OpenOrders` (market buys priced again only when their mark changes, digit for digit) answers what
    a new `OpenOrders` of the same orders answers, at every step of a random flow of puts, removes and quotes.

    Digit for digit while only market buys reserve; with limit buys too, equal in value: their kept sum keeps the
    places of every reservation ever added (as it always has), a fresh one only those of the orders open now."""
    rng = random.Random(12)
    same = _exactly if not limit_buys else dict
    msft = instrument("MSFT")
    instruments = {"AAPL": AAPL, "MSFT": msft}
    kept = OpenOrders(LIMITS, instruments, lambda _: FEE)
    orders: dict[str, OpenOrder] = {}
    # Marks repeat (by value, and by value with other digits: 100.0 and 100.00 reserve 110.00 and 110.000); none at times.
    marks = [None, Decimal(100), Decimal("100.0"), Decimal("100.00"), Decimal("100.05"), Decimal("99.95"), Decimal("250")]
    for step in range(600):
        action = rng.random()
        if action < 0.35:
            order_id = f"o{rng.randrange(12)}"
            symbol = rng.choice(["AAPL", "MSFT"])
            side = Side.BUY if rng.random() < 0.8 else Side.SELL
            kind = OrderType.MARKET if rng.random() < 0.7 else OrderType.LIMIT
            if kind is OrderType.LIMIT and not limit_buys:
                side = Side.SELL
            limit = None if kind is OrderType.MARKET else Decimal(rng.randint(9000, 11000)) / 100
            order = OpenOrder(order_id, symbol, side, kind, Decimal(rng.randint(0, 30)), limit)
            kept.put(order)
            if order.remaining > 0:
                orders[order_id] = order
            else:
                orders.pop(order_id, None)
        elif action < 0.5 and orders:
            order_id = rng.choice(sorted(orders))
            kept.remove(order_id)
            del orders[order_id]
        quotes = {}
        for symbol in ("AAPL", "MSFT"):
            mark = rng.choice(marks)
            if mark is not None:
                quotes[symbol] = QuoteView(last=mark)
        market = MarketSnapshot(quotes, FxRates({}))
        fresh = OpenOrders(LIMITS, instruments, lambda _: FEE, orders.values())
        excluding = rng.choice([None, *sorted(orders)]) if orders else None
        assert same(kept.reserved(market, excluding=excluding)) == same(fresh.reserved(market, excluding=excluding)), step
        assert same(dict(kept.reserved_now(market, None))) == same(fresh.reserved(market)), step


def test_open_limit_buys_reserve_what_reserve_for_prices_each_digit_for_digit() -> None:
    """`put` prices a limit buy at its limit without building its intent: the same sum, digit for digit, as
    `reserve_for` of each order's intent (and stop-limit buys still go through `reserve_for`)."""
    rng = random.Random(28)
    for _ in range(200):
        orders = []
        for number in range(rng.randint(1, 6)):
            kind = rng.choice([OrderType.LIMIT, OrderType.LIMIT, OrderType.STOP_LIMIT])
            limit = Decimal(rng.randint(1, 50_000)) / rng.choice([1, 10, 100, 1000])
            stop = Decimal(rng.randint(1, 50_000)) / 100 if kind is OrderType.STOP_LIMIT else None
            remaining = Decimal(rng.randint(1, 500)) / rng.choice([1, 10])
            orders.append(OpenOrder(f"o{number}", "AAPL", Side.BUY, kind, remaining, limit, stop))
        expected = Decimal(0)
        for order in orders:
            intent = OrderIntent("", "AAPL", Side.BUY, order.type, order.remaining, order.limit_price, order.stop_price)
            expected += reserve_for(intent, LIMITS, None, fee_model=FEE)
        reserved = _orders(*orders).reserved(MARKET)
        assert reserved == {"USD": expected}
        assert reserved["USD"].as_tuple() == expected.as_tuple()
