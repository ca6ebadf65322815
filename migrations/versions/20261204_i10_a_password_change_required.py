"""users.must_change_password (an admin reset's temporary password must be replaced) and trading_accounts.fx_policy

Revision ID: i10_a
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i10_a"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("must_change_password", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("trading_accounts") as batch:
        batch.add_column(sa.Column("fx_policy", sa.String(length=16), server_default="auto_convert", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("trading_accounts") as batch:
        batch.drop_column("fx_policy")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("must_change_password")
