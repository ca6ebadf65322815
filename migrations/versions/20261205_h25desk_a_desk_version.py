"""trading_accounts.desk_version: bumped only by the order desks' lock, so a desk tells another desk's writes apart

An order desk that finds an account's `books_version` and `desk_version` both grown alike since it
last wrote knows only order desks (which add orders) wrote the account's books meanwhile, and reads
only the account's orders again instead of reloading it whole. The previous release's writers bump
`books_version` alone, desks included, so during a rollout their writes count as other writers' and
the account is reloaded whole: never a stale balance.

Revision ID: h25desk_a
Revises: h24cndl_a
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "h25desk_a"
down_revision: str | None = "h24cndl_a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("trading_accounts", sa.Column("desk_version", sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("trading_accounts") as batch:
        batch.drop_column("desk_version")
