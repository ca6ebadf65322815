"""Backtest runs: what was run (spec, code version, data fingerprint) and everything it produced."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradestack.models.base import Base, UTCDateTime


class BacktestRunRow(Base):
    """One stored backtest run. The result is immutable once written."""

    __tablename__ = "backtest_runs"
    __table_args__ = (Index("ix_backtest_runs_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, doc="Run id (UUID).")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="When the run was stored (UTC).")
    strategy: Mapped[str] = mapped_column(String(64), doc="Strategy name, e.g. sma_cross.")
    symbols: Mapped[str] = mapped_column(String(400), doc="Comma-separated symbols.")
    first_bar: Mapped[datetime] = mapped_column(UTCDateTime(), doc="Time of the first bar replayed (UTC).")
    last_bar: Mapped[datetime] = mapped_column(UTCDateTime(), doc="Time of the last bar replayed (UTC).")
    bars: Mapped[int] = mapped_column(Integer, doc="Bars replayed.")
    code_version: Mapped[str] = mapped_column(String(64), doc="Tradestack version that ran it.")
    data_fingerprint: Mapped[str] = mapped_column(String(64), doc="SHA-256 of the bars replayed.")
    final_equity: Mapped[str] = mapped_column(String(64), doc="Final equity, exact decimal text, account currency.")
    spec_json: Mapped[str] = mapped_column(Text, doc="Strategy parameters and the account and execution models.")
    metrics_json: Mapped[str] = mapped_column(Text, doc="Return statistics (JSON).")
    result_json: Mapped[str] = mapped_column(Text, doc="Orders, events, fills, journal and equity curve (JSON).")
