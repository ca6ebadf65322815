"""ix_orders_working: the working orders alone, so an engine's reconciliation stops reading every order ever placed

Each engine shard reads the working orders of every account every `engine_reconcile_seconds` (2 s by
default). No index served that read (the account_id-first ones need an account): SQLite scanned the
whole table, PostgreSQL skip-scanned (account_id, status). A partial index on (account_id, id) over
the working statuses holds only the orders still working, so the read costs what is open, not the
history (see `models.trading`). Expand-only: the previous release neither reads nor minds it.

On PostgreSQL it is built CONCURRENTLY (`kit.online_ddl`): the orders table keeps taking writes
while the build reads it (a plain CREATE INDEX held them ~0.2 s a million orders here).

Revision ID: h28rec_a
Revises: h27pg_a
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa

from tradestack.kit import online_ddl

revision: str = "h28rec_a"
down_revision: str | None = "h27pg_a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WORKING = sa.column("status").in_(("accepted", "partially_filled", "triggered"))  # models.trading.WORKING_STATUS_VALUES


def upgrade() -> None:
    online_ddl.create_index("ix_orders_working", "orders", ["account_id", "id"], where=WORKING)


def downgrade() -> None:
    online_ddl.drop_index("ix_orders_working", "orders")
