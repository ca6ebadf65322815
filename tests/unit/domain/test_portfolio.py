from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradestack.domain.ledger import AccountKind, balances, fill_entry
from tradestack.domain.marketdata import Side
from tradestack.domain.portfolio import (
    QUOTIENT_PLACES,
    FillRecord,
    FxRates,
    MissingFxRate,
    MissingMarkPrice,
    PortfolioValuation,
    PositionState,
    divide,
    fold_fills,
    market_value,
    unrealized_pnl,
)

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
TOLERANCE = Fraction(1, 10**QUOTIENT_PLACES)


def d(text: str) -> Decimal:
    return Decimal(text)


def after(position: PositionState, *fills: tuple[str, str, str]) -> tuple[PositionState, list[Decimal]]:
    realized: list[Decimal] = []
    for side, quantity, price in fills:
        position, pnl = position.apply_fill(side, d(quantity), d(price))
        realized.append(pnl)
    return position, realized


# -- average cost: examples ---------------------------------------------------------------------


def test_two_buys_average_their_prices() -> None:
    position, realized = after(PositionState("AAPL"), ("buy", "10", "100"), ("buy", "10", "110"))
    assert position.quantity == 20
    assert position.cost == 2100
    assert position.average_price == 105
    assert realized == [0, 0]


def test_sell_at_a_profit_realizes_against_average_cost() -> None:
    position, realized = after(PositionState("AAPL"), ("buy", "10", "100"), ("buy", "10", "110"), ("sell", "5", "120"))
    assert realized[-1] == 75
    assert position.quantity == 15
    assert position.average_price == 105
    assert position.realized_pnl == 75


def test_sell_at_a_loss_realizes_a_negative_amount() -> None:
    position, realized = after(PositionState("AAPL"), ("buy", "10", "100"), ("sell", "4", "90"))
    assert realized[-1] == -40
    assert position.cost == 600


def test_short_then_cover_lower_realizes_a_gain() -> None:
    short, realized = after(PositionState("TSLA"), ("sell", "10", "50"), ("sell", "10", "60"))
    assert short.quantity == -20
    assert short.cost == -1100
    assert short.average_price == 55
    assert realized == [0, 0]
    covered, realized = after(short, ("buy", "5", "40"), ("buy", "15", "70"))
    assert realized == [75, -225]  # (55 - 40) x 5, then (55 - 70) x 15
    assert covered.is_flat
    assert covered.cost == 0
    assert covered.realized_pnl == -150


def test_flip_from_long_to_short_closes_then_opens_at_the_fill_price() -> None:
    long, _ = after(PositionState("AAPL"), ("buy", "10", "100"))
    effect = long.fill_effect(Side.SELL, d("25"), d("120"))
    assert (effect.closed_quantity, effect.closed_cost) == (d("-10"), d("-1000"))
    assert (effect.opened_quantity, effect.opened_cost) == (d("-15"), d("-1800"))
    assert effect.realized == 200
    assert effect.position == PositionState("AAPL", d("-15"), d("-1800"), d("200"))
    assert effect.position.average_price == 120


def test_flip_from_short_to_long_realizes_on_the_short_only() -> None:
    short, _ = after(PositionState("AAPL"), ("sell", "4", "30"))
    flipped, realized = short.apply_fill("buy", d("10"), d("25"))
    assert realized == 20
    assert flipped == PositionState("AAPL", d("6"), d("150"), d("20"))


def test_non_terminating_release_rounds_but_round_trip_is_exact() -> None:
    # 3 units for 10: each costs 3.333..., so releasing one rounds; closing the rest takes the remainder.
    position = PositionState("X", d("3"), d("10"))
    assert position.average_price == d("3.333333333333")
    one, first = position.apply_fill("sell", d("1"), d("4"))
    assert first == d("0.666666666667")
    assert one.cost == d("6.666666666667")
    flat, second = one.apply_fill("sell", d("2"), d("4"))
    assert flat.is_flat
    assert flat.cost == 0
    assert first + second == 2  # proceeds 12 less cost 10, exactly


