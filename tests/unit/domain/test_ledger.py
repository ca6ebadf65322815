from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradestack.core.money import plain
from tradestack.domain.ledger import (
    Account,
    AccountKind,
    EntryKind,
    InvalidEntry,
    JournalEntry,
    Posting,
    UnbalancedEntry,
    balances,
    cash_balances,
    check_zero_sum,
    currency_fill_entry,
    deposit,
    fee_entry,
    fill_entry,
    fill_entry_with_cash,
    fx_conversion,
    position_quantities,
    reversal,
)
from tradestack.domain.marketdata import Side
from tradestack.domain.portfolio import FillRecord, PositionState, fold_fills

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
USD, EUR, AUD = "USD", "EUR", "AUD"


def d(text: str) -> Decimal:
    return Decimal(text)


def lines(entry: JournalEntry) -> list[tuple[str, str, str, str | None]]:
    """Postings as (account, currency, amount, quantity) text, exact and without trailing zeros."""
    return [
        (str(p.account), p.currency, plain(p.amount), None if p.quantity is None else plain(p.quantity)) for p in entry.postings
    ]


def sums_by_currency(postings: list[Posting]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for posting in postings:
        totals[posting.currency] += posting.amount
    return dict(totals)


# -- accounts and postings ----------------------------------------------------------------------


def test_account_names_round_trip() -> None:
    for name in ["cash:USD", "position:BTC-USD", "fees:USDT", "realized_pnl:EUR", "deposits:AUD", "fx:JPY"]:
        assert str(Account.parse(name)) == name
    assert Account.parse("position:AAPL") == Account.position("AAPL")
    assert Account.cash(USD).currency == USD
    assert Account.position("AAPL").currency is None


@pytest.mark.parametrize("name", ["cash", "bank:USD", "cash:usd", "cash:", "position:aapl", "fees:U S"])
def test_bad_account_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidEntry):
        Account.parse(name)


def test_posting_in_another_currency_than_its_account_is_refused() -> None:
    with pytest.raises(InvalidEntry, match="must be in USD"):
        Posting(Account.cash(USD), EUR, d("1"))


def test_position_posting_needs_a_quantity_and_others_refuse_one() -> None:
    with pytest.raises(InvalidEntry, match="quantity"):
        Posting(Account.position("AAPL"), USD, d("100"))
    with pytest.raises(InvalidEntry, match="cannot carry a quantity"):
        Posting(Account.cash(USD), USD, d("100"), d("1"))


