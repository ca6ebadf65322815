import re
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from tradestack.domain.marketdata import Side
from tradestack.domain.matching import FeeModel
from tradestack.domain.orders import OrderType
from tradestack.domain.risk import (
    AccountRiskState,
    OrderIntent,
    RiskCheck,
    RiskDenial,
    RiskLimits,
    TradingState,
    check_buying_power,
    check_daily_loss,
    check_gross_exposure,
    check_order_notional,
    check_order_rate,
    check_position_limit,
    check_price_collar,
    check_reference_price,
    check_short_selling,
    check_trading_state,
    evaluate,
    order_price,
    reduces_position,
    reserve_at,
    reserve_for,
    same_currency,
)

LIMITS = RiskLimits(
    max_order_notional=Decimal(100_000),
    max_position_quantity=Decimal(1_000),
    max_gross_exposure=Decimal(1_000_000),
    price_collar_pct=Decimal(5),
    max_orders_per_minute=30,
    daily_loss_limit=Decimal(5_000),
    currency="USD",
)
STATE = AccountRiskState(
    cash_available=Decimal(1_000_000),
    reserved_by_open_orders=Decimal(0),
    positions={},
    gross_exposure=Decimal(0),
    realized_pnl_today=Decimal(0),
    orders_in_last_minute=0,
    allow_short=False,
    trading_state=TradingState.ACTIVE,
)
LAST = Decimal("100.00")
ACTIVE = TradingState.ACTIVE


def intent(
    side: str, quantity: str, order_type: str = "limit", limit: str | None = "100.00", stop: str | None = None
) -> OrderIntent:
    return OrderIntent(
        account_id="acc-1",
        symbol="AAPL",
        side=Side(side),
        type=OrderType(order_type),
        quantity=Decimal(quantity),
        limit_price=Decimal(limit) if limit is not None and order_type in ("limit", "stop_limit") else None,
        stop_price=Decimal(stop) if stop is not None else None,
    )


def holding(quantity: str, **changes: object) -> AccountRiskState:
    return replace(STATE, positions={"AAPL": Decimal(quantity)}, **changes)  # type: ignore[arg-type]


def denial(check: RiskCheck, reason: str) -> RiskDenial:
    return RiskDenial(check, reason)


# -- trading state ---------------------------------------------------------------------------------


def test_global_halt_denies_everything() -> None:
    result = evaluate(intent("sell", "1"), LIMITS, holding("10"), TradingState.HALTED, LAST)
    assert result == denial(RiskCheck.TRADING_STATE, "trading is halted for all accounts")


def test_account_halt_denies_everything_even_when_the_platform_is_active() -> None:
    result = evaluate(intent("sell", "1"), LIMITS, holding("10", trading_state=TradingState.HALTED), ACTIVE, LAST)
    assert result == denial(RiskCheck.TRADING_STATE, "trading is halted for account acc-1")


def test_reducing_allows_an_order_that_shrinks_the_position() -> None:
    assert evaluate(intent("sell", "5"), LIMITS, holding("10"), TradingState.REDUCING, LAST) is None
    assert evaluate(intent("sell", "10"), LIMITS, holding("10"), TradingState.REDUCING, LAST) is None
    assert evaluate(intent("buy", "4"), LIMITS, holding("-10", allow_short=True), TradingState.REDUCING, LAST) is None


def test_reducing_denies_a_flip() -> None:
    result = evaluate(intent("sell", "15"), LIMITS, holding("10", allow_short=True), TradingState.REDUCING, LAST)
    assert result == denial(
        RiskCheck.TRADING_STATE,
        "trading is reduce-only for all accounts: sell 15 AAPL would take the position from 10 to -5; "
        "only orders that shrink a position without flipping it are allowed",
    )


def test_account_reducing_denies_a_buy_that_grows_the_position() -> None:
    state = holding("10", trading_state=TradingState.REDUCING)
    result = evaluate(intent("buy", "1"), LIMITS, state, ACTIVE, LAST)
    assert result is not None
    assert result.check is RiskCheck.TRADING_STATE
    assert result.reason.startswith("trading is reduce-only for account acc-1: buy 1 AAPL would take the position from 10 to 11")


def test_global_reducing_overrides_an_active_account() -> None:
    result = evaluate(intent("buy", "1"), LIMITS, STATE, TradingState.REDUCING, LAST)
    assert result is not None
    assert result.check is RiskCheck.TRADING_STATE


