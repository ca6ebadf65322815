"""bar_versions: a version per stored series, changed with every write to its bars (the closed-candle cache)

Each existing series gets a row (both versions 1); from now on `BarRepository` changes the row in
the transaction of every write (see `tradestack.models.marketdata.BarVersionRow`). During a rollout the
previous release still writes bars without changing the row: its appends (live candles) show at once
all the same (a cached answer is also tied to the series' newest bar), but a replacement or an import of
older bars by it shows in this release's candles only from the next write of the new release to the
series (stop the previous release's feeds and imports first).

Revision ID: h24cndl_a
Revises: h19par_a
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "h24cndl_a"
down_revision: str | None = "h19par_a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bar_versions",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("resolution", sa.String(length=4), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("closed_version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "resolution", name=op.f("pk_bar_versions")),
    )
    # One pass over the bars' primary-key index: the series stored so far.
    op.execute(
        "INSERT INTO bar_versions (symbol, resolution, version, closed_version) "
        "SELECT symbol, resolution, 1, 1 FROM bars GROUP BY symbol, resolution"
    )


def downgrade() -> None:
    op.drop_table("bar_versions")