def test_float_amount_is_refused() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        Posting(Account.cash(USD), USD, 0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_non_finite_amount_is_refused(amount: str) -> None:
    with pytest.raises(InvalidEntry, match="finite"):
        Posting(Account.cash(USD), USD, Decimal(amount))


# -- entries ------------------------------------------------------------------------------------


def test_unbalanced_entry_is_refused_naming_currency_and_imbalance() -> None:
    postings = (Posting(Account.cash(USD), USD, d("100")), Posting(Account.deposits(USD), USD, d("-99.5")))
    with pytest.raises(UnbalancedEntry, match=r"'dep-1' does not balance: USD postings sum to 0\.5") as caught:
        JournalEntry("dep-1", T0, EntryKind.DEPOSIT, postings)
    assert caught.value.imbalances == {USD: d("0.5")}
    assert caught.value.status_code == 422


def test_entry_balanced_in_total_but_not_per_currency_is_refused() -> None:
    postings = (Posting(Account.cash(USD), USD, d("100")), Posting(Account.deposits(EUR), EUR, d("-100")))
    with pytest.raises(UnbalancedEntry, match="EUR postings sum to -100, USD postings sum to 100"):
        JournalEntry("dep-1", T0, EntryKind.DEPOSIT, postings)


def test_entry_without_postings_is_refused() -> None:
    with pytest.raises(InvalidEntry, match="no postings"):
        JournalEntry("empty", T0, EntryKind.FEE, ())


def test_entry_with_naive_time_is_refused() -> None:
    with pytest.raises(InvalidEntry, match="UTC"):
        deposit("dep-1", datetime(2026, 1, 5), USD, d("1"))  # noqa: DTZ001


def test_only_reversals_name_a_reversed_entry() -> None:
    postings = deposit("dep-1", T0, USD, d("1")).postings
    with pytest.raises(InvalidEntry, match="reversal"):
        JournalEntry("x", T0, EntryKind.DEPOSIT, postings, reverses="dep-0")
    with pytest.raises(InvalidEntry, match="reversal"):
        JournalEntry("x", T0, EntryKind.REVERSAL, postings)


def test_entries_are_immutable() -> None:
    entry = deposit("dep-1", T0, USD, d("1"))
    with pytest.raises(AttributeError):
        entry.postings = ()  # type: ignore[misc]


# -- builders -----------------------------------------------------------------------------------


def test_deposit_debits_cash_and_credits_deposits() -> None:
    entry = deposit("dep-1", T0, AUD, d("5000"))
    assert entry.kind is EntryKind.DEPOSIT
    assert lines(entry) == [("cash:AUD", AUD, "5000", None), ("deposits:AUD", AUD, "-5000", None)]
    with pytest.raises(InvalidEntry, match="positive"):
        deposit("dep-2", T0, AUD, d("0"))


def test_buy_debits_position_at_cost_and_credits_cash_and_fee() -> None:
    entry = fill_entry("f-1", T0, "AAPL", Side.BUY, d("10"), d("100"), USD, d("1.25"), AUD, PositionState("AAPL"))
    assert lines(entry) == [
        ("position:AAPL", USD, "1000", "10"),
        ("cash:USD", USD, "-1000", None),
        ("fees:AUD", AUD, "1.25", None),
        ("cash:AUD", AUD, "-1.25", None),
    ]


def test_sell_at_a_gain_releases_average_cost_and_credits_realized_pnl() -> None:
    before = PositionState("AAPL", d("20"), d("2100"))  # 10 @ 100 + 10 @ 110
    entry = fill_entry("f-3", T0, "AAPL", "sell", d("5"), d("120"), USD, d("0"), USD, before, reference="order-7")
    assert entry.reference == "order-7"
    assert lines(entry) == [
        ("position:AAPL", USD, "-525", "-5"),
        ("cash:USD", USD, "600", None),
        ("realized_pnl:USD", USD, "-75", None),
    ]


def test_short_sale_credits_position_at_the_sale_price() -> None:
    entry = fill_entry("f-1", T0, "TSLA", Side.SELL, d("10"), d("50"), USD, d("0"), USD, PositionState("TSLA"))
    assert lines(entry) == [("position:TSLA", USD, "-500", "-10"), ("cash:USD", USD, "500", None)]


def test_cover_above_the_short_price_debits_realized_pnl() -> None:
    short = PositionState("TSLA", d("-10"), d("-500"))
    entry = fill_entry("f-2", T0, "TSLA", Side.BUY, d("10"), d("60"), USD, d("0"), USD, short)
    assert lines(entry) == [
        ("position:TSLA", USD, "500", "10"),
        ("cash:USD", USD, "-600", None),
        ("realized_pnl:USD", USD, "100", None),  # a loss of 100 is a debit
    ]


def test_flip_through_zero_posts_the_close_and_the_open_separately() -> None:
    long = PositionState("AAPL", d("10"), d("1000"))
    entry = fill_entry("f-2", T0, "AAPL", Side.SELL, d("25"), d("120"), USD, d("2"), USD, long)
    assert lines(entry) == [
        ("position:AAPL", USD, "-1000", "-10"),
        ("position:AAPL", USD, "-1800", "-15"),
        ("cash:USD", USD, "3000", None),
        ("realized_pnl:USD", USD, "-200", None),
        ("fees:USD", USD, "2", None),
        ("cash:USD", USD, "-2", None),
    ]


def test_fill_against_another_symbols_position_is_refused() -> None:
    with pytest.raises(InvalidEntry, match="MSFT"):
        fill_entry("f-1", T0, "AAPL", Side.BUY, d("1"), d("1"), USD, d("0"), USD, PositionState("MSFT"))


def test_fee_entry_and_fx_conversion_balance_per_currency() -> None:
    fee = fee_entry("fee-1", T0, USD, d("3"))
    assert lines(fee) == [("fees:USD", USD, "3", None), ("cash:USD", USD, "-3", None)]
    fx = fx_conversion("fx-1", T0, EUR, d("100"), USD, d("108"))
    assert balances([fx]) == {
        (Account.cash(EUR), EUR): -100,
        (Account.fx(EUR), EUR): 100,
        (Account.fx(USD), USD): -108,
        (Account.cash(USD), USD): 108,
    }
    assert fx.currencies == {EUR, USD}


def test_reversal_negates_every_posting_and_balances() -> None:
    original = fill_entry(
        "f-1", T0, "AAPL", Side.SELL, d("25"), d("120"), USD, d("2"), EUR, PositionState("AAPL", d("10"), d("1000"))
    )
    undo = reversal("r-1", T0 + timedelta(hours=1), original, reference="venue busted the trade")
    assert undo.kind is EntryKind.REVERSAL
    assert undo.reverses == "f-1"
    assert undo.postings == tuple(
        Posting(p.account, p.currency, -p.amount, None if p.quantity is None else -p.quantity) for p in original.postings
    )
    assert all(amount == 0 for amount in balances([original, undo]).values())
    assert position_quantities([original, undo]) == {"AAPL": 0}


def test_reversal_cannot_predate_its_original() -> None:
    original = deposit("dep-1", T0, USD, d("1"))
    with pytest.raises(InvalidEntry, match="predates"):
        reversal("r-1", T0 - timedelta(seconds=1), original)


def test_check_zero_sum_catches_an_entry_that_bypassed_its_constructor() -> None:
    good = deposit("dep-1", T0, USD, d("10"))
    tampered = deposit("dep-2", T0, USD, d("10"))
    object.__setattr__(tampered, "postings", tampered.postings[:1])
    check_zero_sum([good])
    with pytest.raises(UnbalancedEntry, match=r"'dep-2'.*USD postings sum to 10"):
        check_zero_sum([good, tampered])


# -- journal properties -------------------------------------------------------------------------

SYMBOL_QUOTES = {"AAPL": USD, "SAP": EUR, "BTC-USD": USD}
SYMBOL_LOTS = {"AAPL": Decimal(1), "SAP": Decimal(1), "BTC-USD": Decimal("0.0001")}
SYMBOL_TICKS = {"AAPL": Decimal("0.01"), "SAP": Decimal("0.05"), "BTC-USD": Decimal("0.5")}
CURRENCIES = [USD, EUR, AUD]


@dataclass(frozen=True)
class Booked:
    """A journal built from random operations, with what was fed in kept for independent checks."""

    entries: list[JournalEntry]
    fills: list[FillRecord]
    deposits: dict[str, Decimal]
    bought: dict[str, Decimal]
    sold: dict[str, Decimal]
    fees: dict[str, Decimal]
    cash_places: int | None = None  # fills book cash in this minor unit (None: exactly)


@st.composite
def journals(draw: st.DrawFn) -> Booked:
    """Deposits and fills (buys, sells, shorts, covers, exact closes and flips) with fees in any currency."""
    positions: dict[str, PositionState] = {}
    booked = Booked(
        [], [], defaultdict(Decimal), defaultdict(Decimal), defaultdict(Decimal), defaultdict(Decimal),
        draw(st.sampled_from([None, 2])),  # deposits and fees are in cents
    )  # fmt: skip
    for i in range(draw(st.integers(0, 40))):
        ts = T0 + timedelta(minutes=i)
        if draw(st.integers(0, 4)) == 0:
            currency = draw(st.sampled_from(CURRENCIES))
            amount = Decimal(draw(st.integers(1, 10**9))).scaleb(-2)
            booked.entries.append(deposit(f"dep-{i}", ts, currency, amount))
            booked.deposits[currency] += amount
            continue
        symbol = draw(st.sampled_from(sorted(SYMBOL_QUOTES)))
        quote = SYMBOL_QUOTES[symbol]
        before = positions.get(symbol, PositionState(symbol))
        lots = SYMBOL_LOTS[symbol] * draw(st.integers(1, 500))
        shape = draw(st.sampled_from(["trade", "trade", "close", "flip"]))
        if shape != "trade" and not before.is_flat:
            side = Side.SELL if before.quantity > 0 else Side.BUY
            quantity = abs(before.quantity) + (lots if shape == "flip" else 0)
        else:
            side = draw(st.sampled_from(Side))
            quantity = lots
        price = SYMBOL_TICKS[symbol] * draw(st.integers(1, 40_000))
        fee = Decimal(draw(st.integers(-100, 2_000))).scaleb(-2)  # negative is a maker rebate
        fee_currency = draw(st.sampled_from(CURRENCIES))
        booked.entries.append(
            fill_entry(
                f"fill-{i}", ts, symbol, side, quantity, price, quote, fee, fee_currency, before,
                cash_places=booked.cash_places,
            )
        )  # fmt: skip
        booked.fills.append(FillRecord(symbol, side, quantity, price, fee, fee_currency, ts))
        positions[symbol], _ = before.apply_fill(side, quantity, price)
        (booked.bought if side is Side.BUY else booked.sold)[quote] += quantity * price
        booked.fees[fee_currency] += fee
    return booked


@given(journals())
def test_every_entry_and_the_journal_sum_to_zero_per_currency(booked: Booked) -> None:
    for entry in booked.entries:
        assert all(total == 0 for total in sums_by_currency(list(entry.postings)).values()), entry
    everything = [posting for entry in booked.entries for posting in entry.postings]
    assert all(total == 0 for total in sums_by_currency(everything).values())
    check_zero_sum(booked.entries)


@given(journals())
def test_every_fill_posting_is_one_the_posting_check_accepts(booked: Booked) -> None:
    # fill_entry builds its postings without `Posting`'s per-posting check once the currencies are known codes:
    # each must still be exactly what the checking constructor accepts and builds.
    for entry in booked.entries:
        for posting in entry.postings:
            assert type(posting) is Posting
            rebuilt = Posting(posting.account, posting.currency, posting.amount, posting.quantity)
            assert rebuilt == posting
            assert posting.account is Account._of(posting.account.kind, posting.account.code)  # the shared account


@pytest.mark.parametrize(
    ("quote_currency", "fee_currency", "message"),
    [
        ("usd", USD, "posting to position:AAPL: currency must be a currency code"),
        (USD, "usd", "fees account currency must be a currency code"),
        (USD, ["USD"], "fees account currency must be a currency code"),
        (USD, None, "fees account currency must be a currency code"),
    ],
)
def test_a_fill_in_a_currency_that_is_no_code_is_refused(quote_currency: object, fee_currency: object, message: str) -> None:
    with pytest.raises(InvalidEntry, match=message):
        fill_entry(
            "f-1", T0, "AAPL", Side.BUY, d("1"), d("10"), quote_currency, d("0.35"), fee_currency, PositionState("AAPL"),  # type: ignore[arg-type]
        )  # fmt: skip


@given(journals())
def test_position_quantities_equal_the_fold_of_fills(booked: Booked) -> None:
    folded = fold_fills(booked.fills)
    signed: dict[str, Decimal] = defaultdict(Decimal)
    for fill in booked.fills:
        signed[fill.symbol] += fill.quantity if fill.side is Side.BUY else -fill.quantity
    assert position_quantities(booked.entries) == {symbol: position.quantity for symbol, position in folded.items()}
    assert {s: q for s, q in signed.items()} == {s: p.quantity for s, p in folded.items()}
    totals = balances(booked.entries)
    for symbol, position in folded.items():
        assert totals.get((Account.position(symbol), SYMBOL_QUOTES[symbol]), Decimal(0)) == position.cost


@given(journals())
def test_cash_equals_deposits_minus_buys_plus_sells_minus_fees(booked: Booked) -> None:
    expected = {
        currency: booked.deposits[currency] - booked.bought[currency] + booked.sold[currency] - booked.fees[currency]
        for currency in CURRENCIES
    }
    cash = cash_balances(booked.entries)
    left_over = {c: a for (account, c), a in balances(booked.entries).items() if account.kind is AccountKind.ROUNDING}
    assert {c: cash.get(c, Decimal(0)) + left_over.get(c, Decimal(0)) for c in CURRENCIES} == expected
    assert set(cash) <= set(CURRENCIES)
    if booked.cash_places is None:
        assert left_over == {}
    else:  # cash moves in whole minor units, each fill leaving at most half of one over
        unit = Decimal(1).scaleb(-booked.cash_places)
        for entry in booked.entries:
            for posting in entry.postings:
                if posting.account.kind is AccountKind.CASH:
                    assert posting.amount == posting.amount.quantize(unit), entry
                if posting.account.kind is AccountKind.ROUNDING:
                    assert 0 < abs(posting.amount) <= unit / 2, entry


def test_a_fill_books_cash_in_the_minor_unit_and_the_rest_as_rounding() -> None:
    entry = fill_entry(
        "f-1", T0, "BTC-USD", Side.BUY, d("0.05"), d("43465.29"), USD, d("2.17"), USD, PositionState("BTC-USD"),
        cash_places=2,
    )  # fmt: skip
    assert sorted(lines(entry)) == sorted([
        ("position:BTC-USD", USD, "2173.2645", "0.05"),
        ("rounding:USD", USD, "-0.0045", None),  # 2173.2645 rounds half-even to 2173.26
        ("cash:USD", USD, "-2173.26", None),
        ("fees:USD", USD, "2.17", None),
        ("cash:USD", USD, "-2.17", None),
    ])  # fmt: skip
    sell = fill_entry(
        "f-2", T0, "BTC-USD", Side.SELL, d("0.05"), d("43465.3"), USD, d("0"), USD,
        PositionState("BTC-USD", d("0.05"), d("2173.2645")), cash_places=2,
    )  # fmt: skip
    assert ("cash:USD", USD, "2173.26", None) in lines(sell)  # 2173.265 half-even: to the even cent
    assert all(total == 0 for total in sums_by_currency(list(sell.postings)).values())


@given(journals())
def test_deposits_and_fees_accounts_hold_what_was_fed_in(booked: Booked) -> None:
    totals = balances(booked.entries)
    for currency in CURRENCIES:
        assert totals.get((Account.deposits(currency), currency), Decimal(0)) == -booked.deposits[currency]
        assert totals.get((Account.fees(currency), currency), Decimal(0)) == booked.fees[currency]
    kinds = {account.kind for account, _ in totals}
    rounding = set() if booked.cash_places is None else {AccountKind.ROUNDING}
    assert kinds <= {
        AccountKind.CASH,
        AccountKind.DEPOSITS,
        AccountKind.POSITION,
        AccountKind.REALIZED_PNL,
        AccountKind.FEES,
        *rounding,
    }


@given(journals())
def test_reversing_every_entry_leaves_every_account_at_zero(booked: Booked) -> None:
    later = T0 + timedelta(days=1)
    undone = [reversal(f"rev-{e.id}", later, e) for e in booked.entries]
    check_zero_sum(booked.entries + undone)
    assert all(amount == 0 for amount in balances(booked.entries + undone).values())
    assert all(quantity == 0 for quantity in position_quantities(booked.entries + undone).values())


def test_fx_conversion_needs_two_currencies_and_positive_amounts() -> None:
    for sold, bought in (("0", "108"), ("100", "0"), ("-1", "108")):
        with pytest.raises(InvalidEntry, match=f"an FX conversion needs positive amounts, got {sold} and {bought}"):
            fx_conversion("fx", T0, EUR, d(sold), USD, d(bought))
    with pytest.raises(InvalidEntry, match="an FX conversion needs two currencies, got EUR twice"):
        fx_conversion("fx", T0, EUR, d("100"), EUR, d("100"))
    assert fx_conversion("fx", T0, EUR, d("0.01"), USD, d("0.01"), reference="trade-7").reference == "trade-7"


def test_a_reversal_may_share_the_timestamp_of_what_it_reverses() -> None:
    original = fx_conversion("fx-1", T0, EUR, d("100"), USD, d("108"))
    assert reversal("undo", T0, original).reverses == "fx-1"
    with pytest.raises(InvalidEntry, match="predates entry 'fx-1'"):
        reversal("undo", T0 - timedelta(microseconds=1), original)


# -- what a refusal says --------------------------------------------------------------------------

KINDS = "cash, position, fees, realized_pnl, deposits, fx, rounding"
CURRENCY_RULE = "must be a currency code of 2-10 characters A-Z and 0-9 (such as USD or USDT)"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Account.parse("USD"), "account name must be 'kind:code' such as 'cash:USD', got 'USD'"),
        (lambda: Account.parse("bank:USD"), f"unknown account kind 'bank' in 'bank:USD'; use one of {KINDS}"),
        (lambda: Account("bank", USD), f"unknown account kind 'bank'; use one of {KINDS}"),  # type: ignore[arg-type]
        # The kind is what comes before the first colon; the rest is the code.
        (lambda: Account.parse("cash:U:SD"), f"cash account currency {CURRENCY_RULE}, got 'U:SD'"),
        (lambda: Account.parse("fx:usd"), f"fx account currency {CURRENCY_RULE}, got 'usd'"),
        (lambda: Account.cash(["USD"]), f"cash account currency {CURRENCY_RULE}, got ['USD']"),  # type: ignore[arg-type]
        (
            lambda: Account.parse("position:aapl"),
            "position account symbol must be 1-32 characters of A-Z, 0-9 and . - _ /, got 'aapl'",
        ),
        (
            lambda: Posting(Account.position("AAPL"), "usd", d("1"), d("1")),
            f"posting to position:AAPL: currency {CURRENCY_RULE}, got 'usd'",
        ),
        (
            lambda: Posting(Account.cash(USD), USD, d("NaN")),
            "posting to cash:USD: amount must be a finite Decimal, got Decimal('NaN')",
        ),
        (
            lambda: Posting(Account.position("AAPL"), USD, d("1"), d("Infinity")),
            "posting to position:AAPL: quantity must be a finite Decimal, got Decimal('Infinity')",
        ),
        (lambda: JournalEntry("", T0, EntryKind.FEE, ()), "entry id must be a non-empty string, got ''"),
        (lambda: JournalEntry("  ", T0, EntryKind.FEE, ()), "entry id must be a non-empty string, got '  '"),
        (
            lambda: JournalEntry("e-1", datetime(2026, 1, 5), EntryKind.FEE, ()),  # noqa: DTZ001
            "entry 'e-1': ts must be a timezone-aware UTC datetime, got datetime.datetime(2026, 1, 5, 0, 0)",
        ),
        (
            lambda: JournalEntry("e-1", T0, EntryKind.FEE, ("cash:USD 1",)),  # type: ignore[arg-type]
            "entry 'e-1': postings must be Posting values",
        ),
        (lambda: fee_entry("fee-1", T0, USD, d("0")), "a fee entry needs a non-zero amount"),
        (lambda: deposit("dep-1", T0, USD, d("-Infinity")), "deposit amount must be a finite Decimal, got Decimal('-Infinity')"),
        (
            lambda: fill_entry("f-1", T0, "AAPL", Side.BUY, d("1"), d("1"), USD, d("NaN"), USD, PositionState("AAPL")),
            "fee must be a finite Decimal, got Decimal('NaN')",
        ),
        (lambda: fx_conversion("fx", T0, EUR, d("NaN"), USD, d("1")), "sold amount must be a finite Decimal, got Decimal('NaN')"),
        (
            lambda: fx_conversion("fx", T0, EUR, d("1"), USD, d("sNaN")),
            "bought amount must be a finite Decimal, got Decimal('sNaN')",
        ),
    ],
)
def test_a_refusal_names_the_value_and_what_to_fix(build: Callable[[], object], message: str) -> None:
    with pytest.raises(InvalidEntry) as caught:
        build()
    assert str(caught.value) == message