# -- order rate, reference price, collar ------------------------------------------------------------


def test_order_rate_denies_at_the_limit() -> None:
    assert evaluate(intent("buy", "1"), LIMITS, replace(STATE, orders_in_last_minute=29), ACTIVE, LAST) is None
    result = evaluate(intent("buy", "1"), LIMITS, replace(STATE, orders_in_last_minute=30), ACTIVE, LAST)
    assert result == denial(
        RiskCheck.ORDER_RATE, "30 orders in the last minute reach the limit of 30 per minute; wait before submitting more"
    )


def test_market_order_without_a_last_price_is_denied() -> None:
    result = evaluate(intent("buy", "1", "market"), LIMITS, STATE, ACTIVE, None)
    assert result == denial(
        RiskCheck.REFERENCE_PRICE, "no last price for AAPL: a market order cannot be priced; send a limit order"
    )


def test_limit_order_without_a_last_price_skips_the_collar() -> None:
    assert evaluate(intent("buy", "1", limit="500.00"), LIMITS, STATE, ACTIVE, None) is None


def test_limit_buy_above_the_collar_is_a_fat_finger() -> None:
    assert evaluate(intent("buy", "1", limit="105.00"), LIMITS, STATE, ACTIVE, LAST) is None
    result = evaluate(intent("buy", "1", limit="105.01"), LIMITS, STATE, ACTIVE, LAST)
    assert result == denial(
        RiskCheck.PRICE_COLLAR, "limit price 105.01 is more than 5% above the last price 100 (highest allowed 105)"
    )


def test_limit_sell_below_the_collar_is_a_fat_finger() -> None:
    assert evaluate(intent("sell", "1", limit="95.00"), LIMITS, holding("1"), ACTIVE, LAST) is None
    result = evaluate(intent("sell", "1", limit="94.99"), LIMITS, holding("1"), ACTIVE, LAST)
    assert result == denial(
        RiskCheck.PRICE_COLLAR, "limit price 94.99 is more than 5% below the last price 100 (lowest allowed 95)"
    )


def test_stop_limit_collar_is_measured_from_the_stop() -> None:
    breakout = intent("buy", "1", "stop_limit", limit="125.00", stop="120.00")
    assert evaluate(breakout, LIMITS, STATE, ACTIVE, LAST) is None
    result = evaluate(intent("buy", "1", "stop_limit", limit="126.01", stop="120.00"), LIMITS, STATE, ACTIVE, LAST)
    assert result == denial(
        RiskCheck.PRICE_COLLAR, "limit price 126.01 is more than 5% above the stop price 120 (highest allowed 126)"
    )


# -- notional, shorting, position, daily loss, exposure ----------------------------------------------


def test_order_notional_above_the_limit_is_denied() -> None:
    result = evaluate(intent("buy", "1500"), replace(LIMITS, max_position_quantity=Decimal(5_000)), STATE, ACTIVE, LAST)
    assert result == denial(RiskCheck.MAX_ORDER_NOTIONAL, "order notional 150,000.00 USD exceeds the limit 100,000.00 USD")


def test_market_buy_notional_is_priced_at_last_plus_collar() -> None:
    # 1,000 x 99 = 99,000 would pass; priced at 99 x 1.05 it is 103,950.
    result = evaluate(intent("buy", "1000", "market"), LIMITS, STATE, ACTIVE, Decimal(99))
    assert result == denial(RiskCheck.MAX_ORDER_NOTIONAL, "order notional 103,950.00 USD exceeds the limit 100,000.00 USD")


def test_order_notional_is_converted_to_the_base_currency() -> None:
    limits = replace(LIMITS, currency="EUR")
    assert evaluate(intent("buy", "600"), limits, STATE, ACTIVE, LAST) is None
    result = evaluate(intent("buy", "600"), limits, STATE, ACTIVE, LAST, to_base=lambda amount: amount * 2)
    assert result == denial(RiskCheck.MAX_ORDER_NOTIONAL, "order notional 120,000.00 EUR exceeds the limit 100,000.00 EUR")


def test_selling_into_a_short_needs_allow_short() -> None:
    result = evaluate(intent("sell", "15"), LIMITS, holding("10"), ACTIVE, LAST)
    assert result == denial(
        RiskCheck.SHORT_SELLING, "selling 15 AAPL would leave a short position of -5; this account may not sell short"
    )
    assert evaluate(intent("sell", "15"), LIMITS, holding("10", allow_short=True), ACTIVE, LAST) is None
    assert evaluate(intent("sell", "10"), LIMITS, holding("10"), ACTIVE, LAST) is None


