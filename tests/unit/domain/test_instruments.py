from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradestack.domain.instruments import (
    ASX,
    CATALOG,
    CRYPTO,
    FX,
    NASDAQ,
    NSE,
    NYSE,
    Instrument,
    InstrumentKind,
    Session,
    SessionTable,
    Venue,
    instrument,
    round_to_tick,
    venue,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# -- calendars ---------------------------------------------------------------------------------


def test_nyse_friday_morning_is_open() -> None:
    assert NYSE.is_open(utc(2026, 11, 20, 15, 0))  # 10:00 New York


def test_nyse_saturday_is_closed() -> None:
    assert not NYSE.is_open(utc(2026, 11, 21, 15, 0))


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 3, 9, 13, 45), True),  # Monday after the change: 09:45 EDT
        (utc(2026, 3, 6, 14, 15), False),  # Friday before: 09:15 EST
        (utc(2026, 3, 6, 14, 30), True),  # 09:30 EST, the opening instant is included
        (utc(2026, 3, 9, 20, 0), False),  # 16:00 EDT, the closing instant is excluded
        (utc(2026, 3, 6, 20, 59), True),  # 15:59 EST
    ],
)
def test_nyse_follows_daylight_saving(at: datetime, expected: bool) -> None:
    assert NYSE.is_open(at) is expected


def test_open_accepts_any_aware_timezone() -> None:
    new_york_winter = timezone(timedelta(hours=-5))
    assert NASDAQ.is_open(datetime(2026, 11, 20, 10, 0, tzinfo=new_york_winter))


def test_naive_datetime_is_refused() -> None:
    naive = datetime(2026, 11, 20, 15, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="naive"):
        NYSE.is_open(naive)
    with pytest.raises(ValueError, match="naive"):
        NYSE.next_open(naive)


def test_fx_is_open_sunday_evening_new_york_in_winter() -> None:
    assert FX.is_open(utc(2026, 1, 4, 22, 30))  # Sunday 17:30 EST
    assert not FX.is_open(utc(2026, 1, 4, 21, 59))  # Sunday 16:59 EST


def test_fx_is_closed_on_saturday() -> None:
    assert not FX.is_open(utc(2026, 1, 3, 12, 0))


def test_fx_is_open_through_the_week_and_closes_friday_17_new_york() -> None:
    assert FX.is_open(utc(2026, 1, 7, 22, 0))  # Wednesday 17:00, a session boundary
    assert FX.is_open(utc(2026, 1, 9, 21, 59))
    assert not FX.is_open(utc(2026, 1, 9, 22, 0))
    assert FX.next_close(utc(2026, 1, 5, 12, 0)) == utc(2026, 1, 9, 22, 0)
    assert FX.next_open(utc(2026, 1, 10, 12, 0)) == utc(2026, 1, 11, 22, 0)


def test_fx_summer_hours_shift_by_one_hour_in_utc() -> None:
    assert FX.next_open(utc(2026, 7, 4, 12, 0)) == utc(2026, 7, 5, 21, 0)  # 17:00 EDT


def test_crypto_is_always_open() -> None:
    for at in (utc(2026, 1, 3, 0, 0), utc(2026, 11, 26, 15, 0), utc(2027, 12, 25, 23, 59)):
        assert CRYPTO.is_open(at)
        assert CRYPTO.next_open(at) == at
    with pytest.raises(ValueError, match="never closes"):
        CRYPTO.next_close(utc(2026, 1, 1, 0, 0))


def test_next_open_skips_the_weekend() -> None:
    friday_after_close = utc(2026, 11, 20, 21, 30)
    assert NYSE.next_open(friday_after_close) == utc(2026, 11, 23, 14, 30)


def test_next_open_skips_a_holiday_of_the_weekly_calendar() -> None:
    thanksgiving = replace(NYSE, holidays=frozenset({date(2026, 11, 26)}))
    assert not thanksgiving.is_open(utc(2026, 11, 26, 15, 0))
    assert thanksgiving.next_open(utc(2026, 11, 25, 21, 0)) == utc(2026, 11, 27, 14, 30)


def test_next_open_when_open_is_now() -> None:
    at = utc(2026, 11, 20, 15, 0)
    assert NYSE.next_open(at) == at


