"""Instruments and stored price history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from tradestack.core import precision
from tradestack.kit.types import ExactDecimal
from tradestack.models.base import Base, UTCDateTime

PRICE = ExactDecimal.of(precision.PRICE)
VOLUME = ExactDecimal.of(precision.VOLUME)


class InstrumentRow(Base):
    """A tradable (or reference) instrument and the precision its prices and quantities use."""

    __tablename__ = "instruments"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True, doc='Our symbol, e.g. "AAPL", "EURUSD".')
    kind: Mapped[str] = mapped_column(String(16), doc="equity, fx, crypto or index.")
    venue: Mapped[str] = mapped_column(String(16), doc="Venue code whose calendar applies, e.g. NASDAQ, FX, CRYPTO.")
    name: Mapped[str] = mapped_column(String(128))
    quote_currency: Mapped[str] = mapped_column(String(8), doc="Currency prices are quoted in.")
    base_currency: Mapped[str | None] = mapped_column(String(8), doc="For FX and crypto pairs: what is bought.")
    tick_size: Mapped[Decimal] = mapped_column(PRICE, doc="Smallest price increment.")
    lot_size: Mapped[Decimal] = mapped_column(PRICE, doc="Smallest quantity increment.")
    tradable: Mapped[bool] = mapped_column(Boolean(), doc="False for reference series such as indices.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BarRow(Base):
    """One OHLCV bar at its native resolution.

    The primary key (symbol, resolution, ts) is also the index behind "last N bars of a symbol"
    (a backward scan) and "a symbol's bars in a range". On PostgreSQL the table is partitioned by
    range of ``ts`` (one partition per decade, see migration 0004), or is a TimescaleDB hypertable
    when that extension is installed.
    """

    __tablename__ = "bars"

    symbol: Mapped[str] = mapped_column(String(32), ForeignKey("instruments.symbol"), primary_key=True)
    resolution: Mapped[str] = mapped_column(String(4), primary_key=True, doc="1m, 5m, 15m, 1h or 1d.")
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True, doc="Start of the bar's interval (UTC).")
    open: Mapped[Decimal] = mapped_column(PRICE)
    high: Mapped[Decimal] = mapped_column(PRICE)
    low: Mapped[Decimal] = mapped_column(PRICE)
    close: Mapped[Decimal] = mapped_column(PRICE)
    volume: Mapped[Decimal] = mapped_column(VOLUME)
    source: Mapped[str] = mapped_column(String(64), doc='Where the bar came from, e.g. "us-equities-daily" or a file name.')


class BarVersionRow(Base):
    """The version of one stored series (symbol, resolution), changed in the transaction of every write to its bars.

    Kept by `tradestack.marketdata.repository.BarRepository`, the one writer of `bars`: ``version``
    changes with every write that may change the series; ``closed_version`` only with a write that
    may change bars already followed by a stored bar (an insert before the newest bar, a
    replacement, a deletion), not with an append after the newest. A candle built from the bars
    before the newest bar's candle therefore stays right while ``closed_version`` is unchanged
    (`tradestack.marketdata.recent.CandleCache`). The values are random tokens, not counters, so
    a restored backup or a copied database never shows a value a cache saw with other bars.
    """

    __tablename__ = "bar_versions"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    resolution: Mapped[str] = mapped_column(String(4), primary_key=True, doc="1m, 5m, 15m, 1h or 1d.")
    version: Mapped[int] = mapped_column(BigInteger(), doc="Changed by every write to the series' bars.")
    closed_version: Mapped[int] = mapped_column(
        BigInteger(), doc="Changed by a write that may change bars followed by a stored bar (not by an append)."
    )