def test_a_float_is_refused_naming_its_type() -> None:
    with pytest.raises(TypeError) as caught:
        deposit("dep-1", T0, USD, 0.1)  # type: ignore[arg-type]
    assert str(caught.value) == "deposit amount must be a Decimal, got float 0.1"
    with pytest.raises(TypeError) as caught:
        Posting(Account.cash, USD, d("1"))  # type: ignore[arg-type]
    assert str(caught.value).startswith("posting account must be an Account (see Account.parse), got <bound method")


def test_an_unbalanced_entry_carries_its_id_for_the_caller() -> None:
    postings = (Posting(Account.cash(USD), USD, d("1")),)
    with pytest.raises(UnbalancedEntry) as caught:
        JournalEntry("dep-9", T0, EntryKind.DEPOSIT, postings)
    assert caught.value.entry_id == "dep-9"
    assert caught.value.extra == {"entry_id": "dep-9"}


# -- values as storage hands them back ----------------------------------------------------------


def test_kinds_given_as_their_text_and_whole_numbers_are_taken() -> None:
    account = Account("position", "AAPL")  # type: ignore[arg-type]
    assert account.kind is AccountKind.POSITION
    posting = Posting(account, USD, 1000, 10)  # type: ignore[arg-type]
    assert (type(posting.amount), type(posting.quantity)) == (Decimal, Decimal)
    assert (posting.amount, posting.quantity) == (d("1000"), d("10"))
    entry = JournalEntry("e-1", T0, "deposit", deposit("dep-1", T0, USD, 5).postings)  # type: ignore[arg-type]
    assert entry.kind is EntryKind.DEPOSIT
    assert lines(entry) == [("cash:USD", USD, "5", None), ("deposits:USD", USD, "-5", None)]


