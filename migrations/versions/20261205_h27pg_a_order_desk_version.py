"""orders.desk_version: the account's desk version an order desk wrote the order at, so another desk reads only those

Two API workers' order desks share the accounts. A desk that finds only order desks wrote an
account since it last did (`BooksVersions.only_desks_since`) read all the account's open orders
and its last minute's orders again and synced them; it now reads only the orders tagged with a desk
version above the one it knows (index on account_id, desk_version), and falls back to the full read
when those do not account for every desk version in between (a group that wrote no order, or a
desk of the previous release, which leaves the column NULL).

Revision ID: h27pg_a
Revises: h25desk_a
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tradestack.kit import online_ddl

revision: str = "h27pg_a"
down_revision: str | None = "h25desk_a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("desk_version", sa.BigInteger(), nullable=True))
    online_ddl.create_index("ix_orders_account_id_desk_version", "orders", ["account_id", "desk_version"])


def downgrade() -> None:
    online_ddl.drop_index("ix_orders_account_id_desk_version", "orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("desk_version")
