"""What the market looks like at one moment, for pricing: marks per symbol and FX rates.

One rule for each, used by the risk checks, the valuation of the books and the engine alike:

* a symbol's **mark** is its last trade price, else the mid of a sane (bid <= ask, both
  positive) quote;
* an FX pair's **rate** is the mid of its quote, else its last price.

`decode_quote` reads one cached quote (the JSON `marketdata` publishes) into a `QuoteView`; an
unreadable or partial quote gives what can be read of it, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal

from tradestack.core.money import UNROUNDED
from tradestack.domain.frozen import fast_init
from tradestack.domain.instruments import Instrument
from tradestack.domain.marketdata import Quote
from tradestack.domain.portfolio import FxRates

MarkSource = Literal["last", "mid"]
FX_PIVOT = "USD"
_TWO = Decimal(2)


@fast_init
@dataclass(frozen=True, slots=True)
class QuoteView:
    """The parts of one quote that price things: bid, ask, last (each positive or None) and when."""

    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    ts: datetime | None = None

    @property
    def mid(self) -> Decimal | None:
        """(bid + ask) / 2 of a sane quote, else None."""
        if self.bid is None or self.ask is None or self.bid > self.ask:
            return None
        # half a sum always terminates: exact in this context (what `divide` returns for a terminating quotient)
        return UNROUNDED.divide(UNROUNDED.add(self.bid, self.ask), _TWO)

    @property
    def mark(self) -> tuple[Decimal, MarkSource] | None:
        """The last price, else the mid; with which one it is."""
        if self.last is not None:
            return self.last, "last"
        mid = self.mid
        return (mid, "mid") if mid is not None else None

    @property
    def rate(self) -> Decimal | None:
        """As an FX rate: the mid, else the last price."""
        mid = self.mid
        return mid if mid is not None else self.last


def _above_zero(value: Decimal) -> Decimal | None:
    return value if value.is_finite() and value > 0 else None


def view_of(quote: Quote) -> QuoteView:
    """A `Quote` as a `QuoteView` (zero or absent prices become None)."""
    return QuoteView(_above_zero(quote.bid), _above_zero(quote.ask), _above_zero(quote.last), quote.ts)


def _positive(data: Mapping[str, object], name: str) -> Decimal | None:
    value = data.get(name)
    if not isinstance(value, str | int | Decimal) or isinstance(value, bool):
        return None
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() and number > 0 else None


def decode_quote(data: object) -> QuoteView | None:
    """A published quote (decoded JSON: decimals as strings, `ts` ISO 8601) as a `QuoteView`; None when not a quote."""
    if not isinstance(data, Mapping):
        return None
    ts: datetime | None = None
    raw_ts = data.get("ts")
    if isinstance(raw_ts, str):
        try:
            parsed = datetime.fromisoformat(raw_ts)
            ts = parsed.astimezone(UTC) if parsed.tzinfo is not None else None
        except ValueError:
            ts = None
    return QuoteView(_positive(data, "bid"), _positive(data, "ask"), _positive(data, "last"), ts)


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """Quotes by symbol and the FX rates their FX pairs give.

    A symbol's mark is worked out once per quote: the risk checks, the open orders' reservations and the
    gross exposure of one order read it several times, and a mid is a division. The memo is keyed by the
    `QuoteView` itself (frozen, so its mark never changes): a quote replaced in `quotes` is marked afresh.
    It takes no part in equality or `repr`.
    """

    quotes: Mapping[str, QuoteView] = field(default_factory=dict)
    rates: FxRates = field(default_factory=lambda: FxRates({}, pivot=FX_PIVOT))
    _marks: dict[str, tuple[QuoteView, tuple[Decimal, MarkSource] | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def mark(self, symbol: str) -> Decimal | None:
        """The mark price of `symbol` (None when it has no usable quote)."""
        known = self._marks.get(symbol)  # `marked`'s memo read here first: the risk path asks twice per order
        marked = known[1] if known is not None and known[0] is self.quotes.get(symbol) else self.marked(symbol)
        return marked[0] if marked is not None else None

    def marked(self, symbol: str) -> tuple[Decimal, MarkSource] | None:
        """The mark price of `symbol` and its source."""
        quote = self.quotes.get(symbol)
        if quote is None:
            return None
        known = self._marks.get(symbol)
        if known is not None and known[0] is quote:
            return known[1]
        marked = quote.mark
        self._marks[symbol] = (quote, marked)
        return marked


def fx_rates_of(instruments: Mapping[str, Instrument], quotes: Mapping[str, QuoteView]) -> FxRates:
    """The rates of every quoted currency pair of the catalogue (FX, crypto; by the rate rule), pivoting through USD."""
    pairs: dict[tuple[str, str], Decimal] = {}
    for symbol, quote in quotes.items():
        instrument = instruments.get(symbol)
        if instrument is None or not instrument.base_currency:
            continue
        rate = quote.rate
        if rate is not None:
            pairs[(instrument.base_currency, instrument.quote_currency)] = rate
    return FxRates(pairs, pivot=FX_PIVOT)


def snapshot_of(instruments: Mapping[str, Instrument], quotes: Mapping[str, QuoteView]) -> MarketSnapshot:
    """The snapshot of `quotes` (by symbol), with the rates of the FX pairs among them."""
    return MarketSnapshot(dict(quotes), fx_rates_of(instruments, quotes))