def test_every_builder_keeps_the_reference_it_is_given() -> None:
    original = deposit("dep-1", T0, USD, d("10"), reference="wire-1")
    assert original.reference == "wire-1"
    assert fee_entry("fee-1", T0, USD, d("1"), reference="platform fee").reference == "platform fee"
    assert reversal("r-1", T0, original, reference="wire bounced").reference == "wire bounced"


# -- exactness beyond the default 28 digits -----------------------------------------------------

BIG = d("123456789012345678901234567890.123456789")  # 39 significant digits
MINUS_BIG = "-" + plain(BIG)  # written out: `-BIG` would round to the default 28 digits


def test_sums_stay_exact_beyond_the_default_decimal_precision() -> None:
    entries = [deposit("dep-1", T0, USD, BIG), deposit("dep-2", T0, USD, d("0.000000001"))]
    assert lines(entries[0]) == [("cash:USD", USD, plain(BIG), None), ("deposits:USD", USD, MINUS_BIG, None)]
    assert cash_balances(entries) == {USD: d("123456789012345678901234567890.123456790")}
    check_zero_sum(entries)
    undo = reversal("r-1", T0, entries[0])
    assert balances([entries[0], undo]) == {(Account.cash(USD), USD): 0, (Account.deposits(USD), USD): 0}
    assert [amount for _, _, amount, _ in lines(fx_conversion("fx-1", T0, EUR, BIG, USD, BIG))] == [
        MINUS_BIG,
        plain(BIG),
    ] * 2
    assert lines(fee_entry("fee-1", T0, USD, BIG)) == [
        ("fees:USD", USD, plain(BIG), None),
        ("cash:USD", USD, MINUS_BIG, None),
    ]
    lots = Posting(Account.position("AAPL"), USD, d("1"), BIG)
    back = Posting(Account.position("AAPL"), USD, d("-1"), d("-123456789012345678901234567890.123456788"))
    assert position_quantities([JournalEntry("e-1", T0, EntryKind.FILL, (lots, back))]) == {"AAPL": d("0.000000001")}


