"""The one row that identifies this Tradestack installation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from tradestack.models.base import Base, UTCDateTime


class Instance(Base):
    """Identity of an installation, written once by the first `tradestack up` or `db upgrade` seed."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="When the installation was first seeded (UTC).")
    seeded_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="Last time the seed step ran (UTC).")
