"""Trained signal models: metadata of the versioned artifacts kept under the data directory."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from tradestack.kit.types import ExactDecimal
from tradestack.models.base import Base, UTCDateTime


class SignalModelRow(Base):
    """One trained model version; at most one per kind is promoted (a partial unique index holds it)."""

    __tablename__ = "signal_models"
    __table_args__ = (
        Index(
            "uq_signal_models_promoted_kind",
            "kind",
            unique=True,
            postgresql_where=text("promoted"),
            sqlite_where=text("promoted"),
        ),
    )

    version: Mapped[str] = mapped_column(String(64), primary_key=True, doc='e.g. "alpha-20261204T043012-3f9a1c2b".')
    kind: Mapped[str] = mapped_column(String(16), doc="alpha (cross-sectional LightGBM) or orderbook.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="When training finished (UTC).")
    promoted: Mapped[bool] = mapped_column(Boolean, default=False, doc="The one model of its kind the API serves.")
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), doc="When it was last promoted (UTC).")
    artifact_sha256: Mapped[str] = mapped_column(String(64), doc="SHA-256 of the model file; checked on every load.")
    data_fingerprint: Mapped[str] = mapped_column(String(64), doc="SHA-256 of the training data.")
    path: Mapped[str] = mapped_column(String(500), doc="Artifact directory, relative to the data directory.")
    metadata_json: Mapped[str] = mapped_column(Text, doc="Features, parameters, window, library versions, evaluation.")


class SignalOutcomeRow(Base):
    """A live prediction (order book) or a day of signals (alpha) served, and once its horizon has passed, how it did.

    Shared by every API worker and kept across restarts: `ml_model_accuracy{model}` is the sum of
    `hits` over the sum of `calls` of a model's resolved rows. `subject` makes a served answer
    recorded once however many workers served it.
    """

    __tablename__ = "signal_outcomes"
    __table_args__ = (
        UniqueConstraint("model_version", "subject", name="uq_signal_outcomes_model_subject"),
        Index("ix_signal_outcomes_pending", "kind", "resolved_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version: Mapped[str] = mapped_column(String(64), doc="The signal_models version that answered.")
    kind: Mapped[str] = mapped_column(String(16), doc="alpha or orderbook.")
    subject: Mapped[str] = mapped_column(String(100), doc='"SYMBOL@book timestamp" (order book) or the as-of day (alpha).')
    symbol: Mapped[str | None] = mapped_column(String(32), doc="The order book's symbol; null for alpha days.")
    made_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="When it was first served (UTC).")
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="Not judged before this (UTC): made_at + horizon.")
    mid: Mapped[Decimal | None] = mapped_column(ExactDecimal(38, 18), doc="Order book: the mid of the book predicted from.")
    up: Mapped[bool | None] = mapped_column(Boolean, doc="Order book: the direction predicted (P(up) >= 0.5).")
    scores_json: Mapped[str | None] = mapped_column(Text, doc='Alpha: {"scores": {symbol: score}, "horizon": days}.')
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), doc="When it was judged (UTC); null while pending.")
    hits: Mapped[int | None] = mapped_column(Integer, doc="Correct calls among `calls`.")
    calls: Mapped[int | None] = mapped_column(Integer, doc="Calls judged (an unchanged price is no call).")
