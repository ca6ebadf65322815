"""instruments and bars: stored price history, time-partitioned on PostgreSQL

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

On PostgreSQL `bars` is a TimescaleDB hypertable when the extension is installed in the
database, otherwise a table partitioned by range of `ts`: one partition per decade from 1970
to 2039 plus a default partition. SQLite gets a plain table. Either way the primary key
(symbol, resolution, ts) is the index that "last N bars" and "bars in a range" scan.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tradestack.kit.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Creates only; it reads the database while migrating, so `db upgrade --expand-only` cannot render it offline.
phase = "expand"

DECADES = range(1970, 2040, 10)


def _timescale() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    return bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).first() is not None


def upgrade() -> None:
    op.create_table(
        "instruments",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("venue", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("quote_currency", sa.String(length=8), nullable=False),
        sa.Column("base_currency", sa.String(length=8), nullable=True),
        sa.Column("tick_size", tradestack.kit.types.ExactDecimal(24, 10), nullable=False),
        sa.Column("lot_size", tradestack.kit.types.ExactDecimal(24, 10), nullable=False),
        sa.Column("tradable", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_instruments")),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    timescale = _timescale()
    partitioned = postgres and not timescale
    op.create_table(
        "bars",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("resolution", sa.String(length=4), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open", tradestack.kit.types.ExactDecimal(24, 10), nullable=False),
        sa.Column("high", tradestack.kit.types.ExactDecimal(24, 10), nullable=False),
        sa.Column("low", tradestack.kit.types.ExactDecimal(24, 10), nullable=False),
        sa.Column("close", tradestack.kit.types.ExactDecimal(24, 10), nullable=False),
        sa.Column("volume", tradestack.kit.types.ExactDecimal(28, 8), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["symbol"], ["instruments.symbol"], name=op.f("fk_bars_symbol_instruments")),
        sa.PrimaryKeyConstraint("symbol", "resolution", "ts", name=op.f("pk_bars")),
        **({"postgresql_partition_by": "RANGE (ts)"} if partitioned else {}),
    )
    if partitioned:
        op.execute("CREATE TABLE bars_before_1970 PARTITION OF bars FOR VALUES FROM (MINVALUE) TO ('1970-01-01')")
        for decade in DECADES:
            op.execute(
                f"CREATE TABLE bars_{decade}s PARTITION OF bars FOR VALUES FROM ('{decade}-01-01') TO ('{decade + 10}-01-01')"
            )
        op.execute("CREATE TABLE bars_default PARTITION OF bars DEFAULT")
    if timescale:
        op.execute("SELECT create_hypertable('bars', 'ts', chunk_time_interval => INTERVAL '365 days')")


def downgrade() -> None:
    op.drop_table("bars")  # drops its partitions (or hypertable chunks) with it
    op.drop_table("instruments")