def test_resulting_position_above_the_limit_is_denied() -> None:
    result = evaluate(intent("buy", "200"), LIMITS, holding("900"), ACTIVE, LAST)
    assert result == denial(RiskCheck.MAX_POSITION, "resulting AAPL position 1,100 exceeds the limit of 1,000 per instrument")
    short = evaluate(intent("sell", "1001", limit="10.00"), LIMITS, holding("0", allow_short=True), ACTIVE, Decimal(10))
    assert short is not None
    assert short.check is RiskCheck.MAX_POSITION


def test_reducing_a_position_already_above_the_limit_is_allowed() -> None:
    assert evaluate(intent("sell", "100"), LIMITS, holding("1200"), ACTIVE, LAST) is None


def test_daily_loss_limit_allows_only_reducing_orders() -> None:
    lost = holding("10", realized_pnl_today=Decimal(-5_000))
    result = evaluate(intent("buy", "1"), LIMITS, lost, ACTIVE, LAST)
    assert result == denial(
        RiskCheck.DAILY_LOSS,
        "realized loss today 5,000.00 USD has reached the daily loss limit 5,000.00 USD; "
        "only orders that reduce a position are allowed",
    )
    assert evaluate(intent("sell", "4"), LIMITS, lost, ACTIVE, LAST) is None
    assert evaluate(intent("buy", "1"), LIMITS, holding("10", realized_pnl_today=Decimal("-4999.99")), ACTIVE, LAST) is None


def test_gross_exposure_above_the_limit_is_denied() -> None:
    state = replace(STATE, gross_exposure=Decimal(950_000))
    result = evaluate(intent("buy", "600"), LIMITS, state, ACTIVE, LAST)
    assert result == denial(
        RiskCheck.MAX_GROSS_EXPOSURE,
        "gross exposure would rise from 950,000.00 USD to 1,010,000.00 USD, above the limit 1,000,000.00 USD",
    )


def test_orders_that_lower_gross_exposure_pass_above_the_limit() -> None:
    state = holding("500", gross_exposure=Decimal(2_000_000))
    assert evaluate(intent("sell", "100"), LIMITS, state, ACTIVE, LAST) is None


# -- each limit is the most allowed: exactly at it passes, one step beyond is denied ------------------


def test_order_notional_exactly_at_the_limit_passes() -> None:
    assert evaluate(intent("buy", "1000"), LIMITS, STATE, ACTIVE, LAST) is None  # 1,000 x 100 = 100,000
    beyond = evaluate(intent("buy", "1000", limit="100.01"), LIMITS, STATE, ACTIVE, LAST)
    assert beyond is not None
    assert beyond.check is RiskCheck.MAX_ORDER_NOTIONAL


def test_position_exactly_at_the_limit_passes_long_and_short() -> None:
    assert evaluate(intent("buy", "100"), LIMITS, holding("900"), ACTIVE, LAST) is None
    short = holding("-900", allow_short=True)
    assert evaluate(intent("sell", "100"), LIMITS, short, ACTIVE, LAST) is None
    beyond = evaluate(intent("sell", "101"), LIMITS, short, ACTIVE, LAST)
    assert beyond == denial(RiskCheck.MAX_POSITION, "resulting AAPL position -1,001 exceeds the limit of 1,000 per instrument")


def test_gross_exposure_exactly_at_the_limit_passes() -> None:
    state = replace(STATE, gross_exposure=Decimal(950_000))
    assert evaluate(intent("buy", "500"), LIMITS, state, ACTIVE, LAST) is None  # 950,000 + 50,000
    beyond = evaluate(intent("buy", "501"), LIMITS, state, ACTIVE, LAST)
    assert beyond is not None
    assert beyond.check is RiskCheck.MAX_GROSS_EXPOSURE


def test_any_rise_of_gross_exposure_above_the_limit_is_denied_and_no_rise_passes() -> None:
    at_limit = replace(STATE, gross_exposure=LIMITS.max_gross_exposure)
    penny = evaluate(intent("buy", "1", limit="0.50"), LIMITS, at_limit, ACTIVE, Decimal("0.50"))
    assert penny == denial(
        RiskCheck.MAX_GROSS_EXPOSURE,
        "gross exposure would rise from 1,000,000.00 USD to 1,000,000.50 USD, above the limit 1,000,000.00 USD",
    )
    # Short 10 to long 10 leaves |position| x price where it was: exposure does not rise.
    flip = holding("-10", allow_short=True, gross_exposure=Decimal(2_000_000))
    assert evaluate(intent("buy", "20"), LIMITS, flip, ACTIVE, LAST) is None


