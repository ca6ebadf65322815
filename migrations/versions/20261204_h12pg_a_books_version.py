"""books_version: a per-account counter every writer of the account's books bumps (order desks' cache check)

Revision ID: h12pg_a
Revises: i14b_a
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "h12pg_a"
down_revision: str | None = "i14b_a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("trading_accounts", sa.Column("books_version", sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("trading_accounts") as batch:
        batch.drop_column("books_version")