def test_next_close_of_the_running_and_the_next_session() -> None:
    assert NYSE.next_close(utc(2026, 11, 20, 15, 0)) == utc(2026, 11, 20, 21, 0)
    assert NYSE.next_close(utc(2026, 11, 21, 15, 0)) == utc(2026, 11, 23, 21, 0)


def test_asx_uses_sydney_time() -> None:
    # 5 January 2026 is a Monday in Australian summer (AEDT, UTC+11): 10:00-16:00 is 23:00-05:00 UTC.
    assert ASX.is_open(utc(2026, 1, 5, 0, 0))
    assert not ASX.is_open(utc(2026, 1, 5, 6, 0))
    assert ASX.next_open(utc(2026, 1, 5, 6, 0)) == utc(2026, 1, 5, 23, 0)


def test_nse_uses_india_time() -> None:
    assert NSE.is_open(utc(2026, 1, 27, 4, 0))  # 09:30 IST
    assert not NSE.is_open(utc(2026, 1, 27, 3, 30))  # 09:00 IST


# -- session tables: the exact calendar over a range, the weekly sessions outside it ------------

# A made-up week of NYSE in table form: Monday normal, Tuesday a holiday, Wednesday a half day
# (closes 13:00 New York), Thursday and Friday normal; the table covers that week only.
WEEK = SessionTable.of(
    [
        (utc(2026, 11, 23, 14, 30), utc(2026, 11, 23, 21, 0)),
        (utc(2026, 11, 25, 14, 30), utc(2026, 11, 25, 18, 0)),
        (utc(2026, 11, 26, 14, 30), utc(2026, 11, 26, 21, 0)),
        (utc(2026, 11, 27, 14, 30), utc(2026, 11, 27, 21, 0)),
    ],
    start=utc(2026, 11, 23, 5, 0),
    end=utc(2026, 11, 28, 5, 0),
    source="test",
)
TABLED = replace(NYSE, schedule=WEEK)


def test_a_session_table_wins_over_the_weekly_sessions_inside_its_range() -> None:
    assert NYSE.is_open(utc(2026, 11, 24, 15, 0))  # the weekly rule alone: an ordinary Tuesday
    assert not TABLED.is_open(utc(2026, 11, 24, 15, 0))  # the table: a holiday
    assert TABLED.next_open(utc(2026, 11, 23, 21, 0)) == utc(2026, 11, 25, 14, 30)
    assert TABLED.next_close(utc(2026, 11, 25, 15, 0)) == utc(2026, 11, 25, 18, 0)  # the half day
    assert not TABLED.is_open(utc(2026, 11, 25, 18, 30))
    assert TABLED.is_open(utc(2026, 11, 25, 17, 59))


def test_outside_its_range_the_weekly_sessions_apply_again() -> None:
    assert TABLED.is_open(utc(2026, 11, 20, 15, 0))  # the Friday before the table
    assert TABLED.next_open(utc(2026, 11, 27, 21, 0)) == utc(2026, 11, 30, 14, 30)  # the Monday after it
    assert TABLED.next_open(utc(2026, 11, 20, 21, 0)) == utc(2026, 11, 23, 14, 30)  # into the table
    assert TABLED.next_close(utc(2026, 11, 21, 12, 0)) == utc(2026, 11, 23, 21, 0)


@pytest.mark.parametrize(
    ("sessions", "message"),
    [
        ([(utc(2026, 1, 2, 15), utc(2026, 1, 2, 14))], "in order"),
        ([(utc(2026, 1, 2, 14), utc(2026, 1, 2, 18)), (utc(2026, 1, 2, 17), utc(2026, 1, 2, 19))], "overlap"),
        ([(utc(2026, 1, 9, 14), utc(2026, 1, 9, 18))], "ends after"),
    ],
)
def test_a_malformed_session_table_is_refused(sessions: list[tuple[datetime, datetime]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SessionTable.of(sessions, utc(2026, 1, 1), utc(2026, 1, 8), "test")


def test_session_wrapping_past_midnight() -> None:
    night = Venue(
        code="NIGHT",
        name="Night market",
        timezone="UTC",
        sessions=(Session(frozenset({0}), time(22, 0), time(2, 0)),),
    )
    assert night.is_open(utc(2026, 1, 5, 23, 0))  # Monday 23:00
    assert night.is_open(utc(2026, 1, 6, 1, 59))  # Tuesday 01:59 belongs to Monday's session
    assert not night.is_open(utc(2026, 1, 6, 2, 0))
    assert not night.is_open(utc(2026, 1, 5, 1, 0))  # Monday 01:00: Sunday has no session
    assert night.next_close(utc(2026, 1, 5, 23, 0)) == utc(2026, 1, 6, 2, 0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "time zone"),
        ({"code": "nyse"}, "venue code"),
        ({"sessions": ()}, "at least one session"),
    ],
)
def test_invalid_venue_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(NYSE, **changes)  # type: ignore[arg-type]  # deliberately bad values


