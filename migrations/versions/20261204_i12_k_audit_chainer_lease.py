"""audit_chainer_leases: the lease of the one chainer that moves audit_outbox rows into the chain

Revision ID: i12_k
Revises: i16_a
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i12_k"
down_revision: str | None = "i16_a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_chainer_leases",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_audit_chainer_leases")),
    )


def downgrade() -> None:
    op.drop_table("audit_chainer_leases")