def test_a_fill_costs_exactly_quantity_times_price() -> None:
    quantity, price = d("1234567890.12345678"), d("98765432109.87654321")
    entry = fill_entry("f-1", T0, "BTC-USD", Side.BUY, quantity, price, USD, d("0"), USD, PositionState("BTC-USD"))
    cash = next(p.amount for p in entry.postings if p.account == Account.cash(USD))
    assert cash == d("-121932631137021794334.8574911222374638")  # 37 digits, none lost
    assert lines(entry)[0] == ("position:BTC-USD", USD, "121932631137021794334.8574911222374638", plain(quantity))


def test_a_currency_pair_fill_is_a_conversion_with_its_fee() -> None:
    entry = currency_fill_entry(
        "f-1", T0, Side.BUY, d("1000"), d("1.080055"), ("EUR", USD), d("0.22"), USD, "fill-1", cash_places=2
    )
    assert sorted(lines(entry)) == sorted([
        ("cash:USD", USD, "-1080.06", None),  # 1080.055 half-even
        ("fx:USD", USD, "1080.06", None),
        ("fx:EUR", "EUR", "-1000", None),
        ("cash:EUR", "EUR", "1000", None),
        ("fees:USD", USD, "0.22", None),
        ("cash:USD", USD, "-0.22", None),
    ])  # fmt: skip
    assert (entry.kind, entry.reference) == (EntryKind.FILL, "fill-1")
    sell = currency_fill_entry("f-2", T0, "sell", d("1000"), d("1.08"), ("EUR", USD), d("0"), USD)
    assert ("cash:EUR", "EUR", "-1000", None) in lines(sell)
    assert ("cash:USD", USD, "1080", None) in lines(sell)


