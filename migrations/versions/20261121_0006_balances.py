"""balances: running balance per trading account and ledger account; orders by account and time

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21

`balances` is a projection of `postings` kept in the same transaction. The upgrade fills it from
the postings already there, summing in Python: SQLite keeps exact decimals as text.
"""

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

import tradestack.kit.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Creates only; it reads the database while migrating, so `db upgrade --expand-only` cannot render it offline.
phase = "expand"

AMOUNT = tradestack.kit.types.ExactDecimal(38, 18)


def upgrade() -> None:
    balances = op.create_table(
        "balances",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("ledger_account", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("amount", AMOUNT, nullable=False),
        sa.Column("quantity", AMOUNT, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["trading_accounts.id"], name=op.f("fk_balances_account_id_trading_accounts"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("account_id", "ledger_account", name=op.f("pk_balances")),
    )
    op.create_index("ix_orders_account_id_created_at", "orders", ["account_id", "created_at"], unique=False)
    bind = op.get_bind()
    postings = sa.table(
        "postings",
        sa.column("entry_id", sa.String()),
        sa.column("account", sa.String()),
        sa.column("currency", sa.String()),
        sa.column("amount", AMOUNT),
        sa.column("quantity", AMOUNT),
    )
    entries = sa.table("journal_entries", sa.column("id", sa.String()), sa.column("account_id", sa.String()))
    rows = bind.execute(
        sa.select(entries.c.account_id, postings.c.account, postings.c.currency, postings.c.amount, postings.c.quantity).join(
            entries, entries.c.id == postings.c.entry_id
        )
    )
    sums: dict[tuple[str, str], list[object]] = defaultdict(lambda: ["", Decimal(0), None])
    for account_id, ledger_account, currency, amount, quantity in rows:
        total = sums[(account_id, ledger_account)]
        total[0] = currency
        total[1] = Decimal(total[1]) + Decimal(amount)  # type: ignore[arg-type]
        if quantity is not None:
            total[2] = Decimal(total[2] or 0) + Decimal(quantity)  # type: ignore[arg-type]
    if sums:
        op.bulk_insert(
            balances,
            [
                {"account_id": a, "ledger_account": name, "currency": c, "amount": amount, "quantity": q}
                for (a, name), (c, amount, q) in sums.items()
            ],
        )


def downgrade() -> None:
    op.drop_index("ix_orders_account_id_created_at", table_name="orders")
    op.drop_table("balances")
