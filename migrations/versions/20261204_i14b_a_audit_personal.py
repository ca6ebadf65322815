"""audit_personal: personal fields of audit entries outside the hashed content (hash version 2)

Revision ID: i14b_a
Revises: i17_a
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i14b_a"
down_revision: str | None = "i17_a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_entries", sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    op.add_column("audit_entries", sa.Column("personal_digest", sa.String(length=64), nullable=True))
    op.create_table(
        "audit_personal",
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("actor_email", sa.String(length=320), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(["entry_id"], ["audit_entries.id"], name=op.f("fk_audit_personal_entry_id_audit_entries")),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_audit_personal")),
    )


def downgrade() -> None:
    op.drop_table("audit_personal")
    with op.batch_alter_table("audit_entries") as batch:
        batch.drop_column("personal_digest")
        batch.drop_column("version")