def test_invalid_session_is_refused() -> None:
    with pytest.raises(ValueError, match="weekdays"):
        Session(frozenset({7}), time(9), time(17))


def test_unknown_venue_lists_the_known_codes() -> None:
    assert venue("ASX") is ASX
    with pytest.raises(KeyError, match="NASDAQ"):
        venue("LSE")


# -- instruments -------------------------------------------------------------------------------


def test_catalog_symbols_are_unique_and_their_venues_exist() -> None:
    symbols = [i.symbol for i in CATALOG]
    assert len(symbols) == len(set(symbols))
    for listed in CATALOG:
        venue(listed.venue)


def test_catalog_indices_are_not_tradable_and_the_rest_are() -> None:
    for listed in CATALOG:
        assert listed.tradable is (listed.kind is not InstrumentKind.INDEX)
    assert instrument("SPX").venue == "NYSE"
    assert instrument("IXIC").venue == "NASDAQ"


def test_catalog_trading_rules() -> None:
    assert instrument("AAPL").tick_size == Decimal("0.01")
    assert instrument("EURUSD").base_currency == "EUR"
    assert instrument("EURUSD").lot_size == Decimal(1000)
    assert instrument("BTC-USD").lot_size == Decimal("0.00001")
    assert instrument("RELIANCE").tick_size == Decimal("0.05")
    assert instrument("RELIANCE").quote_currency == "INR"


def test_unknown_instrument_lists_the_known_symbols() -> None:
    with pytest.raises(KeyError, match="AAPL"):
        instrument("XYZ")


@pytest.mark.parametrize(
    ("symbol", "price", "expected"),
    [
        ("AAPL", "123.455", "123.46"),  # half to even: 12345.5 ticks -> 12346
        ("AAPL", "123.445", "123.44"),
        ("AAPL", "123", "123.00"),
        ("EURUSD", "1.0845649", "1.08456"),
        ("RELIANCE", "2901.33", "2901.35"),
        ("RELIANCE", "2901.32", "2901.30"),
    ],
)
def test_round_price_to_tick(symbol: str, price: str, expected: str) -> None:
    rounded = instrument(symbol).round_price(Decimal(price))
    assert str(rounded) == expected  # value and number of places


def test_round_price_direction() -> None:
    aapl = instrument("AAPL")
    assert aapl.round_price(Decimal("10.001"), ROUND_CEILING) == Decimal("10.01")
    assert aapl.round_price(Decimal("10.009"), ROUND_FLOOR) == Decimal("10.00")


def test_tick_and_lot_checks() -> None:
    reliance = instrument("RELIANCE")
    assert reliance.is_price_on_tick(Decimal("100.05"))
    assert not reliance.is_price_on_tick(Decimal("100.07"))
    btc = instrument("BTC-USD")
    assert btc.is_quantity_on_lot(Decimal("0.12345"))
    assert not btc.is_quantity_on_lot(Decimal("0.123456"))


def _equity(**changes: object) -> Instrument:
    fields: dict[str, object] = {
        "symbol": "ACME",
        "kind": InstrumentKind.EQUITY,
        "venue": "NYSE",
        "name": "Acme Corp",
        "quote_currency": "USD",
        "base_currency": None,
        "tick_size": Decimal("0.01"),
        "lot_size": Decimal(1),
        "tradable": True,
    }
    fields.update(changes)
    return Instrument(**fields)  # type: ignore[arg-type]  # deliberately untyped to feed bad values


