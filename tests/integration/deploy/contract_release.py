"""A test-only release that ships one more migration: the real `tradestack` CLI whose migration scripts are the
directory in TEST_MIGRATIONS_DIR (a copy of migrations/ plus one revision, made by `release_migrations`).

Run as ``python contract_release.py db upgrade --expand-only`` (the release spec's migrate command). Nothing like it
ships: an installed release finds its scripts next to its package.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

NEW_REVISION = {
    # Drops what the running version reads: refused by `db upgrade --expand-only`.
    "contract": """
def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("must_change_password")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("must_change_password", sa.Boolean(), server_default=sa.false(), nullable=False))
""",
    # Expand-only, but builds an index on a table in use with a plain CREATE INDEX: named, then applied.
    "index": """
def upgrade() -> None:
    op.create_index("ix_users_nickname", "users", ["nickname"])


def downgrade() -> None:
    op.drop_index("ix_users_nickname", table_name="users")
""",
    # Only adds (a nullable column): applied.
    "expand": """
def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("nickname", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("nickname")
""",
}


def release_migrations(directory: Path, *kinds: str) -> tuple[Path, list[str]]:
    """A copy of migrations/ with new revisions (`kinds`, chained in order) on top of today's head."""
    from tradestack.kit.migrations import head_revisions

    target = directory / f"migrations-{'-'.join(kinds)}"
    shutil.copytree(REPO / "migrations", target, ignore=shutil.ignore_patterns("__pycache__"))
    down, revisions = head_revisions()[0], []
    for kind in kinds:
        revision = f"t13_{kind}"
        (target / "versions" / f"99999999_{revision}.py").write_text(
            f'"""test-only {kind} revision"""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
            f'revision = "{revision}"\ndown_revision = "{down}"\nbranch_labels = None\ndepends_on = None\n' + NEW_REVISION[kind]
        )
        down = revision
        revisions.append(revision)
    return target, revisions


if __name__ == "__main__":
    from tradestack.kit import migrations

    scripts = Path(os.environ["TEST_MIGRATIONS_DIR"])
    migrations.migrations_dir = lambda: scripts  # type: ignore[assignment]
    from tradestack.cli import app

    sys.argv[0] = "tradestack"
    app()