def test_gross_exposure_is_priced_at_the_last_price_else_at_the_order_price() -> None:
    state = replace(STATE, gross_exposure=Decimal(990_001))
    # A buy limit at 95 while the market is at 100 adds 100 x 100 = 10,000 of exposure, not 9,500.
    below_market = intent("buy", "100", limit="95.00")
    at_last = evaluate(below_market, LIMITS, state, ACTIVE, LAST)
    assert at_last is not None
    assert at_last.check is RiskCheck.MAX_GROSS_EXPOSURE
    assert "to 1,000,001.00 USD" in at_last.reason
    # Without a last price the order's own price values it.
    no_last = evaluate(intent("buy", "100", limit="100.00"), LIMITS, state, ACTIVE, None)
    assert no_last is not None
    assert no_last.check is RiskCheck.MAX_GROSS_EXPOSURE


def test_gross_exposure_and_buying_power_are_converted_to_the_base_currency() -> None:
    def eur(amount: Decimal) -> Decimal:
        return amount / 2

    limits = replace(LIMITS, currency="EUR")
    exposed = replace(STATE, gross_exposure=Decimal(999_000))
    # 100 x 100 USD = 10,000 USD is 5,000 EUR: above the EUR limit once converted.
    denied = evaluate(intent("buy", "100"), limits, exposed, ACTIVE, LAST, to_base=eur)
    assert denied == denial(
        RiskCheck.MAX_GROSS_EXPOSURE,
        "gross exposure would rise from 999,000.00 EUR to 1,004,000.00 EUR, above the limit 1,000,000.00 EUR",
    )
    assert evaluate(intent("buy", "10"), limits, exposed, ACTIVE, LAST, to_base=eur) is None  # 500 EUR more
    cash = replace(STATE, cash_available=Decimal(5_000))
    assert evaluate(intent("buy", "100"), limits, cash, ACTIVE, LAST, to_base=eur) is None  # needs 5,000 EUR
    short = evaluate(intent("buy", "101"), limits, cash, ACTIVE, LAST, to_base=eur)
    assert short is not None
    assert short.check is RiskCheck.BUYING_POWER
    assert "order needs 5,050.00 EUR" in short.reason


# -- buying power ----------------------------------------------------------------------------------


def test_buy_needs_notional_and_fee_within_cash_less_reserved() -> None:
    state = replace(STATE, cash_available=Decimal(10_000), reserved_by_open_orders=Decimal(3_000))
    fees = FeeModel(Decimal(10), Decimal("1.00"))
    assert evaluate(intent("buy", "70"), LIMITS, state, ACTIVE, LAST) is None  # 7,000 exactly, no fee
    result = evaluate(intent("buy", "70"), LIMITS, state, ACTIVE, LAST, fee_model=fees)
    assert result == denial(
        RiskCheck.BUYING_POWER,
        "order needs 7,007.00 USD (notional plus estimated fee) but only 7,000.00 USD is available "
        "(cash 10,000.00 USD less 3,000.00 USD reserved by open orders)",
    )


def test_sells_need_no_cash() -> None:
    state = holding("10", cash_available=Decimal(0))
    assert evaluate(intent("sell", "10"), LIMITS, state, ACTIVE, LAST) is None


def test_sells_pass_even_when_open_orders_reserve_more_than_the_cash() -> None:
    state = holding("10", cash_available=Decimal(100), reserved_by_open_orders=Decimal(500))
    assert evaluate(intent("sell", "10"), LIMITS, state, ACTIVE, LAST) is None


def test_buying_power_leaves_an_unpriceable_market_buy_to_the_reference_price_check() -> None:
    assert check_buying_power(intent("buy", "10", "market"), LIMITS, replace(STATE, cash_available=Decimal(0)), None) is None


def test_first_failing_check_in_order_wins() -> None:
    broke = replace(STATE, cash_available=Decimal(0), orders_in_last_minute=30)
    big = intent("buy", "5000")
    denied = evaluate(big, LIMITS, broke, ACTIVE, LAST)
    assert denied is not None
    assert denied.check is RiskCheck.ORDER_RATE
    denied = evaluate(big, LIMITS, replace(broke, orders_in_last_minute=0), ACTIVE, LAST)
    assert denied is not None
    assert denied.check is RiskCheck.MAX_ORDER_NOTIONAL


