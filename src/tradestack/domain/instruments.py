"""Instruments, the venues they trade on, and the venues' trading calendars.

A `Venue` knows its sessions and answers whether it is open at a UTC instant and when it next
opens or closes. Its exact calendar is a `SessionTable`: the open and close instant of every session
over a range of years, holidays and early closes (half days) included, computed from an exchange
calendar library outside the domain (`tradestack.marketdata.calendars`) and handed in as plain
instants. Outside the table's range (or for a venue without one, such as spot FX) the weekly
`sessions` in venue-local time apply, minus any `holidays`. An `Instrument` carries its trading
rules (tick and lot size) and rounds prices to its tick. `CATALOG` is the built-in universe.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tradestack.core.money import decimal_places

# How far ahead `next_open` / `next_close` look before concluding a venue never opens (or closes).
_SEARCH_DAYS = 400
# Upper bound on how long a session lasts: at most one day, wrapping sessions end the next day.
_LONGEST_SESSION_DAYS = 1


class InstrumentKind(StrEnum):
    """What an instrument is; decides which fields it needs."""

    EQUITY = "equity"
    FX = "fx"
    CRYPTO = "crypto"
    INDEX = "index"


@dataclass(frozen=True, slots=True)
class Session:
    """A daily trading session in venue-local time.

    The session starts on each day in `weekdays` (Monday = 0) at `open`. When `close` is later than
    `open` it ends the same day; when `close` is earlier than or equal to `open` it wraps past
    midnight and ends the next day at `close` (equal times mean a full 24 hours). A wrapping
    session belongs to the day it starts on: holidays are checked against that day.
    """

    weekdays: frozenset[int]
    open: time
    close: time

    def __post_init__(self) -> None:
        if not self.weekdays:
            raise ValueError("a session needs at least one weekday")
        if any(not isinstance(day, int) or not 0 <= day <= 6 for day in self.weekdays):
            raise ValueError(f"session weekdays must be integers 0 (Monday) to 6 (Sunday), got {sorted(self.weekdays)}")
        if self.open.tzinfo is not None or self.close.tzinfo is not None:
            raise ValueError("session times are venue-local wall-clock times and must not carry a tzinfo")

    @property
    def wraps(self) -> bool:
        """True when the session ends on the day after it starts."""
        return self.close <= self.open


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"need a timezone-aware datetime (UTC), got naive {at!r}")


@dataclass(frozen=True, slots=True)
class SessionTable:
    """Every session of a venue from `start` to `end` (UTC): `opens[i]` to `closes[i]`, in time order.

    A day without a session (holiday, weekend) simply has no entry; an early close is a shorter
    one; a special session (NSE's Muhurat trading on Diwali) is an entry at its own hours. `source`
    names where the table came from (library and version). Between `start` and `end` the table is
    the whole truth: no session outside it.
    """

    opens: tuple[datetime, ...]
    closes: tuple[datetime, ...]
    start: datetime
    end: datetime
    source: str

    def __post_init__(self) -> None:
        for at in (self.start, self.end, *self.opens[:1], *self.closes[-1:]):
            _require_aware(at)
        if len(self.opens) != len(self.closes):
            raise ValueError(f"session table: {len(self.opens)} opens but {len(self.closes)} closes")
        if self.end <= self.start:
            raise ValueError("session table: end must be after start")
        previous_close = self.start
        for open_, close in zip(self.opens, self.closes, strict=True):
            if not previous_close <= open_ < close:
                raise ValueError(f"session table: sessions must be in order and not overlap (at {open_.isoformat()})")
            previous_close = close
        if previous_close > self.end:
            raise ValueError("session table: the last session ends after the table's end")

    @classmethod
    def of(cls, sessions: Sequence[tuple[datetime, datetime]], start: datetime, end: datetime, source: str) -> SessionTable:
        """A table from (open, close) pairs, converted to UTC."""
        return cls(
            opens=tuple(o.astimezone(UTC) for o, _ in sessions),
            closes=tuple(c.astimezone(UTC) for _, c in sessions),
            start=start.astimezone(UTC),
            end=end.astimezone(UTC),
            source=source,
        )

    def covers(self, at_utc: datetime) -> bool:
        """Whether `at_utc` falls in the table's range."""
        return self.start <= at_utc < self.end

    def sessions_from(self, at_utc: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The sessions that end after `at_utc`, in time order."""
        first = bisect.bisect_right(self.closes, at_utc)
        yield from zip(self.opens[first:], self.closes[first:], strict=True)


@dataclass(frozen=True, slots=True)
class Venue:
    """A trading venue and its calendar.

    `sessions` are in the IANA `timezone`; `holidays` are venue-local dates on which no session
    starts. `schedule`, when given, is the exact calendar over its range and wins there; the weekly
    sessions and holidays apply outside it. An `always_open` venue (crypto) trades 24/7 and ignores
    all of them.
    """

    code: str
    name: str
    timezone: str
    sessions: tuple[Session, ...]
    holidays: frozenset[date] = frozenset()
    always_open: bool = False
    schedule: SessionTable | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z0-9_]{1,16}", self.code):
            raise ValueError(f"venue code must be 1-16 characters of A-Z, 0-9 and _, got {self.code!r}")
        if not self.name.strip():
            raise ValueError(f"venue {self.code}: name must not be empty")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"venue {self.code}: unknown IANA time zone {self.timezone!r}") from exc
        if not self.always_open and not self.sessions:
            raise ValueError(f"venue {self.code}: needs at least one session unless always_open")

    @property
    def zone(self) -> ZoneInfo:
        """The venue's time zone."""
        return ZoneInfo(self.timezone)

    def is_open(self, at: datetime) -> bool:
        """Whether a session is running at `at` (timezone-aware; naive raises ValueError).

        Sessions include their opening instant and exclude their closing instant.
        """
        _require_aware(at)
        if self.always_open:
            return True
        at_utc = at.astimezone(UTC)
        local_day = at_utc.astimezone(self.zone).date()
        for start, end in self._intervals(local_day - timedelta(days=_LONGEST_SESSION_DAYS)):
            if start > at_utc:
                return False
            if at_utc < end:
                return True
        return False  # pragma: no cover - _intervals is unbounded for a venue with sessions

    def next_open(self, at: datetime) -> datetime:
        """The first instant at or after `at` when the venue is open, in UTC.

        Returns `at` itself (in UTC) when the venue is open at `at`.
        """
        _require_aware(at)
        at_utc = at.astimezone(UTC)
        if self.always_open:
            return at_utc
        for start, end in self._merged(at_utc):
            if end > at_utc:
                return max(start, at_utc)
        raise ValueError(f"venue {self.code}: no session within {_SEARCH_DAYS} days of {at_utc.isoformat()}")

    def next_close(self, at: datetime) -> datetime:
        """When the session running at `at` ends, or else the end of the next session, in UTC.

        Back-to-back sessions (FX's Sunday-to-Friday week) count as one; an `always_open` venue never
        closes and raises ValueError.
        """
        _require_aware(at)
        at_utc = at.astimezone(UTC)
        if self.always_open:
            raise ValueError(f"venue {self.code} is always open and never closes")
        for _, end in self._merged(at_utc):
            if end > at_utc:
                return end
        raise ValueError(f"venue {self.code}: no session within {_SEARCH_DAYS} days of {at_utc.isoformat()}")

    def _intervals(self, first_day: date) -> Iterator[tuple[datetime, datetime]]:
        """UTC (open, close) of every session starting on or after `first_day`, in time order.

        From the schedule over its range, from the weekly sessions before and after it.
        """
        table = self.schedule
        if table is None:
            yield from self._weekly(first_day)
            return
        from_utc = datetime.combine(first_day, time(0), tzinfo=self.zone).astimezone(UTC)
        if from_utc < table.start:
            for start, end in self._weekly(first_day):
                if end > table.start:
                    break
                yield start, end
        yield from table.sessions_from(from_utc)
        after = max(first_day, table.end.astimezone(self.zone).date())
        for start, end in self._weekly(after):
            if start >= table.end:
                yield start, end

    def _weekly(self, first_day: date) -> Iterator[tuple[datetime, datetime]]:
        """The weekly sessions minus holidays, starting on or after `first_day`."""
        zone = self.zone
        for offset in range(_SEARCH_DAYS + 2 * _LONGEST_SESSION_DAYS):
            day = first_day + timedelta(days=offset)
            if day in self.holidays:
                continue
            todays: list[tuple[datetime, datetime]] = []
            for session in self.sessions:
                if day.weekday() not in session.weekdays:
                    continue
                end_day = day + timedelta(days=1) if session.wraps else day
                start = datetime.combine(day, session.open, tzinfo=zone).astimezone(UTC)
                end = datetime.combine(end_day, session.close, tzinfo=zone).astimezone(UTC)
                todays.append((start, end))
            yield from sorted(todays)

    def _merged(self, at_utc: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Sessions around and after `at_utc`, with touching or overlapping ones joined."""
        local_day = at_utc.astimezone(self.zone).date()
        current: tuple[datetime, datetime] | None = None
        for start, end in self._intervals(local_day - timedelta(days=_LONGEST_SESSION_DAYS)):
            if current is not None and start <= current[1]:
                current = (current[0], max(current[1], end))
                continue
            if current is not None:
                yield current
            current = (start, end)
        if current is not None:
            yield current


_WEEKDAYS = frozenset(range(5))

# The weekly sessions below are the fallback outside a venue's `SessionTable`: holidays, early
# closes and special sessions come from the exchange calendar library, through
# `tradestack.marketdata.calendars.trading_hours` (the one rule for order checks, engine and feeds).
NASDAQ = Venue(
    code="NASDAQ",
    name="Nasdaq Stock Market",
    timezone="America/New_York",
    sessions=(Session(_WEEKDAYS, time(9, 30), time(16, 0)),),
)
NYSE = Venue(
    code="NYSE",
    name="New York Stock Exchange",
    timezone="America/New_York",
    sessions=(Session(_WEEKDAYS, time(9, 30), time(16, 0)),),
)
ASX = Venue(
    code="ASX",
    name="Australian Securities Exchange",
    timezone="Australia/Sydney",
    sessions=(Session(_WEEKDAYS, time(10, 0), time(16, 0)),),
)
NSE = Venue(
    code="NSE",
    name="National Stock Exchange of India",
    timezone="Asia/Kolkata",
    sessions=(Session(_WEEKDAYS, time(9, 15), time(15, 30)),),
)
# Spot FX trades continuously from Sunday 17:00 to Friday 17:00 New York time: one 24-hour session
# starting at 17:00 each Sunday to Thursday, which `next_close` joins into one week-long session.
FX = Venue(
    code="FX",
    name="Spot FX (over the counter)",
    timezone="America/New_York",
    sessions=(Session(frozenset({6, 0, 1, 2, 3}), time(17, 0), time(17, 0)),),
)
CRYPTO = Venue(code="CRYPTO", name="Crypto exchanges (24/7)", timezone="UTC", sessions=(), always_open=True)

VENUES: dict[str, Venue] = {v.code: v for v in (NASDAQ, NYSE, ASX, NSE, FX, CRYPTO)}


def venue(code: str) -> Venue:
    """The built-in venue `code`; KeyError listing the known codes otherwise."""
    try:
        return VENUES[code]
    except KeyError:
        raise KeyError(f"unknown venue {code!r}; known venues: {', '.join(sorted(VENUES))}") from None


_SYMBOL = re.compile(r"[A-Z0-9._/-]{1,32}")
_ISO_CURRENCY = re.compile(r"[A-Z]{3}")
_CRYPTO_QUOTE = re.compile(r"[A-Z]{3,5}")
_CRYPTO_ASSET = re.compile(r"[A-Z0-9]{2,10}")


def _positive_decimal(symbol: str, field: str, value: object) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise ValueError(f"{symbol}: {field} must be a positive finite Decimal, got {value!r}")


@dataclass(frozen=True, slots=True)
class Instrument:
    """A listed instrument and its trading rules.

    `quote_currency` is what prices are in (ISO 4217; crypto also allows 4-5 letter codes such as
    USDT). `base_currency` is what is bought and sold for fx and crypto and None for equities and
    indices. Prices move in multiples of `tick_size` and quantities in multiples of `lot_size`.
    Indices are computed, not traded: `tradable` must be False for them.
    """

    symbol: str
    kind: InstrumentKind
    venue: str
    name: str
    quote_currency: str
    base_currency: str | None
    tick_size: Decimal
    lot_size: Decimal
    tradable: bool = True

    def __post_init__(self) -> None:
        symbol = self.symbol
        if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
            raise ValueError(f"symbol must be 1-32 characters of A-Z, 0-9 and . - _ /, got {symbol!r}")
        if not isinstance(self.kind, InstrumentKind):
            raise ValueError(f"{symbol}: kind must be an InstrumentKind, got {self.kind!r}")
        if not re.fullmatch(r"[A-Z0-9_]{1,16}", self.venue):
            raise ValueError(f"{symbol}: venue must be a venue code such as 'NASDAQ', got {self.venue!r}")
        if not self.name.strip():
            raise ValueError(f"{symbol}: name must not be empty")
        crypto = self.kind is InstrumentKind.CRYPTO
        quote_pattern = _CRYPTO_QUOTE if crypto else _ISO_CURRENCY
        if not quote_pattern.fullmatch(self.quote_currency):
            expected = "3-5 uppercase letters" if crypto else "a 3-letter ISO currency code"
            raise ValueError(f"{symbol}: quote_currency must be {expected}, got {self.quote_currency!r}")
        self._check_base(symbol)
        _positive_decimal(symbol, "tick_size", self.tick_size)
        _positive_decimal(symbol, "lot_size", self.lot_size)
        if self.kind is InstrumentKind.INDEX and self.tradable:
            raise ValueError(f"{symbol}: an index is not tradable; set tradable=False")

    def _check_base(self, symbol: str) -> None:
        base = self.base_currency
        if self.kind in (InstrumentKind.EQUITY, InstrumentKind.INDEX):
            if base is not None:
                raise ValueError(f"{symbol}: base_currency must be None for {self.kind.value}, got {base!r}")
            return
        if base is None:
            raise ValueError(f"{symbol}: base_currency is required for {self.kind.value}")
        pattern = _CRYPTO_ASSET if self.kind is InstrumentKind.CRYPTO else _ISO_CURRENCY
        if not pattern.fullmatch(base):
            raise ValueError(f"{symbol}: base_currency {base!r} is not a valid {self.kind.value} currency code")
        if base == self.quote_currency:
            raise ValueError(f"{symbol}: base_currency and quote_currency are both {base}")

    @property
    def currency_pair(self) -> tuple[str, str] | None:
        """(base, quote) for a currency pair (fx), whose trades are conversions of cash, not positions; else None."""
        if self.kind is InstrumentKind.FX and self.base_currency is not None:
            return self.base_currency, self.quote_currency
        return None

    def round_price(self, price: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
        """`price` rounded to a multiple of the tick, written with the tick's decimal places.

        `rounding` is a `decimal` rounding mode (ROUND_FLOOR for a bid, ROUND_CEILING for an ask).
        """
        return round_to_tick(price, self.tick_size, rounding)

    def is_price_on_tick(self, price: Decimal) -> bool:
        """Whether `price` is a whole multiple of the tick size."""
        return price % self.tick_size == 0

    def is_quantity_on_lot(self, quantity: Decimal) -> bool:
        """Whether `quantity` is a whole multiple of the lot size."""
        return quantity % self.lot_size == 0

    def price(self, value: Decimal | str | int, rounding: str | None = None) -> Price:
        """`value` as a `Price` of this instrument: positive and on the tick.

        Off the tick it is refused (ValueError naming the nearest valid prices) unless a `decimal`
        `rounding` mode is given, which rounds it to the tick instead.
        """
        number = _finite(self.symbol, "price", value)
        if rounding is not None:
            number = self.round_price(number, rounding)
        if number <= 0:
            raise ValueError(f"{self.symbol}: price must be positive, got {number}")
        if not self.is_price_on_tick(number):
            below, above = floor_to_tick(number, self.tick_size), ceil_to_tick(number, self.tick_size)
            raise ValueError(
                f"{self.symbol}: price {number} is not a multiple of the tick {self.tick_size}; use {below} or {above}"
            )
        return Price(number)

    def quantity(self, value: Decimal | str | int) -> Quantity:
        """`value` as a `Quantity` of this instrument: positive and a whole number of lots."""
        number = _finite(self.symbol, "quantity", value)
        if number <= 0:
            raise ValueError(f"{self.symbol}: quantity must be positive, got {number}")
        if not self.is_quantity_on_lot(number):
            raise ValueError(f"{self.symbol}: quantity {number} is not a multiple of the lot {self.lot_size}")
        return Quantity(number)

    def money(self, amount: Decimal | str | int) -> Money:
        """`amount` in this instrument's quote currency."""
        return Money(_finite(self.symbol, "amount", amount), self.quote_currency)


class Price(Decimal):
    """A Decimal that an `Instrument` has checked is a valid price for it (see `Instrument.price`).

    Arithmetic on it gives plain Decimals: a computed value is a price again only once checked.
    """

    __slots__ = ()


class Quantity(Decimal):
    """A Decimal that an `Instrument` has checked is a whole, positive number of its lots (`Instrument.quantity`)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount of one currency. Adding or comparing amounts of two currencies is refused."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite():
            raise ValueError(f"money amount must be a finite Decimal, got {self.amount!r}")
        if not isinstance(self.currency, str) or not _CRYPTO_QUOTE.fullmatch(self.currency):
            raise ValueError(f"currency must be 3-5 uppercase letters such as USD, got {self.currency!r}")

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} and {other.currency}; convert one first")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def _finite(symbol: str, what: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise TypeError(f"{symbol}: {what} must be a Decimal, a decimal string or an int, got {type(value).__name__} {value!r}")
    try:
        number = Decimal(value)
    except ArithmeticError:
        raise ValueError(f"{symbol}: {what} {value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{symbol}: {what} must be finite, got {value!r}")
    return number


def round_to_tick(price: Decimal, tick: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """`price` rounded to a multiple of `tick` with `rounding`, written with the tick's decimal places."""
    known = _TICKS.get(id(tick))
    if known is None or known[0] is not tick:
        known = _tick_facts(tick)
    if known[2]:  # the tick is 1E-n as written: rounding to it is rounding to its places, one operation
        try:
            return price.quantize(tick, rounding=rounding)
        except InvalidOperation:
            pass  # more digits than the context holds (or not a number): the general way says what happens
    ticks = (price / tick).to_integral_value(rounding=rounding)
    return (ticks * tick).quantize(known[1])


_TICKS: dict[int, tuple[Decimal, Decimal, bool]] = {}
"""`_tick_facts` by the id of the tick (ticks are long-lived instrument constants); the tick is kept with them."""


def _tick_facts(tick: Decimal) -> tuple[Decimal, Decimal, bool]:
    """`tick` (checked positive and finite), 1 written with its decimal places (``0.01`` for ``0.01``, ``1`` for
    ``5``), and whether it is that very number, as it is for ``0.01`` or ``1`` (not ``0.05``, ``0.010``, ``1E+1``)."""
    if not tick.is_finite() or tick <= 0:
        raise ValueError(f"tick must be a positive finite Decimal, got {tick!r}")
    places = Decimal(1).scaleb(-decimal_places(tick))
    facts = (tick, places, tick == places)
    if len(_TICKS) >= 256:
        _TICKS.clear()
    _TICKS[id(tick)] = facts
    return facts


def floor_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    """The largest multiple of `tick` at or below `price`."""
    return round_to_tick(price, tick, ROUND_FLOOR)


def ceil_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    """The smallest multiple of `tick` at or above `price`."""
    return round_to_tick(price, tick, ROUND_CEILING)


def _equity(symbol: str, name: str, venue_code: str, currency: str, tick: str) -> Instrument:
    return Instrument(symbol, InstrumentKind.EQUITY, venue_code, name, currency, None, Decimal(tick), Decimal(1))


def _index(symbol: str, name: str, venue_code: str) -> Instrument:
    return Instrument(symbol, InstrumentKind.INDEX, venue_code, name, "USD", None, Decimal("0.01"), Decimal(1), tradable=False)


def _pair(symbol: str, kind: InstrumentKind, name: str, base: str, quote: str, tick: str, lot: str) -> Instrument:
    venue_code = "FX" if kind is InstrumentKind.FX else "CRYPTO"
    return Instrument(symbol, kind, venue_code, name, quote, base, Decimal(tick), Decimal(lot))


CATALOG: tuple[Instrument, ...] = (
    _equity("AAPL", "Apple Inc.", "NASDAQ", "USD", "0.01"),
    _equity("MSFT", "Microsoft Corporation", "NASDAQ", "USD", "0.01"),
    _equity("GOOG", "Alphabet Inc. Class C", "NASDAQ", "USD", "0.01"),
    _equity("NVDA", "NVIDIA Corporation", "NASDAQ", "USD", "0.01"),
    _equity("NFLX", "Netflix, Inc.", "NASDAQ", "USD", "0.01"),
    _equity("AMZN", "Amazon.com, Inc.", "NASDAQ", "USD", "0.01"),
    _equity("TSLA", "Tesla, Inc.", "NASDAQ", "USD", "0.01"),
    # Historical ticker: Meta Platforms traded as FB until June 2022; kept for old data sets.
    _equity("FB", "Facebook, Inc. (now Meta Platforms)", "NASDAQ", "USD", "0.01"),
    _equity("IBM", "International Business Machines Corporation", "NYSE", "USD", "0.01"),
    # Indices follow the calendar of the exchange they are associated with.
    _index("SPX", "S&P 500 Index", "NYSE"),
    _index("IXIC", "Nasdaq Composite Index", "NASDAQ"),
    _pair("EURUSD", InstrumentKind.FX, "Euro / US Dollar", "EUR", "USD", "0.00001", "1000"),
    _pair("AUDUSD", InstrumentKind.FX, "Australian Dollar / US Dollar", "AUD", "USD", "0.00001", "1000"),
    # Values the NSE stocks (INR) in any other currency, through the USD pivot.
    _pair("USDINR", InstrumentKind.FX, "US Dollar / Indian Rupee", "USD", "INR", "0.0001", "1000"),
    _pair("BTC-USD", InstrumentKind.CRYPTO, "Bitcoin / US Dollar", "BTC", "USD", "0.01", "0.00001"),
    _pair("ETH-USD", InstrumentKind.CRYPTO, "Ether / US Dollar", "ETH", "USD", "0.01", "0.0001"),
    # ASX ticks depend on the price band: 0.1 cent up to 10 cents, 0.5 cent up to 2 AUD, 1 cent
    # above. BHP and CBA trade far above 2 AUD, so one fixed tick of 0.01 AUD is used.
    _equity("BHP", "BHP Group Limited", "ASX", "AUD", "0.01"),
    _equity("CBA", "Commonwealth Bank of Australia", "ASX", "AUD", "0.01"),
    _equity("RELIANCE", "Reliance Industries Limited", "NSE", "INR", "0.05"),
    _equity("INFY", "Infosys Limited", "NSE", "INR", "0.05"),
)

_BY_SYMBOL: dict[str, Instrument] = {i.symbol: i for i in CATALOG}


def instrument(symbol: str) -> Instrument:
    """The built-in instrument `symbol`; KeyError listing the known symbols otherwise."""
    try:
        return _BY_SYMBOL[symbol]
    except KeyError:
        raise KeyError(f"unknown instrument {symbol!r}; known symbols: {', '.join(sorted(_BY_SYMBOL))}") from None
