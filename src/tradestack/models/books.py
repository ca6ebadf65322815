"""An account's books: trading accounts, fills, the double-entry journal and running balances (owned by `books`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tradestack.core import precision
from tradestack.kit.types import ExactDecimal
from tradestack.models.base import Base, UTCDateTime

AMOUNT = ExactDecimal.of(precision.AMOUNT)
PRICE = ExactDecimal.of(precision.PRICE)


class TradingAccount(Base):
    """A book of cash and positions in one base currency, owned by one user."""

    __tablename__ = "trading_accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    base_currency: Mapped[str] = mapped_column(String(3), doc="ISO 4217 code the account is valued in, e.g. AUD.")
    kind: Mapped[str] = mapped_column(String(8), doc="paper or live.")
    allow_short: Mapped[bool] = mapped_column(Boolean, default=False)
    fx_policy: Mapped[str] = mapped_column(
        String(16),
        default="auto_convert",
        server_default="auto_convert",
        doc="auto_convert: a purchase in another currency converts the base currency it needs at fill time; "
        "multi_currency: balances in other currencies may go negative (margin), valued in the base currency.",
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="When the account was opened (UTC).")
    books_version: Mapped[int] = mapped_column(
        BigInteger,
        default=0,
        server_default="0",
        doc="Bumped by every transaction that locks the account's books to write them (`BooksService.lock`): an "
        "order desk keeps the account's risk state while this is the number it last wrote.",
    )
    desk_version: Mapped[int] = mapped_column(
        BigInteger,
        default=0,
        server_default="0",
        doc="Bumped, with books_version, only by the order desks' lock (`BooksService.lock_many`): when both grew "
        "alike since a desk last wrote, only order desks (which add orders) wrote the account's books since.",
    )


class FillRow(Base):
    """One execution. `id` is the engine's deterministic fill id: a fill can never be applied twice."""

    __tablename__ = "fills"
    __table_args__ = (Index("ix_fills_account_id_ts", "account_id", "ts"),)

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="RESTRICT"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="RESTRICT"))
    symbol: Mapped[str] = mapped_column(ForeignKey("instruments.symbol"))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Decimal] = mapped_column(AMOUNT)
    price: Mapped[Decimal] = mapped_column(PRICE)
    fee: Mapped[Decimal] = mapped_column(AMOUNT)
    fee_currency: Mapped[str] = mapped_column(String(8))
    liquidity: Mapped[str] = mapped_column(String(5), doc="maker or taker.")
    ts: Mapped[datetime] = mapped_column(UTCDateTime())


class JournalEntryRow(Base):
    """One balanced journal entry. Corrections are new entries that reverse old ones; rows are never edited."""

    __tablename__ = "journal_entries"
    __table_args__ = (Index("ix_journal_entries_account_id_ts", "account_id", "ts"),)

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="RESTRICT"))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16), doc="deposit, fill, fee, reversal or fx.")
    reference: Mapped[str | None] = mapped_column(String(80), doc="What caused it, e.g. a fill id.")
    reverses: Mapped[str | None] = mapped_column(ForeignKey("journal_entries.id"), unique=True)


class PostingRow(Base):
    """One leg of a journal entry. Per entry and currency the amounts sum to zero: checked in the domain,
    and on PostgreSQL by a deferred constraint trigger at commit (migration 0005)."""

    __tablename__ = "postings"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(ForeignKey("journal_entries.id", ondelete="RESTRICT"), index=True)
    account: Mapped[str] = mapped_column(String(64), doc='Ledger account, e.g. "cash:USD", "position:AAPL".')
    currency: Mapped[str] = mapped_column(String(8))
    amount: Mapped[Decimal] = mapped_column(AMOUNT, doc="Debit positive, credit negative.")
    quantity: Mapped[Decimal | None] = mapped_column(AMOUNT, doc="Units, for position accounts.")


class BalanceRow(Base):
    """Running balance of one ledger account of one trading account: the fold of its postings.

    Written in the same transaction as the postings it sums (and checked against them by
    `tradestack check integrity`), so cash and positions are read without summing the journal.
    """

    __tablename__ = "balances"

    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="RESTRICT"), primary_key=True)
    ledger_account: Mapped[str] = mapped_column(String(64), primary_key=True, doc='e.g. "cash:USD", "position:AAPL".')
    currency: Mapped[str] = mapped_column(String(8))
    amount: Mapped[Decimal] = mapped_column(AMOUNT, doc="Sum of the postings' amounts (debit positive).")
    quantity: Mapped[Decimal | None] = mapped_column(AMOUNT, doc="Sum of units, for position accounts.")


class EquityPointRow(Base):
    """An account's equity at one moment, in its base currency, as the portfolio page valued it then.

    Written by the equity recorder (`books.service.record_equity`) from when recording started: no
    point is invented for earlier times. One point per account and instant (a second recorder's
    point for the same instant is dropped).
    """

    __tablename__ = "equity_points"

    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="RESTRICT"), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True, doc="When the books were valued (UTC).")
    currency: Mapped[str] = mapped_column(String(3), doc="The account's base currency, e.g. AUD.")
    equity: Mapped[Decimal] = mapped_column(
        AMOUNT, doc="Cash plus positions at their marks, in the base currency, rounded to its minor unit."
    )