# Each check, alone: an order that this check, and no other, denies. If `evaluate` skipped a check
# it would approve its order (fail-open), so every check must be denied through `evaluate` itself.
# A check added to `RiskCheck` without an order here fails the coverage assertion.
_DENIED_BY_ONE_CHECK: dict[RiskCheck, tuple[OrderIntent, AccountRiskState, TradingState, Decimal | None]] = {
    RiskCheck.TRADING_STATE: (intent("buy", "10"), STATE, TradingState.HALTED, LAST),
    RiskCheck.ORDER_RATE: (intent("buy", "10"), replace(STATE, orders_in_last_minute=30), ACTIVE, LAST),
    RiskCheck.REFERENCE_PRICE: (intent("buy", "10", "market"), STATE, ACTIVE, None),
    RiskCheck.PRICE_COLLAR: (intent("buy", "10", limit="105.01"), STATE, ACTIVE, LAST),
    RiskCheck.MAX_ORDER_NOTIONAL: (intent("buy", "1000", limit="100.01"), STATE, ACTIVE, LAST),
    RiskCheck.SHORT_SELLING: (intent("sell", "10"), STATE, ACTIVE, LAST),
    RiskCheck.MAX_POSITION: (intent("buy", "10"), holding("995"), ACTIVE, LAST),
    RiskCheck.DAILY_LOSS: (intent("buy", "10"), replace(STATE, realized_pnl_today=Decimal(-5_000)), ACTIVE, LAST),
    RiskCheck.MAX_GROSS_EXPOSURE: (intent("buy", "10"), replace(STATE, gross_exposure=Decimal(999_001)), ACTIVE, LAST),
    RiskCheck.BUYING_POWER: (intent("buy", "10"), replace(STATE, cash_available=Decimal(999)), ACTIVE, LAST),
}


def _public_checks(
    order: OrderIntent, state: AccountRiskState, global_state: TradingState, last: Decimal | None
) -> dict[RiskCheck, RiskDenial | None]:
    return {
        RiskCheck.TRADING_STATE: check_trading_state(order, state, global_state),
        RiskCheck.ORDER_RATE: check_order_rate(LIMITS, state),
        RiskCheck.REFERENCE_PRICE: check_reference_price(order, last),
        RiskCheck.PRICE_COLLAR: check_price_collar(order, LIMITS, last),
        RiskCheck.MAX_ORDER_NOTIONAL: check_order_notional(order, LIMITS, last),
        RiskCheck.SHORT_SELLING: check_short_selling(order, state),
        RiskCheck.MAX_POSITION: check_position_limit(order, LIMITS, state),
        RiskCheck.DAILY_LOSS: check_daily_loss(order, LIMITS, state),
        RiskCheck.MAX_GROSS_EXPOSURE: check_gross_exposure(order, LIMITS, state, last),
        RiskCheck.BUYING_POWER: check_buying_power(order, LIMITS, state, last),
    }


def test_every_check_has_an_order_only_it_denies() -> None:
    assert set(_DENIED_BY_ONE_CHECK) == set(RiskCheck)
    for check, (order, state, global_state, last) in _DENIED_BY_ONE_CHECK.items():
        denials = {name: found for name, found in _public_checks(order, state, global_state, last).items() if found}
        assert set(denials) == {check}, f"{check}: denied by {sorted(denials)}"


@pytest.mark.parametrize("check", list(RiskCheck))
def test_evaluate_denies_what_each_check_alone_denies(check: RiskCheck) -> None:
    order, state, global_state, last = _DENIED_BY_ONE_CHECK[check]
    result = evaluate(order, LIMITS, state, global_state, last, fee_model=FeeModel(Decimal(0), Decimal(0)))
    assert result is not None, f"{check} was skipped: the order it alone denies was approved"
    assert result == _public_checks(order, state, global_state, last)[check]


# -- reservations and inputs -----------------------------------------------------------------------


