"""strategy_bars: the bars a deployment's runner built, so a restart rebuilds the same history

Revision ID: h19par_a
Revises: h18_a
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tradestack.kit.types

revision: str = "h19par_a"
down_revision: str | None = "h18_a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRICE = tradestack.kit.types.ExactDecimal(24, 10)
VOLUME = tradestack.kit.types.ExactDecimal(28, 8)


def upgrade() -> None:
    op.create_table(
        "strategy_bars",
        sa.Column("deployment_id", sa.String(length=36), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("open", PRICE, nullable=False),
        sa.Column("high", PRICE, nullable=False),
        sa.Column("low", PRICE, nullable=False),
        sa.Column("close", PRICE, nullable=False),
        sa.Column("volume", VOLUME, nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"], ["strategy_deployments.id"], name=op.f("fk_strategy_bars_deployment_id_strategy_deployments")
        ),
        sa.PrimaryKeyConstraint("deployment_id", "symbol", "ts", name=op.f("pk_strategy_bars")),
    )


def downgrade() -> None:
    op.drop_table("strategy_bars")
