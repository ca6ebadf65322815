"""equity_points: each account's recorded equity in its base currency over time

Revision ID: h18_a
Revises: h17live_a
Create Date: 2026-12-04

A new table only; points exist from when recording started (nothing is backfilled).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tradestack.kit.types

revision: str = "h18_a"
down_revision: str | None = "h17live_a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = tradestack.kit.types.ExactDecimal(38, 18)


def upgrade() -> None:
    op.create_table(
        "equity_points",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("equity", AMOUNT, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_equity_points_account_id_trading_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("account_id", "ts", name=op.f("pk_equity_points")),
    )


def downgrade() -> None:
    op.drop_table("equity_points")