def test_reserve_for_prices_each_order_type() -> None:
    fees = FeeModel(Decimal(10), Decimal("1.00"))
    assert reserve_for(intent("sell", "10"), LIMITS, LAST, fee_model=fees) == 0
    assert reserve_for(intent("buy", "10", limit="99.00"), LIMITS, LAST, fee_model=fees) == Decimal("991.00")
    assert reserve_for(intent("buy", "10", "market"), LIMITS, LAST) == Decimal(1050)
    assert reserve_for(intent("buy", "10", "stop", stop="110.00"), LIMITS, LAST) == Decimal("1155")
    assert reserve_for(intent("buy", "10", limit="99.00"), LIMITS, LAST, to_base=lambda amount: amount / 2) == Decimal("495")
    with pytest.raises(ValueError, match="no last price"):
        reserve_for(intent("buy", "10", "market"), LIMITS, None)


def test_order_price_values_sells_at_the_reference() -> None:
    assert order_price(intent("sell", "1", "market"), LAST, Decimal(5)) == LAST
    assert order_price(intent("sell", "1", "stop", stop="90.00"), LAST, Decimal(5)) == Decimal("90.00")


def test_intent_needs_exactly_the_prices_of_its_type() -> None:
    with pytest.raises(ValueError, match="needs a limit_price"):
        OrderIntent("acc-1", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(1))
    with pytest.raises(ValueError, match="must not carry a limit_price"):
        OrderIntent("acc-1", "AAPL", Side.BUY, OrderType.MARKET, Decimal(1), limit_price=Decimal(1))
    with pytest.raises(ValueError, match="quantity"):
        OrderIntent("acc-1", "AAPL", Side.BUY, OrderType.MARKET, Decimal(0))


def test_intent_prices_and_quantity_must_be_positive_and_finite() -> None:
    with pytest.raises(ValueError, match="a stop order needs a stop_price"):
        OrderIntent("acc-1", "AAPL", Side.BUY, OrderType.STOP, Decimal(1))
    with pytest.raises(ValueError, match="a limit order must not carry a stop_price"):
        OrderIntent("acc-1", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(1), limit_price=Decimal(1), stop_price=Decimal(1))
    for bad in (Decimal(0), Decimal(-1), Decimal("Infinity")):
        with pytest.raises(ValueError, match=re.escape(f"limit_price must be a positive Decimal, got {bad!r}")):
            OrderIntent("acc-1", "AAPL", Side.BUY, OrderType.LIMIT, Decimal(1), limit_price=bad)
    with pytest.raises(ValueError, match="quantity must be a positive Decimal"):
        OrderIntent("acc-1", "AAPL", Side.BUY, OrderType.MARKET, Decimal("Infinity"))


def test_limits_must_be_non_negative_and_the_collar_below_100() -> None:
    zero = RiskLimits(Decimal(0), Decimal(0), Decimal(0), Decimal(0), 0, Decimal(0), "USD")
    assert evaluate(intent("buy", "1"), zero, STATE, ACTIVE, LAST) == denial(
        RiskCheck.ORDER_RATE, "0 orders in the last minute reach the limit of 0 per minute; wait before submitting more"
    )
    with pytest.raises(ValueError, match="max_gross_exposure must be a non-negative Decimal, got Decimal"):
        replace(LIMITS, max_gross_exposure=Decimal(-1))
    with pytest.raises(ValueError, match="daily_loss_limit must be a non-negative Decimal"):
        replace(LIMITS, daily_loss_limit=Decimal("NaN"))
    with pytest.raises(ValueError, match="price_collar_pct must be below 100, got 100"):
        replace(LIMITS, price_collar_pct=Decimal(100))
    with pytest.raises(ValueError, match="max_orders_per_minute must not be negative, got -1"):
        replace(LIMITS, max_orders_per_minute=-1)
    with pytest.raises(ValueError, match="orders_in_last_minute must not be negative, got -1"):
        replace(STATE, orders_in_last_minute=-1)


def test_states_given_as_plain_strings_are_states() -> None:
    halted = replace(STATE, trading_state="halted")  # type: ignore[arg-type]
    assert halted.trading_state is TradingState.HALTED
    assert evaluate(intent("buy", "1"), LIMITS, STATE, "halted", LAST) == denial(  # type: ignore[arg-type]
        RiskCheck.TRADING_STATE, "trading is halted for all accounts"
    )
    both = evaluate(intent("buy", "1"), LIMITS, halted, TradingState.HALTED, LAST)
    assert both == denial(RiskCheck.TRADING_STATE, "trading is halted for all accounts")


