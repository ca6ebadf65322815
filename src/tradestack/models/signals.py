"""Trained signal models: metadata of the versioned artifacts kept under the data directory."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

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