# -- fills built unchecked, as the checking constructors would build them --------------------------


def checked_fill(
    entry_id: str, ts: datetime, fill: FillRecord, quote: str, before: PositionState, cash_places: int | None
) -> tuple[JournalEntry, Decimal]:
    """The fill's entry and the cash its units moved, worked out from the documented rules and built through the
    checking constructors (`Posting`, `JournalEntry`): the reference for what `fill_entry_with_cash` builds unchecked."""
    effect = before.fill_effect(fill.side, fill.quantity, fill.price)
    postings = [
        Posting(Account.position(fill.symbol), quote, cost, units)
        for cost, units in ((effect.closed_cost, effect.closed_quantity), (effect.opened_cost, effect.opened_quantity))
        if units
    ]
    with localcontext() as exact:
        exact.prec = 200
        cash = fill.quantity * fill.price * (-1 if fill.side is Side.BUY else 1)
        if cash_places is not None:
            rounded = cash.quantize(Decimal(1).scaleb(-cash_places), rounding=ROUND_HALF_EVEN)
            if cash != rounded:
                postings.append(Posting(Account.rounding(quote), quote, cash - rounded))
            cash = rounded
        postings.append(Posting(Account.cash(quote), quote, cash))
        if effect.realized:
            postings.append(Posting(Account.realized_pnl(quote), quote, -effect.realized))
        if fill.fee:
            postings.append(Posting(Account.fees(fill.fee_currency), fill.fee_currency, fill.fee))
            postings.append(Posting(Account.cash(fill.fee_currency), fill.fee_currency, -fill.fee))
    return JournalEntry(entry_id, ts, EntryKind.FILL, tuple(postings), f"ref-{entry_id}"), cash