def test_fill_refuses_float_and_non_positive_quantity() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        PositionState("AAPL").apply_fill("buy", 1.5, d("10"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        PositionState("AAPL").apply_fill("buy", d("0"), d("10"))
    with pytest.raises(ValueError, match="'buy' or 'sell'"):
        PositionState("AAPL").apply_fill("hold", d("1"), d("10"))


def test_flat_position_with_cost_is_refused() -> None:
    with pytest.raises(ValueError, match="flat position"):
        PositionState("AAPL", d("0"), d("5"))


def test_unrealized_and_market_value_long_and_short() -> None:
    long = PositionState("AAPL", d("15"), d("1575"))
    assert market_value(long, d("110")) == 1650
    assert unrealized_pnl(long, d("110")) == 75
    short = PositionState("TSLA", d("-10"), d("-550"))
    assert market_value(short, d("60")) == -600
    assert unrealized_pnl(short, d("60")) == -50
    assert unrealized_pnl(short, d("50")) == 50


def test_fill_record_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="UTC"):
        FillRecord("AAPL", Side.BUY, d("1"), d("1"), d("0"), "USD", datetime(2026, 1, 5))  # noqa: DTZ001


# -- divide -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        ("2100", "20", "105"),
        ("1", "1048576", "0.00000095367431640625"),  # 2**-20 terminates: kept exact, beyond 12 places
        ("10", "3", "3.333333333333"),
        ("-20", "3", "-6.666666666667"),
        ("1", "8000000000000000", "0.000000000000000125"),
    ],
)
def test_divide_is_exact_when_the_quotient_terminates_else_rounds(numerator: str, denominator: str, expected: str) -> None:
    assert divide(d(numerator), d(denominator)) == d(expected)


@given(
    st.integers(-(10**30), 10**30).map(lambda n: Decimal(n).scaleb(-8)),
    st.integers(1, 10**15).map(lambda n: Decimal(n).scaleb(-6)),
)
def test_divide_is_within_half_a_unit_of_the_last_place(numerator: Decimal, denominator: Decimal) -> None:
    exact = Fraction(numerator) / Fraction(denominator)
    result = divide(numerator, denominator)
    assert abs(Fraction(result) - exact) <= TOLERANCE / 2
    rest = exact.denominator
    for prime in (2, 5):
        while rest % prime == 0:
            rest //= prime
    assert (Fraction(result) == exact) is (rest == 1)  # exact exactly when the quotient terminates


# -- fold of fills: properties ------------------------------------------------------------------

SYMBOL_QUOTES = {"AAPL": "USD", "SAP": "EUR", "BTC-USD": "USD"}
SYMBOL_LOTS = {"AAPL": Decimal(1), "SAP": Decimal(1), "BTC-USD": Decimal("0.0001")}
SYMBOL_TICKS = {"AAPL": Decimal("0.01"), "SAP": Decimal("0.05"), "BTC-USD": Decimal("0.5")}


@st.composite
def fills(draw: st.DrawFn) -> list[FillRecord]:
    """Buys and sells of a few symbols on their tick and lot; some close or flip exactly."""
    count = draw(st.integers(0, 40))
    held: dict[str, Decimal] = defaultdict(Decimal)
    records: list[FillRecord] = []
    for i in range(count):
        symbol = draw(st.sampled_from(sorted(SYMBOL_QUOTES)))
        lots = SYMBOL_LOTS[symbol] * draw(st.integers(1, 500))
        shape = draw(st.sampled_from(["trade", "trade", "close", "flip"]))
        if shape != "trade" and held[symbol] != 0:
            side = Side.SELL if held[symbol] > 0 else Side.BUY
            quantity = abs(held[symbol]) + (lots if shape == "flip" else 0)
        else:
            side = draw(st.sampled_from(Side))
            quantity = lots
        price = SYMBOL_TICKS[symbol] * draw(st.integers(1, 40_000))
        held[symbol] += quantity if side is Side.BUY else -quantity
        fee = Decimal(draw(st.integers(0, 500))).scaleb(-2)
        records.append(FillRecord(symbol, side, quantity, price, fee, SYMBOL_QUOTES[symbol], T0 + timedelta(minutes=i)))
    return records


