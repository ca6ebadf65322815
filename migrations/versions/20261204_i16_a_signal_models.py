"""signal_models: versioned signal model artifacts, one promoted per kind

Revision ID: i16_a
Revises: i10_a
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i16_a"
down_revision: str | None = "i10_a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signal_models",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted", sa.Boolean(), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=False),
        sa.Column("data_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_signal_models")),
    )
    op.create_index(
        "uq_signal_models_promoted_kind",
        "signal_models",
        ["kind"],
        unique=True,
        postgresql_where=sa.text("promoted"),
        sqlite_where=sa.text("promoted"),
    )


def downgrade() -> None:
    op.drop_index("uq_signal_models_promoted_kind", table_name="signal_models")
    op.drop_table("signal_models")