def test_valid_instrument_is_accepted() -> None:
    assert _equity().symbol == "ACME"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"symbol": "acme"}, "symbol"),
        ({"symbol": ""}, "symbol"),
        ({"symbol": "A" * 33}, "symbol"),
        ({"symbol": "AC ME"}, "symbol"),
        ({"quote_currency": "USDT"}, "3-letter"),
        ({"quote_currency": "us"}, "quote_currency"),
        ({"base_currency": "USD"}, "must be None"),
        ({"tick_size": Decimal(0)}, "tick_size"),
        ({"tick_size": Decimal(-1)}, "tick_size"),
        ({"tick_size": 0.01}, "tick_size"),
        ({"lot_size": Decimal(0)}, "lot_size"),
        ({"name": " "}, "name"),
        ({"kind": InstrumentKind.INDEX}, "not tradable"),
        ({"kind": InstrumentKind.FX}, "required"),
        ({"kind": InstrumentKind.FX, "base_currency": "USD"}, "both USD"),
        ({"kind": "equity"}, "InstrumentKind"),
    ],
)
def test_invalid_instrument_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _equity(**changes)


def test_crypto_may_quote_in_a_stablecoin() -> None:
    pair = _equity(symbol="BTC-USDT", kind=InstrumentKind.CRYPTO, venue="CRYPTO", quote_currency="USDT", base_currency="BTC")
    assert pair.quote_currency == "USDT"


def test_an_instrument_makes_prices_quantities_and_money() -> None:
    from tradestack.domain.instruments import Money, Price, Quantity

    aapl, btc = instrument("AAPL"), instrument("BTC-USD")
    price = aapl.price("187.25")
    assert isinstance(price, Price)
    assert price == Decimal("187.25")
    assert aapl.price(Decimal("187.257"), rounding=ROUND_FLOOR) == Decimal("187.25")
    with pytest.raises(ValueError, match=r"not a multiple of the tick 0.01; use 187.25 or 187.26"):
        aapl.price("187.255")
    with pytest.raises(ValueError, match="must be positive"):
        aapl.price(0)
    with pytest.raises(ValueError, match="must be finite"):
        aapl.price("NaN")
    with pytest.raises(TypeError, match="float"):
        aapl.price(1.5)  # type: ignore[arg-type]
    quantity = btc.quantity("0.00123")
    assert isinstance(quantity, Quantity)
    with pytest.raises(ValueError, match=r"not a multiple of the lot 0\.00001"):
        btc.quantity("0.000001")
    with pytest.raises(ValueError, match="must be positive"):
        aapl.quantity(-3)
    fee = aapl.money("1.50")
    assert fee == Money(Decimal("1.50"), "USD")
    assert str(fee + aapl.money(2)) == "3.50 USD"
    assert (fee - aapl.money(2)).amount == Decimal("-0.50")
    assert -fee == Money(Decimal("-1.50"), "USD")
    assert fee < aapl.money(2)
    with pytest.raises(ValueError, match="cannot combine USD and AUD"):
        _ = fee + instrument("BHP").money(1)


@settings(max_examples=400, deadline=None)
@given(
    price=st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**9), max_value=10**9, places=7),
    tick=st.sampled_from([Decimal(t) for t in ("0.01", "1", "0.00001", "0.05", "0.010", "1E+1", "5", "0.25", "100")]),
    rounding=st.sampled_from([ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN]),
)
def test_round_to_tick_writes_what_dividing_by_the_tick_gives(price: Decimal, tick: Decimal, rounding: str) -> None:
    """A tick written 1E-n rounds in one step (quantize); every tick must give the result of the general way."""
    places = Decimal(1).scaleb(min(0, tick.as_tuple().exponent))  # type: ignore[operator]
    expected = ((price / tick).to_integral_value(rounding=rounding) * tick).quantize(places)
    rounded = round_to_tick(price, tick, rounding)
    assert (str(rounded), rounded.is_signed()) == (str(expected), expected.is_signed())


def test_round_to_tick_refuses_a_tick_that_is_not_positive() -> None:
    for tick in (Decimal(0), Decimal("-0.01"), Decimal("NaN")):
        with pytest.raises(ValueError, match="tick must be a positive finite Decimal"):
            round_to_tick(Decimal(1), tick)