def reference_positions(records: list[FillRecord]) -> dict[str, tuple[Fraction, Fraction, Fraction]]:
    """Average cost with exact rationals, written independently: (quantity, cost, realized)."""
    book: dict[str, tuple[Fraction, Fraction, Fraction]] = {}
    for fill in records:
        quantity, cost, realized = book.get(fill.symbol, (Fraction(0), Fraction(0), Fraction(0)))
        price = Fraction(fill.price)
        delta = Fraction(fill.quantity) * (1 if fill.side is Side.BUY else -1)
        if quantity == 0 or (quantity > 0) == (delta > 0):
            quantity, cost = quantity + delta, cost + delta * price
        else:
            average = cost / quantity
            closing = min(abs(delta), abs(quantity)) * (1 if delta > 0 else -1)
            realized += -closing * (price - average)
            quantity, cost = quantity + closing, cost + closing * average
            rest = delta - closing
            quantity, cost = quantity + rest, cost + rest * price
        book[fill.symbol] = (quantity, cost, realized)
    return book


@given(fills())
def test_fold_equals_applying_fills_one_by_one(records: list[FillRecord]) -> None:
    positions: dict[str, PositionState] = {}
    realized_total: dict[str, Decimal] = defaultdict(Decimal)
    for fill in records:
        before = positions.get(fill.symbol, PositionState(fill.symbol))
        positions[fill.symbol], realized = before.apply_fill(fill.side, fill.quantity, fill.price)
        realized_total[fill.symbol] += realized
    folded = fold_fills(records)
    assert folded == positions
    for symbol, position in folded.items():
        assert position.realized_pnl == realized_total[symbol]


@given(fills())
def test_fold_matches_an_exact_rational_average_cost_model(records: list[FillRecord]) -> None:
    folded = fold_fills(records)
    reference = reference_positions(records)
    assert set(folded) == set(reference)
    for symbol, (quantity, cost, realized) in reference.items():
        position = folded[symbol]
        rounding_budget = TOLERANCE * len(records)
        assert Fraction(position.quantity) == quantity
        assert abs(Fraction(position.cost) - cost) <= rounding_budget
        assert abs(Fraction(position.realized_pnl) - realized) <= rounding_budget
        # Nothing leaks: realized + cost still held = sells - buys, exactly.
        flows = sum(
            (Fraction(f.quantity * f.price) * (-1 if f.side is Side.BUY else 1) for f in records if f.symbol == symbol),
            Fraction(0),
        )
        assert Fraction(position.realized_pnl) - Fraction(position.cost) == flows


@given(fills())
def test_realized_pnl_of_the_fold_equals_the_journals_realized_pnl(records: list[FillRecord]) -> None:
    positions: dict[str, PositionState] = {}
    entries = []
    for i, fill in enumerate(records):
        before = positions.get(fill.symbol, PositionState(fill.symbol))
        quote = SYMBOL_QUOTES[fill.symbol]
        entries.append(
            fill_entry(f"fill-{i}", fill.ts, fill.symbol, fill.side, fill.quantity, fill.price, quote, fill.fee, quote, before)
        )
        positions[fill.symbol], _ = before.apply_fill(fill.side, fill.quantity, fill.price)
    booked: dict[str, Decimal] = defaultdict(Decimal)
    for (account, currency), amount in balances(entries).items():
        if account.kind is AccountKind.REALIZED_PNL:
            booked[currency] -= amount  # a gain is a credit
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for symbol, position in fold_fills(records).items():
        expected[SYMBOL_QUOTES[symbol]] += position.realized_pnl
    assert {c: v for c, v in booked.items() if v} == {c: v for c, v in expected.items() if v}