FillRun = tuple[str, str, int | None, list[FillRecord]]
"""A symbol, its quote currency, the cash places and fills of it."""


@st.composite
def fill_runs(draw: st.DrawFn) -> FillRun:
    """Fills of one symbol that open, add to, reduce, close and flip its position, at prices of any precision."""
    symbol = draw(st.sampled_from(sorted(SYMBOL_QUOTES)))
    fills = []
    for i in range(draw(st.integers(1, 12))):
        quantity = Decimal(draw(st.integers(1, 10**6))).scaleb(-draw(st.integers(0, 5)))
        price = Decimal(draw(st.integers(1, 10**8))).scaleb(-draw(st.integers(0, 6)))
        fee = Decimal(draw(st.integers(-500, 5_000))).scaleb(-draw(st.integers(0, 4)))  # negative: a rebate
        side, fee_currency = draw(st.sampled_from(Side)), draw(st.sampled_from(CURRENCIES))
        fills.append(FillRecord(symbol, side, quantity, price, fee, fee_currency, T0 + timedelta(seconds=i)))
    return symbol, SYMBOL_QUOTES[symbol], draw(st.sampled_from([None, 0, 2, 8])), fills


@given(fill_runs())
def test_a_fill_entry_built_unchecked_equals_the_checked_one_and_balances(run: FillRun) -> None:
    # fill_entry_with_cash builds its postings and entry without `Posting`'s and `JournalEntry`'s checks: balanced by
    # construction. Each must equal what the checking constructors build from the rules, and balance on its own.
    symbol, quote, cash_places, fills = run
    position = PositionState(symbol)
    for i, fill in enumerate(fills):
        entry, effect, cash = fill_entry_with_cash(
            f"f-{i}", fill.ts, symbol, fill.side, fill.quantity, fill.price, quote, fill.fee, fill.fee_currency, position,
            f"ref-f-{i}", cash_places=cash_places,
        )  # fmt: skip
        expected, expected_cash = checked_fill(f"f-{i}", fill.ts, fill, quote, position, cash_places)
        assert entry == expected
        assert [type(p) for p in entry.postings] == [Posting] * len(expected.postings)
        assert (cash, effect) == (expected_cash, position.fill_effect(fill.side, fill.quantity, fill.price))
        fee_cash = fill.fee if fill.fee_currency == quote else 0
        assert cash == sum((p.amount for p in entry.postings if p.account == Account.cash(quote)), Decimal(0)) + fee_cash
        check_zero_sum([entry])
        position = effect.position


