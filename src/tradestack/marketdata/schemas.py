"""Wire shapes of market data: API response models and the JSON the feeds publish.

Decimals travel as strings (``"187.25"``) so no client loses a digit; times as ISO 8601 UTC.
Quotes and books are serialised once, when the feed publishes them, and served from the cache
as those bytes.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, Field

from tradestack.core.money import plain
from tradestack.domain.instruments import Instrument
from tradestack.domain.marketdata import Bar, OrderBook, Quote, Trade

# -- Serialisers used on the hot path (no pydantic) ---------------------------------------------


def iso(ts: datetime) -> str:
    """ISO 8601 in UTC with a Z suffix."""
    return ts.isoformat().replace("+00:00", "Z")


def quote_json(quote: Quote) -> dict[str, Any]:
    """A quote as JSON-ready primitives."""
    return {
        "symbol": quote.symbol,
        "bid": plain(quote.bid),
        "ask": plain(quote.ask),
        "bid_size": plain(quote.bid_size),
        "ask_size": plain(quote.ask_size),
        "last": plain(quote.last),
        "last_size": plain(quote.last_size),
        "ts": iso(quote.ts),
        "source_ts": iso(quote.source_ts) if quote.source_ts else None,
    }


def trade_json(trade: Trade) -> dict[str, Any]:
    """A trade as JSON-ready primitives."""
    return {
        "symbol": trade.symbol,
        "price": plain(trade.price),
        "size": plain(trade.size),
        "side": trade.side.value,
        "ts": iso(trade.ts),
    }


def book_json(book: OrderBook) -> dict[str, Any]:
    """A book as JSON-ready primitives: levels are [price, size] string pairs."""
    return {
        "symbol": book.symbol,
        "bids": [[plain(level.price), plain(level.size)] for level in book.bids],
        "asks": [[plain(level.price), plain(level.size)] for level in book.asks],
        "ts": iso(book.ts),
    }


def candle_json(bar: Bar, timeframe: str) -> dict[str, Any]:
    """A candle as JSON-ready primitives."""
    return {
        "symbol": bar.symbol,
        "timeframe": timeframe,
        "ts": iso(bar.ts),
        "open": plain(bar.open),
        "high": plain(bar.high),
        "low": plain(bar.low),
        "close": plain(bar.close),
        "volume": plain(bar.volume),
    }


def frame(kind: str, channel: str, data: dict[str, Any]) -> bytes:
    """One WebSocket message: ``{"type", "channel", "data"}``."""
    return orjson.dumps({"type": kind, "channel": channel, "data": data})


# -- API response models (documentation and validation of the slow paths) ----------------------


class InstrumentOut(BaseModel):
    """An instrument and its trading rules."""

    symbol: str
    kind: str
    venue: str
    name: str
    quote_currency: str
    base_currency: str | None
    tick_size: str = Field(description="Smallest price increment (decimal string).")
    lot_size: str = Field(description="Smallest quantity increment (decimal string).")
    tradable: bool
    timezone: str = Field(description="IANA time zone of the venue's sessions.")
    open_now: bool = Field(description="Whether the venue is in a trading session at the time of the request.")
    next_open: datetime | None = Field(default=None, description="When the next session opens (UTC); null while open.")
    next_close: datetime | None = Field(
        default=None,
        description="When the running session closes (UTC; early on half days); null while closed or where it never closes.",
    )
    calendar_until: date | None = Field(
        default=None,
        description="Last venue-local day the exchange calendar (holidays, early closes) covers; later days follow the "
        "weekday sessions. Null for venues with weekly sessions only (spot FX) or none (crypto).",
    )
    fee_bps: str = Field(default="0", description="Paper fee: basis points of the notional (decimal string).")
    fee_minimum: str = Field(default="0", description="Paper fee: minimum per order, in the quote currency.")

    @classmethod
    def of(
        cls,
        instrument: Instrument,
        *,
        timezone: str,
        open_now: bool,
        next_open: datetime | None = None,
        next_close: datetime | None = None,
        calendar_until: date | None = None,
        fees: tuple[Decimal, Decimal] | None = None,
    ) -> InstrumentOut:
        """Build from the domain object."""
        return cls(
            symbol=instrument.symbol,
            kind=instrument.kind.value,
            venue=instrument.venue,
            name=instrument.name,
            quote_currency=instrument.quote_currency,
            base_currency=instrument.base_currency,
            tick_size=plain(instrument.tick_size),
            lot_size=plain(instrument.lot_size),
            tradable=instrument.tradable,
            timezone=timezone,
            open_now=open_now,
            next_open=next_open,
            next_close=next_close,
            calendar_until=calendar_until,
            fee_bps=plain(fees[0]) if fees else "0",
            fee_minimum=plain(fees[1]) if fees else "0",
        )


class InstrumentList(BaseModel):
    """Every instrument."""

    instruments: list[InstrumentOut]


class QuoteOut(BaseModel):
    """Top of book and last trade of one symbol."""

    symbol: str
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal
    last: Decimal
    last_size: Decimal
    ts: datetime = Field(description="When the quote was published (UTC).")
    source_ts: datetime | None = Field(description="For replayed data: the historical time being replayed.")


class QuoteList(BaseModel):
    """Latest quotes; symbols with no current quote are listed in `unavailable`."""

    quotes: list[QuoteOut]
    unavailable: list[str]


class CandleOut(BaseModel):
    """One OHLCV candle; `ts` is the start of its interval (UTC)."""

    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class CandleList(BaseModel):
    """Candles of one symbol and timeframe, oldest first."""

    symbol: str
    timeframe: str
    source_resolution: str = Field(description="Resolution of the stored bars the candles were built from.")
    candles: list[CandleOut]


# One level of a book, [price, size]: a list of two (a tuple would publish prefixItems).
PriceLevel = Annotated[list[Decimal], Field(min_length=2, max_length=2, description="[price, size] as decimal strings")]


class OrderBookOut(BaseModel):
    """An L2 book: levels are [price, size] pairs, best first."""

    symbol: str
    bids: list[PriceLevel]
    asks: list[PriceLevel]
    ts: datetime


class SeriesOut(BaseModel):
    """One stored series."""

    symbol: str
    resolution: str
    bars: int
    first: datetime
    last: datetime


class SeriesList(BaseModel):
    """Every stored series."""

    series: list[SeriesOut]
