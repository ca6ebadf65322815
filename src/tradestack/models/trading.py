"""Orders (a projection of their append-only events), risk limits and trading states."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradestack.core import precision
from tradestack.domain.order_kinds import WORKING_STATUSES, OrderStatus
from tradestack.kit.types import ExactDecimal
from tradestack.models.base import Base, UTCDateTime

AMOUNT = ExactDecimal.of(precision.AMOUNT)
PRICE = ExactDecimal.of(precision.PRICE)


class OrderRow(Base):
    """The current state of an order: always the fold of its rows in `order_events`, written in the same transaction."""

    __tablename__ = "orders"
    # The single-column indexes on `symbol` and `created_at` (below) look unused beside these, every read filtering by
    # account first, but they serve the order page of a user with several accounts (`TradingRepository.page`:
    # account_id IN (...), newest first, a LIMIT): a backward scan of created_at, or the symbol's rows, instead of every
    # order of those accounts sorted. Measured (PostgreSQL 15, 300,000 orders over 3 accounts, page of 50): 0.09 ms with
    # them, 54 ms without; filtered by a symbol, 0.13 ms with, 32 ms without. Dropping both saved ~2 µs an order insert.
    __table_args__ = (
        UniqueConstraint("account_id", "client_order_id"),
        Index("ix_orders_account_id_status", "account_id", "status"),
        Index("ix_orders_account_id_created_at", "account_id", "created_at"),
        Index("ix_orders_account_id_desk_version", "account_id", "desk_version"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="RESTRICT"))
    client_order_id: Mapped[str] = mapped_column(String(64), doc="The caller's idempotency key, unique per account.")
    fingerprint: Mapped[str] = mapped_column(Text(), doc="Canonical content of the request: same id + other content is a 409.")
    symbol: Mapped[str] = mapped_column(ForeignKey("instruments.symbol"), index=True)
    side: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(10))
    time_in_force: Mapped[str] = mapped_column(String(3))
    quantity: Mapped[Decimal] = mapped_column(AMOUNT)
    limit_price: Mapped[Decimal | None] = mapped_column(PRICE)
    stop_price: Mapped[Decimal | None] = mapped_column(PRICE)
    status: Mapped[str] = mapped_column(String(16))
    filled_quantity: Mapped[Decimal] = mapped_column(AMOUNT)
    average_fill_price: Mapped[Decimal | None] = mapped_column(AMOUNT)
    reason: Mapped[str | None] = mapped_column(Text())
    version: Mapped[int] = mapped_column(Integer(), doc="Number of events applied; the next event's sequence number.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    desk_version: Mapped[int | None] = mapped_column(
        BigInteger(),
        doc="The account's desk version its order desk's lock left when the desk wrote the order (NULL: written otherwise, "
        "or by a release before it): what another desk reads the orders added since the version it knows by.",
    )


def _orders_in(statuses: tuple[str, ...], name: str, *columns: Any) -> Index:
    """A partial index of the orders in `statuses`, on both dialects: it holds only those rows, and serves a query
    whose WHERE names the statuses as `OrderRow.status.in_(statuses)` does."""
    where = OrderRow.status.in_(statuses)
    return Index(name, *columns, postgresql_where=where, sqlite_where=where)


WORKING_STATUS_VALUES = tuple(sorted(status.value for status in WORKING_STATUSES))
"""The working statuses as stored, in one order: a query must name them exactly so (`OrderRow.status.in_` of this) for
the planner to use `ix_orders_working` (SQLite proves an IN list implies the index's only when the lists are the same)."""

# The working orders alone, across accounts: what each engine shard's reconciliation reads every
# `engine_reconcile_seconds` (`trading.engine`). Without it that read walked every order ever placed: measured with
# 1,000,000 orders of 200 accounts in this table, 100 of them working, SQLite scanned it in 150 ms (every 2 s, in the
# embedded process), PostgreSQL 15 skip-scanned (account_id, status) in 7.6-8.0 ms and 2,512 buffers; through this
# index 0.07 ms and under 1.1 ms (101 buffers), whatever the history. Partial: order entry pays for it only while an
# order works.
_orders_in(WORKING_STATUS_VALUES, "ix_orders_working", OrderRow.account_id, OrderRow.id)


FINISHED_STATUS_VALUES = tuple(
    sorted(status.value for status in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED))
)
"""The statuses of an accepted order that ended (a denied one was never accepted), as stored and in one order: what
`trade_execution_success_ratio` counts (`trading.metrics`), named so for the planner to use `ix_orders_finished`."""

# The orders that ended, by when: what the engine's gauges count every 10 s (the last day's, `trading.metrics`).
# Without it that count read every order ever placed: measured with 1,000,000 orders in this table, ~34,000 of them
# ended in the last day, the count took 408 ms on SQLite (a scan, in the embedded process) and 168-183 ms on
# PostgreSQL 15 (a parallel scan, three processes); through this index 6.9 ms and 13-22 ms.
_orders_in(FINISHED_STATUS_VALUES, "ix_orders_finished", OrderRow.updated_at, OrderRow.filled_quantity)


class OrderEventRow(Base):
    """One immutable event of an order. Rows are only inserted; (order_id, seq) orders them."""

    __tablename__ = "order_events"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="RESTRICT"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[str] = mapped_column(Text(), doc="The event as canonical JSON (decimals as strings).")


class RiskLimitsRow(Base):
    """Pre-trade limits of one account (absent: the configured defaults apply)."""

    __tablename__ = "risk_limits"

    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="CASCADE"), primary_key=True)
    limits: Mapped[str] = mapped_column(Text(), doc="Canonical JSON of the limits (decimals as strings).")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str | None] = mapped_column(String(36))


class TradingStateRow(Base):
    """ACTIVE, REDUCING or HALTED, for one account or (scope "global") for everything."""

    __tablename__ = "trading_states"

    scope: Mapped[str] = mapped_column(String(36), primary_key=True, doc='"global" or an account id.')
    state: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(Text())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str | None] = mapped_column(String(36))