def test_a_hand_built_unbalanced_entry_is_still_refused() -> None:
    # Only the fill builder skips the check, for entries balanced by construction: one built from outside input is checked.
    postings = (Posting(Account.cash(USD), USD, d("-100.00")), Posting(Account.position("AAPL"), USD, d("100.01"), d("1")))
    with pytest.raises(UnbalancedEntry, match=r"'f-1' does not balance: USD postings sum to 0\.01"):
        JournalEntry("f-1", T0, EntryKind.FILL, postings, "fill-1")
    with pytest.raises(UnbalancedEntry, match=r"EUR postings sum to 100\.01, USD postings sum to -100"):
        JournalEntry("f-1", T0, EntryKind.FILL, (postings[0], Posting(Account.position("SAP"), EUR, d("100.01"), d("1"))))


@pytest.mark.parametrize(
    ("entry_id", "ts", "message"),
    [
        (" ", T0, "entry id must be a non-empty string"),
        ("f-1", T0.replace(tzinfo=None), "must be a timezone-aware UTC datetime"),
    ],
)
def test_a_fill_with_an_id_or_time_the_entry_check_refuses_is_refused(entry_id: str, ts: datetime, message: str) -> None:
    with pytest.raises(InvalidEntry, match=message):
        fill_entry_with_cash(entry_id, ts, "AAPL", Side.BUY, d("1"), d("10"), USD, d("0.35"), USD, PositionState("AAPL"))


def test_a_fill_at_an_aware_utc_time_of_another_tzinfo_books_as_at_utc() -> None:
    # datetime.timezone(timedelta(0)) is UTC but not `UTC` itself: the checking path takes it, as before.
    ts = T0.astimezone(timezone(timedelta(0)))
    entry, _, cash = fill_entry_with_cash("f-1", ts, "AAPL", Side.BUY, d("2"), d("10.5"), USD, d("0"), USD, PositionState("AAPL"))
    assert (entry.ts, cash, lines(entry)) == (T0, d("-21.0"), [("position:AAPL", USD, "21", "2"), ("cash:USD", USD, "-21", None)])