# -- FX -----------------------------------------------------------------------------------------

RATES = FxRates({("EUR", "USD"): d("1.08"), ("AUD", "USD"): d("0.65"), ("USD", "JPY"): d("150")})


def test_fx_direct_quote_multiplies() -> None:
    assert RATES.convert(d("100"), "EUR", "USD") == d("108")
    assert RATES.rate("USD", "JPY") == 150


def test_fx_inverse_quote_divides() -> None:
    assert RATES.convert(d("65"), "USD", "AUD") == 100
    assert RATES.convert(d("100"), "USD", "AUD") == d("153.846153846154")
    assert RATES.rate("JPY", "USD") == d("0.006666666667")


def test_fx_cross_goes_through_the_pivot() -> None:
    assert RATES.convert(d("100"), "EUR", "AUD") == d("166.153846153846")  # 108 USD / 0.65
    assert RATES.convert(d("100"), "EUR", "JPY") == 16200  # 108 USD x 150
    assert RATES.convert(d("3"), "AUD", "AUD") == 3


def test_fx_missing_route_names_the_pair() -> None:
    with pytest.raises(MissingFxRate, match="no FX rate for GBP/AUD") as caught:
        RATES.convert(d("1"), "GBP", "AUD")
    assert (caught.value.base, caught.value.quote) == ("GBP", "AUD")
    assert caught.value.status_code == 422


def test_fx_pivot_can_be_changed() -> None:
    rates = FxRates({("EUR", "GBP"): d("0.85"), ("CHF", "GBP"): d("0.9")}, pivot="GBP")
    assert rates.convert(d("85"), "EUR", "CHF") == d("80.277777777778")
    with pytest.raises(MissingFxRate):
        FxRates({("EUR", "GBP"): d("0.85"), ("CHF", "GBP"): d("0.9")}).convert(d("1"), "EUR", "CHF")