def test_a_last_price_that_is_not_positive_cannot_price_a_market_order() -> None:
    for unusable in (Decimal(0), Decimal(-1)):
        result = evaluate(intent("buy", "1", "market"), LIMITS, STATE, ACTIVE, unusable)
        assert result is not None
        assert result.check is RiskCheck.REFERENCE_PRICE
    assert evaluate(intent("buy", "1", "market"), LIMITS, STATE, ACTIVE, Decimal("0.50")) is None


def test_intent_accepts_plain_strings_for_its_enums() -> None:
    made = OrderIntent("acc-1", "AAPL", "buy", "market", Decimal(1))  # type: ignore[arg-type]
    assert made.side is Side.BUY
    assert made.type is OrderType.MARKET


# -- properties ------------------------------------------------------------------------------------

_amounts = st.decimals(min_value=0, max_value=200_000, places=2, allow_nan=False, allow_infinity=False)
_prices = st.decimals(min_value=Decimal("0.01"), max_value=500, places=2, allow_nan=False, allow_infinity=False)
_quantities = st.integers(1, 2_000).map(Decimal)
_positions = st.integers(-1_500, 1_500).map(Decimal)
_types = st.sampled_from(list(OrderType))
_sides = st.sampled_from(list(Side))
_states = st.sampled_from(list(TradingState))


@st.composite
def intents(draw: st.DrawFn, sides: st.SearchStrategy[Side] = _sides) -> OrderIntent:
    order_type = draw(_types)
    return OrderIntent(
        account_id="acc-1",
        symbol="AAPL",
        side=draw(sides),
        type=order_type,
        quantity=draw(_quantities),
        limit_price=draw(_prices) if order_type.needs_limit_price else None,
        stop_price=draw(_prices) if order_type.needs_stop_price else None,
    )


@st.composite
def states(draw: st.DrawFn) -> AccountRiskState:
    return AccountRiskState(
        cash_available=draw(_amounts),
        reserved_by_open_orders=draw(_amounts),
        positions={"AAPL": draw(_positions)},
        gross_exposure=draw(_amounts),
        realized_pnl_today=draw(st.decimals(min_value=-10_000, max_value=10_000, places=2)),
        orders_in_last_minute=draw(st.integers(0, 40)),
        allow_short=draw(st.booleans()),
        trading_state=draw(_states),
    )


_GENEROUS = RiskLimits(
    max_order_notional=Decimal(10) ** 9,
    max_position_quantity=Decimal(10) ** 9,
    max_gross_exposure=Decimal(10) ** 12,
    price_collar_pct=Decimal(5),
    max_orders_per_minute=1_000,
    daily_loss_limit=Decimal(10) ** 9,
    currency="USD",
)


@settings(max_examples=500)
@given(
    order=intents(sides=st.just(Side.BUY)),
    state=states(),
    last=st.none() | _prices,
    fee_bps=st.integers(0, 50).map(Decimal),
    fee_minimum=st.decimals(min_value=0, max_value=20, places=2),
)
def test_approved_buy_never_needs_more_than_cash_less_reserved(
    order: OrderIntent, state: AccountRiskState, last: Decimal | None, fee_bps: Decimal, fee_minimum: Decimal
) -> None:
    fees = FeeModel(fee_bps, fee_minimum)
    state = replace(state, trading_state=TradingState.ACTIVE)
    if evaluate(order, _GENEROUS, state, ACTIVE, last, fee_model=fees) is not None:
        return
    # Priced independently: the limit, else (last for market, stop for stop) plus the 5 % collar.
    if order.limit_price is not None:
        price = order.limit_price
    else:
        reference = order.stop_price if order.stop_price is not None else last
        assert reference is not None, "a market order without a last price was approved"
        price = reference * Decimal("1.05")
    notional = order.quantity * price
    assert notional + fees.fee(notional) <= state.cash_available - state.reserved_by_open_orders


@settings(max_examples=300)
@given(order=intents(), state=states(), last=st.none() | _prices, global_state=_states)
def test_halted_denies_every_order(
    order: OrderIntent, state: AccountRiskState, last: Decimal | None, global_state: TradingState
) -> None:
    assume(TradingState.HALTED in (state.trading_state, global_state))
    result = evaluate(order, _GENEROUS, state, global_state, last)
    assert result is not None
    assert result.check is RiskCheck.TRADING_STATE


