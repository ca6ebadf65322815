"""`account_risk_state` from books, open orders and a market snapshot; `OpenOrders` kept summed as orders change."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradestack.domain.books import AccountBooks, BalanceLine, books_of
from tradestack.domain.instruments import instrument
from tradestack.domain.ledger import AccountKind
from tradestack.domain.marketdata import Side
from tradestack.domain.matching import FeeModel
from tradestack.domain.orders import OrderType
from tradestack.domain.portfolio import FxRates, MissingFxRate
from tradestack.domain.risk import RiskLimits, TradingState
from tradestack.domain.riskstate import OpenOrder, OpenOrders, account_risk_state
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
    assert orders.reserved(MARKET, "USD") == Decimal(96)
    assert orders.pending(Side.BUY) == {"AAPL": Decimal(1)}
    assert orders.remove("b") is not None
    assert (orders.reserved(MARKET, "USD"), orders.pending(Side.BUY), len(orders)) == (Decimal(0), {}, 0)
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
    assert orders.reserved(MARKET, "USD") == Decimal(110) + Decimal(1)  # 100 + 10 % collar, fee minimum 1
    assert orders.reserved(MarketSnapshot(), "USD") == Decimal(0)


def test_money_in_other_currencies_is_converted_and_a_missing_rate_is_said() -> None:
    books = books_of("acct", "AUD", [BalanceLine("cash:USD", "USD", Decimal(100)), BalanceLine("cash:AUD", "AUD", Decimal(50))])
    rates = MarketSnapshot({}, FxRates({("AUD", "USD"): Decimal("0.625")}))
    state = account_risk_state(
        books, _orders(), rates, side=Side.BUY, orders_in_last_minute=0, trading_state=TradingState.REDUCING
    )
    assert state.cash_available == Decimal(50) + Decimal(160)
    assert state.trading_state is TradingState.REDUCING
    with pytest.raises(MissingFxRate):
        account_risk_state(books, _orders(), MarketSnapshot(), side=Side.BUY, orders_in_last_minute=0)


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