@pytest.mark.parametrize(
    ("quotes", "message"),
    [
        ({("EUR", "EUR"): d("1")}, "into itself"),
        ({("EUR", "USD"): d("0")}, "positive"),
        ({("eur", "USD"): d("1")}, "currency code"),
    ],
)
def test_fx_bad_quotes_are_refused(quotes: dict[tuple[str, str], Decimal], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FxRates(quotes)


def test_fx_float_rate_is_refused() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        FxRates({("EUR", "USD"): 1.08})  # type: ignore[dict-item]


# -- valuation ----------------------------------------------------------------------------------


def test_valuation_in_aud_of_usd_cash_and_a_usd_stock() -> None:
    position = PositionState("AAPL", d("10"), d("1500"))  # bought at 150
    valuation = PortfolioValuation.compute(
        base_currency="AUD",
        cash={"USD": d("6500"), "AUD": d("1000")},
        positions={"AAPL": position, "MSFT": PositionState("MSFT", realized_pnl=d("12"))},
        quote_currencies={"AAPL": "USD"},
        marks={"AAPL": d("162.5")},
        rates=FxRates({("AUD", "USD"): d("0.65")}),
    )
    assert dict(valuation.cash) == {"AUD": d("1000"), "USD": d("6500")}
    assert valuation.cash_base == d("11000")  # 1000 + 6500 / 0.65
    (aapl,) = valuation.positions  # flat MSFT is left out and needs no mark
    assert aapl.market_value == d("1625")
    assert aapl.unrealized_pnl == d("125")
    assert aapl.average_price == 150
    assert aapl.market_value_base == d("2500")
    assert aapl.unrealized_pnl_base == d("192.307692307692")
    assert valuation.market_value_base == d("2500")
    assert valuation.equity == d("13500")


def test_valuation_counts_a_short_as_negative_market_value() -> None:
    valuation = PortfolioValuation.compute(
        base_currency="USD",
        cash={"USD": d("10500")},  # 10000 deposited + 500 short-sale proceeds
        positions={"TSLA": PositionState("TSLA", d("-10"), d("-500"))},
        quote_currencies={"TSLA": "USD"},
        marks={"TSLA": d("40")},
        rates=FxRates(),
    )
    assert valuation.positions[0].market_value == -400
    assert valuation.unrealized_pnl_base == 100
    assert valuation.equity == 10100


def test_valuation_without_a_mark_names_the_symbol() -> None:
    with pytest.raises(MissingMarkPrice, match="no mark price for AAPL"):
        PortfolioValuation.compute(
            base_currency="USD",
            cash={},
            positions={"AAPL": PositionState("AAPL", d("1"), d("1"))},
            quote_currencies={"AAPL": "USD"},
            marks={},
            rates=FxRates(),
        )


def test_valuation_without_a_route_to_base_raises_missing_rate() -> None:
    with pytest.raises(MissingFxRate, match="JPY/AUD"):
        PortfolioValuation.compute(
            base_currency="AUD", cash={"JPY": d("1000")}, positions={}, quote_currencies={}, marks={}, rates=FxRates()
        )


def test_repeated_partial_closes_keep_the_cost_within_quotient_places() -> None:
    # 0.006 held at cost 240.0179; closing 0.001 at a time used to add a decimal place per close.
    position = PositionState("BTC-USD", Decimal("0.006"), Decimal("240.0179"))
    for _ in range(5):
        position, _ = position.apply_fill("sell", Decimal("0.001"), Decimal("40000"))
        exponent = position.cost.as_tuple().exponent
        assert isinstance(exponent, int)
        assert exponent >= -QUOTIENT_PLACES, position.cost
    last, realized = position.apply_fill("sell", Decimal("0.001"), Decimal("40000"))
    assert (last.quantity, last.cost) == (0, 0)  # the last unit releases exactly what is left
    assert realized == Decimal(40) - position.cost


_COSTS = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10) ** 9, places=12, allow_nan=False)
_UNITS = st.decimals(min_value=Decimal("0.00001"), max_value=Decimal(10) ** 6, places=5, allow_nan=False)


@given(cost=_COSTS, held=_UNITS, fraction=st.fractions(min_value=Fraction(1, 1000), max_value=Fraction(999, 1000)))
def test_a_partial_close_releases_the_pro_rata_cost_as_divide_writes_it(cost: Decimal, held: Decimal, fraction: Fraction) -> None:
    """The released cost is `divide(cost x closing, held)`, kept to QUOTIENT_PLACES places (half-even) when it has
    more: the same value written the same way (the position keeps what is left, so the exponent shows in the books)."""
    closing = (held * fraction.numerator / fraction.denominator).quantize(Decimal("0.00001"))
    if not 0 < closing < held:
        return
    effect = PositionState("AAPL", held, cost).fill_effect(Side.SELL, closing, Decimal(1))
    expected = divide(Context(prec=100).multiply(cost, closing), held)
    exponent = expected.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -QUOTIENT_PLACES:
        expected = expected.quantize(Decimal(1).scaleb(-QUOTIENT_PLACES), rounding=ROUND_HALF_EVEN, context=Context(prec=100))
    assert str(-effect.closed_cost) == str(expected)


@given(fills())
def test_every_position_a_fill_leaves_passes_the_checking_constructor(records: list[FillRecord]) -> None:
    """`fill_effect` builds its positions without `PositionState`'s check: each must be one the check accepts as is
    (the same symbol, finite Decimals, no cost once flat)."""
    positions: dict[str, PositionState] = {}
    for fill in records:
        before = positions.get(fill.symbol, PositionState(fill.symbol))
        after = before.fill_effect(fill.side, fill.quantity, fill.price).position
        checked = PositionState(after.symbol, after.quantity, after.cost, after.realized_pnl)
        assert checked == after
        assert all(type(value) is Decimal for value in (after.quantity, after.cost, after.realized_pnl))
        assert after.quantity or not after.cost
        positions[fill.symbol] = after
