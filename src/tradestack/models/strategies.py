"""Strategy deployments: a named strategy with its parameters, running on paper on one trading account."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradestack.models.base import Base, UTCDateTime
from tradestack.models.marketdata import PRICE, VOLUME


class StrategyDeploymentRow(Base):
    """One deployment. Its orders are the account's orders whose client order id starts with `order_prefix`;
    positions, cash and P&L are never stored here: they are rebuilt from those orders and their fills."""

    __tablename__ = "strategy_deployments"
    __table_args__ = (Index("ix_strategy_deployments_state", "state"), Index("ix_strategy_deployments_owner", "owner_id"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, doc="Deployment id (UUID).")
    order_prefix: Mapped[str] = mapped_column(String(24), unique=True, doc="Client order ids of its orders start with it.")
    owner_id: Mapped[str] = mapped_column(String(36), doc="The user who deployed it; its orders are submitted as them.")
    owner_email: Mapped[str] = mapped_column(String(320), doc="The owner's email when deployed (audit actor).")
    account_id: Mapped[str] = mapped_column(String(36), doc="The trading account it trades.")
    strategy: Mapped[str] = mapped_column(String(64), doc="Strategy name, e.g. sma_cross.")
    symbols: Mapped[str] = mapped_column(String(400), doc="Comma-separated symbols.")
    params_json: Mapped[str] = mapped_column(Text, doc="Parameters as given (JSON object of strings).")
    bar_seconds: Mapped[int] = mapped_column(Integer, doc="Length of the bars built from the live quotes, in seconds.")
    max_errors: Mapped[int] = mapped_column(Integer, doc="Consecutive errors after which it stops itself.")
    state: Mapped[str] = mapped_column(String(16), doc="running, stopped or failed.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="When it was deployed (UTC).")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="Last change of state or errors (UTC).")
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, doc="When it stopped (UTC).")
    stop_reason: Mapped[str | None] = mapped_column(Text, nullable=True, doc="Why it stopped.")
    errors: Mapped[int] = mapped_column(Integer, default=0, doc="Errors since deployment.")
    consecutive_errors: Mapped[int] = mapped_column(Integer, default=0, doc="Errors since the last event handled cleanly.")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True, doc="The last error (strategy or order entry).")
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, doc="When (UTC).")


class StrategyBarRow(Base):
    """A bar a deployment's runner built from the quotes and handed to its strategy (or added while halted).

    Kept so that a restarted runner gives the host the same history (indicators, bar indexes) as one
    that never stopped; only the newest bars are kept (the runner prunes older ones)."""

    __tablename__ = "strategy_bars"

    deployment_id: Mapped[str] = mapped_column(String(36), ForeignKey("strategy_deployments.id"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True, doc="Start of the bar's interval (UTC).")
    number: Mapped[int] = mapped_column(Integer, doc="Its index in the deployment's history of the symbol (0: the first).")
    open: Mapped[Decimal] = mapped_column(PRICE)
    high: Mapped[Decimal] = mapped_column(PRICE)
    low: Mapped[Decimal] = mapped_column(PRICE)
    close: Mapped[Decimal] = mapped_column(PRICE)
    volume: Mapped[Decimal] = mapped_column(VOLUME)
