"""trading core: orders and their events, fills, the double-entry journal, risk limits, trading states

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21

On PostgreSQL a deferred constraint trigger checks at commit that every journal entry touched
by the transaction sums to zero per currency, so no code path can commit an unbalanced entry.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tradestack.kit.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BALANCE_FUNCTION = """
CREATE OR REPLACE FUNCTION check_journal_entry_balanced() RETURNS trigger AS $$
DECLARE
    checked_entry text := COALESCE(NEW.entry_id, OLD.entry_id);
    bad record;
BEGIN
    SELECT currency, SUM(amount) AS total INTO bad FROM postings
    WHERE entry_id = checked_entry GROUP BY currency HAVING SUM(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance: % postings sum to %', checked_entry, bad.currency, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "trading_states",
        sa.Column("scope", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_trading_states")),
    )
    op.create_table(
        "journal_entries",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=80), nullable=True),
        sa.Column("reverses", sa.String(length=80), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name=op.f("fk_journal_entries_account_id_trading_accounts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(["reverses"], ["journal_entries.id"], name=op.f("fk_journal_entries_reverses_journal_entries")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_entries")),
        sa.UniqueConstraint("reverses", name=op.f("uq_journal_entries_reverses")),
    )
    op.create_index("ix_journal_entries_account_id_ts", "journal_entries", ["account_id", "ts"], unique=False)
    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("client_order_id", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("time_in_force", sa.String(length=3), nullable=False),
        sa.Column("quantity", tradestack.kit.types.ExactDecimal(38, 18), nullable=False),
        sa.Column("limit_price", tradestack.kit.types.ExactDecimal(24, 10), nullable=True),
        sa.Column("stop_price", tradestack.kit.types.ExactDecimal(24, 10), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("filled_quantity", tradestack.kit.types.ExactDecimal(38, 18), nullable=False),
        sa.Column("average_fill_price", tradestack.kit.types.ExactDecimal(38, 18), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["trading_accounts.id"], name=op.f("fk_orders_account_id_trading_accounts"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(["symbol"], ["instruments.symbol"], name=op.f("fk_orders_symbol_instruments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("account_id", "client_order_id", name=op.f("uq_orders_account_id")),
    )
    op.create_index("ix_orders_account_id_status", "orders", ["account_id", "status"], unique=False)
    op.create_index(op.f("ix_orders_created_at"), "orders", ["created_at"], unique=False)
    op.create_index(op.f("ix_orders_symbol"), "orders", ["symbol"], unique=False)
    op.create_table(
        "risk_limits",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("limits", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["trading_accounts.id"], name=op.f("fk_risk_limits_account_id_trading_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_risk_limits")),
    )
    op.create_table(
        "fills",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("quantity", tradestack.kit.types.ExactDecimal(38, 18), nullable=False),
        sa.Column("price", tradestack.kit.types.ExactDecimal(24, 10), nullable=False),
        sa.Column("fee", tradestack.kit.types.ExactDecimal(38, 18), nullable=False),
        sa.Column("fee_currency", sa.String(length=8), nullable=False),
        sa.Column("liquidity", sa.String(length=5), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["trading_accounts.id"], name=op.f("fk_fills_account_id_trading_accounts"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_fills_order_id_orders"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["symbol"], ["instruments.symbol"], name=op.f("fk_fills_symbol_instruments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
    )
    op.create_index("ix_fills_account_id_ts", "fills", ["account_id", "ts"], unique=False)
    op.create_index(op.f("ix_fills_order_id"), "fills", ["order_id"], unique=False)
    op.create_table(
        "order_events",
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_order_events_order_id_orders"), ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("order_id", "seq", name=op.f("pk_order_events")),
    )
    op.create_table(
        "postings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.String(length=80), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("amount", tradestack.kit.types.ExactDecimal(38, 18), nullable=False),
        sa.Column("quantity", tradestack.kit.types.ExactDecimal(38, 18), nullable=True),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_postings_entry_id_journal_entries"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postings")),
    )
    op.create_index(op.f("ix_postings_entry_id"), "postings", ["entry_id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(BALANCE_FUNCTION)
        op.execute(
            "CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT OR UPDATE OR DELETE ON postings "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_journal_entry_balanced()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS postings_balanced ON postings")
        op.execute("DROP FUNCTION IF EXISTS check_journal_entry_balanced()")
    op.drop_index(op.f("ix_postings_entry_id"), table_name="postings")
    op.drop_table("postings")
    op.drop_table("order_events")
    op.drop_index(op.f("ix_fills_order_id"), table_name="fills")
    op.drop_index("ix_fills_account_id_ts", table_name="fills")
    op.drop_table("fills")
    op.drop_table("risk_limits")
    op.drop_index(op.f("ix_orders_symbol"), table_name="orders")
    op.drop_index(op.f("ix_orders_created_at"), table_name="orders")
    op.drop_index("ix_orders_account_id_status", table_name="orders")
    op.drop_table("orders")
    op.drop_index("ix_journal_entries_account_id_ts", table_name="journal_entries")
    op.drop_table("journal_entries")
    op.drop_table("trading_states")