@settings(max_examples=500)
@given(order=intents(), state=states(), last=st.none() | _prices, global_state=_states)
def test_reducing_never_approves_an_order_that_grows_or_flips_a_position(
    order: OrderIntent, state: AccountRiskState, last: Decimal | None, global_state: TradingState
) -> None:
    assume(TradingState.REDUCING in (state.trading_state, global_state))
    if evaluate(order, _GENEROUS, state, global_state, last) is not None:
        return
    before = state.positions["AAPL"]
    after = before + (order.quantity if order.side is Side.BUY else -order.quantity)
    assert abs(after) < abs(before)
    assert after * before >= 0


@given(current=_positions, resulting=_positions)
@example(current=Decimal(1), resulting=Decimal(0))
@example(current=Decimal(5), resulting=Decimal(1))
@example(current=Decimal(1), resulting=Decimal("0.5"))
@example(current=Decimal(-1), resulting=Decimal("-0.5"))
def test_reduces_position_means_smaller_and_same_side(current: Decimal, resulting: Decimal) -> None:
    expected = abs(resulting) < abs(current) and resulting * current >= 0
    assert reduces_position(current, resulting) is expected


@settings(max_examples=1000)
@given(
    order=intents(),
    state=states(),
    last=st.none() | _prices | st.just(Decimal(0)),
    global_state=_states,
    limits=st.sampled_from([LIMITS, _GENEROUS]),
    fee_bps=st.integers(0, 50).map(Decimal),
    converted=st.booleans(),
)
def test_evaluate_is_the_first_denial_of_the_checks_in_order(
    order: OrderIntent,
    state: AccountRiskState,
    last: Decimal | None,
    global_state: TradingState,
    limits: RiskLimits,
    fee_bps: Decimal,
    converted: bool,
) -> None:
    """`evaluate` works out shared values once; it must say exactly what the public checks say, in their order."""
    fees = FeeModel(fee_bps, Decimal("0.35"))

    def to_base(amount: Decimal) -> Decimal:
        return amount * Decimal("1.5") if converted else amount

    expected = (
        check_trading_state(order, state, global_state)
        or check_order_rate(limits, state)
        or check_reference_price(order, last)
        or check_price_collar(order, limits, last)
        or check_order_notional(order, limits, last, to_base)
        or check_short_selling(order, state)
        or check_position_limit(order, limits, state)
        or check_daily_loss(order, limits, state)
        or check_gross_exposure(order, limits, state, last, to_base)
        or check_buying_power(order, limits, state, last, fee_model=fees, to_base=to_base)
    )
    assert evaluate(order, limits, state, global_state, last, fee_model=fees, to_base=to_base) == expected
    if not converted:  # `same_currency` (the default) is not called: it must say what the identity called says
        assert evaluate(order, limits, state, global_state, last, fee_model=fees, to_base=same_currency) == expected


def _identity(amount: Decimal) -> Decimal:
    """The identity, but not `same_currency`: the checks call it as they call any conversion."""
    return amount


@settings(max_examples=300)
@given(order=intents(), last=st.none() | _prices | st.just(Decimal(0)), fee_bps=st.integers(0, 50).map(Decimal))
def test_reserve_for_without_the_same_currency_call_is_what_an_identity_it_calls_gives(
    order: OrderIntent, last: Decimal | None, fee_bps: Decimal
) -> None:
    fees = FeeModel(fee_bps, Decimal("0.35"))
    try:
        reserved = reserve_for(order, LIMITS, last, fee_model=fees, to_base=_identity)
    except ValueError as called_error:
        with pytest.raises(ValueError, match=re.escape(str(called_error))):
            reserve_for(order, LIMITS, last, fee_model=fees)
        return
    assert _digits(reserve_for(order, LIMITS, last, fee_model=fees)) == _digits(reserved)


@given(order=intents(sides=st.just(Side.BUY)), fee_bps=st.integers(0, 50).map(Decimal), with_fee=st.booleans())
def test_reserve_at_the_order_price_is_reserve_for(order: OrderIntent, fee_bps: Decimal, with_fee: bool) -> None:
    assume(order.limit_price is not None or order.stop_price is not None)
    fees = FeeModel(fee_bps, Decimal("0.35")) if with_fee else None
    price = order_price(order, None, LIMITS.price_collar_pct)
    assert price is not None
    expected = reserve_for(order, LIMITS, None, fee_model=fees)
    assert _digits(reserve_at(order.quantity * price, fees)) == _digits(expected)


def _digits(value: Decimal) -> tuple[object, ...]:
    """`value` digit for digit (10.0 and 10.00 differ)."""
    return tuple(value.as_tuple())
