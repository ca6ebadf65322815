"""ix_orders_finished: the orders that ended, by when, so the engine's gauges stop reading every order ever placed

Every 10 s the engine that keeps the gauges counts the orders that ended in the last day and how many
of them got a fill (`trade_execution_success_ratio`). No index served that count: with a million
orders SQLite scanned the table in 408 ms, PostgreSQL in 168-183 ms on three processes. A partial index
on (updated_at, filled_quantity) over the ended statuses serves it (6.9 and 13-22 ms; see
`models.trading`). Expand-only: the previous release neither reads nor minds it.

On PostgreSQL it is built CONCURRENTLY (`kit.online_ddl`): the orders table keeps taking writes
while the build reads it. SQLite builds it in ~1.3 s a million orders here, before the embedded app serves.

Revision ID: h29fin_a
Revises: h28rec_a
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa

from tradestack.kit import online_ddl

revision: str = "h29fin_a"
down_revision: str | None = "h28rec_a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENDED = sa.column("status").in_(("canceled", "expired", "filled", "rejected"))  # models.trading.FINISHED_STATUS_VALUES


def upgrade() -> None:
    online_ddl.create_index("ix_orders_finished", "orders", ["updated_at", "filled_quantity"], where=ENDED)


def downgrade() -> None:
    online_ddl.drop_index("ix_orders_finished", "orders")
