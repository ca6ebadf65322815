"""strategy_deployments: strategies running on paper (/api/strategy)

Revision ID: h17live_a
Revises: h12pg_a
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "h17live_a"
down_revision: str | None = "h12pg_a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "strategy_deployments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("order_prefix", sa.String(length=24), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("owner_email", sa.String(length=320), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("symbols", sa.String(length=400), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("bar_seconds", sa.Integer(), nullable=False),
        sa.Column("max_errors", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stop_reason", sa.Text(), nullable=True),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("consecutive_errors", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategy_deployments")),
        sa.UniqueConstraint("order_prefix", name=op.f("uq_strategy_deployments_order_prefix")),
    )
    op.create_index("ix_strategy_deployments_state", "strategy_deployments", ["state"])
    op.create_index("ix_strategy_deployments_owner", "strategy_deployments", ["owner_id"])


def downgrade() -> None:
    op.drop_index("ix_strategy_deployments_owner", table_name="strategy_deployments")
    op.drop_index("ix_strategy_deployments_state", table_name="strategy_deployments")
    op.drop_table("strategy_deployments")
