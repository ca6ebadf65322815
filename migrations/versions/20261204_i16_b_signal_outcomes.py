"""signal_outcomes: served predictions and alpha days with their realised outcomes (ml_model_accuracy)

Revision ID: i16_b
Revises: i15_a
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tradestack.kit.types

revision: str = "i16_b"
down_revision: str | None = "i15_a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signal_outcomes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=True),
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mid", tradestack.kit.types.ExactDecimal(38, 18), nullable=True),
        sa.Column("up", sa.Boolean(), nullable=True),
        sa.Column("scores_json", sa.Text(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hits", sa.Integer(), nullable=True),
        sa.Column("calls", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_outcomes")),
        sa.UniqueConstraint("model_version", "subject", name="uq_signal_outcomes_model_subject"),
    )
    op.create_index("ix_signal_outcomes_pending", "signal_outcomes", ["kind", "resolved_at", "due_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_signal_outcomes_pending", table_name="signal_outcomes")
    op.drop_table("signal_outcomes")
