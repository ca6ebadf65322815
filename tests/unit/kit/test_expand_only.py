"""Expand-only judging of pending migrations (kit/migrations.py): which statements would break the version still
running, and which index builds would hold its writes, on the PostgreSQL DDL of each revision rendered offline (no
database)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tradestack.kit import migrations
from tradestack.kit.migrations import (
    blocking_index_builds,
    blocking_index_builds_pending,
    contract_steps,
    contract_steps_pending,
    head_revisions,
    pending_revisions,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        ("ALTER TABLE users DROP COLUMN email", "drops column email"),
        ("ALTER TABLE ONLY users DROP IF EXISTS email", "drops column email"),
        ("DROP TABLE old_orders", "drops a table"),
        ("DROP MATERIALIZED VIEW daily", "drops a materialized view"),
        ("DROP TYPE order_side", "drops a type"),
        ("ALTER TABLE users RENAME COLUMN email TO mail", "renames (a table or its column)"),
        ("ALTER TABLE users RENAME TO people", "renames (a table or its column)"),
        ("ALTER TABLE orders ALTER COLUMN qty TYPE NUMERIC(30, 10)", "changes the type of column qty"),
        ("ALTER TABLE orders ALTER COLUMN qty SET DATA TYPE TEXT", "changes the type of column qty"),
        ("ALTER TABLE users ALTER COLUMN email SET NOT NULL", "makes column email NOT NULL"),
        ("ALTER TABLE users ADD COLUMN tier INTEGER NOT NULL", "adds NOT NULL column tier without a default"),
        ("TRUNCATE audit_entries", "empties a table"),
    ],
)
def test_contract_statement_is_named(statement: str, why: str) -> None:
    found = contract_steps("r1", f"BEGIN;\n\n-- Running upgrade a -> r1\n\n{statement};\n\nCOMMIT;\n")
    assert len(found) == 1, found
    assert found[0].why.startswith(why)
    assert found[0].revision == "r1"
    assert found[0].statement == statement


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE t (id INTEGER NOT NULL, CONSTRAINT pk_t PRIMARY KEY (id))",
        "ALTER TABLE users ADD COLUMN nickname VARCHAR(64)",
        "ALTER TABLE users ADD COLUMN flag BOOLEAN DEFAULT false NOT NULL",
        "ALTER TABLE users ADD COLUMN tier INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE users ALTER COLUMN email DROP NOT NULL",
        "ALTER TABLE users ALTER COLUMN email DROP DEFAULT",
        "ALTER TABLE users DROP CONSTRAINT uq_users_email",
        "ALTER INDEX ix_a RENAME TO ix_b",
        "CREATE INDEX ix_users_email ON users (email)",
        "DROP INDEX ix_users_email",
        "UPDATE alembic_version SET version_num='r1' WHERE alembic_version.version_num = 'r0'",
        "INSERT INTO instruments (symbol) VALUES ('BTC-USD')",
    ],
)
def test_expand_statement_passes(statement: str) -> None:
    assert contract_steps("r1", f"{statement};\n") == []


def _scripts_with(tmp_path: Path, body: str, phase: str | None = None) -> str:
    """Today's scripts plus revision u13_a on top of TODAY (the head before any patching)."""
    target = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", target, ignore=shutil.ignore_patterns("__pycache__"))
    revision = "u13_a"
    (target / "versions" / "99999999_u13_a.py").write_text(
        f'import sqlalchemy as sa\nfrom alembic import op\n\nrevision = "{revision}"\n'
        f'down_revision = "{TODAY}"\nbranch_labels = None\ndepends_on = None\n'
        + (f'phase = "{phase}"\n' if phase else "")
        + f"\n\ndef upgrade() -> None:\n{body}\n\n\ndef downgrade() -> None:\n    pass\n"
    )
    return revision


TODAY = head_revisions()[0]


@pytest.fixture
def scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(migrations, "migrations_dir", lambda: tmp_path / "migrations")
    yield tmp_path
    head_revisions.cache_clear()  # computed from the patched scripts: not for the next test


def test_pending_revisions_are_judged_from_the_current_one(scripts: Path) -> None:
    today = TODAY
    revision = _scripts_with(scripts, '    op.drop_column("users", "must_change_password")')
    assert pending_revisions((today,)) == [revision]
    found = contract_steps_pending((today,))
    assert [(s.revision, s.why) for s in found] == [(revision, "drops column must_change_password")]
    assert contract_steps_pending((today,), frozenset({revision})) == []  # allowed by name
    assert contract_steps_pending(()) == []  # a brand-new database: no old version reads it


def test_added_nullable_column_is_expand_only(scripts: Path) -> None:
    _scripts_with(scripts, '    op.add_column("users", sa.Column("nickname", sa.String(64), nullable=True))')
    assert contract_steps_pending((TODAY,)) == []


def test_declared_contract_is_refused_even_when_its_sql_looks_harmless(scripts: Path) -> None:
    revision = _scripts_with(scripts, "    op.execute(\"DELETE FROM instruments WHERE symbol = 'X'\")", phase="contract")
    assert [(s.revision, s.why) for s in contract_steps_pending((TODAY,))] == [(revision, 'declares phase = "contract"')]


def test_migration_that_reads_the_database_needs_a_declaration(scripts: Path) -> None:
    body = (
        '    if op.get_bind().execute(sa.text("SELECT 1")).first():\n        op.add_column("users", sa.Column("x", sa.Integer()))'
    )
    revision = _scripts_with(scripts, body)
    found = contract_steps_pending((TODAY,))
    assert [s.revision for s in found] == [revision]
    assert "cannot be judged offline" in found[0].why
    assert 'declare phase = "expand"' in found[0].why


def test_shipped_migrations_render_offline_or_declare_their_phase() -> None:
    """Every shipped revision can be judged: from the first one to head, nothing is reported."""
    first = pending_revisions(())[0]
    assert contract_steps_pending((first,)) == []


# -- plain index builds on a table in use: expand-only, named all the same --------------------------------------------
@pytest.mark.parametrize(
    ("sql", "index", "table"),
    [
        ("CREATE INDEX ix_orders_x ON orders (account_id)", "ix_orders_x", "orders"),
        ("CREATE UNIQUE INDEX IF NOT EXISTS uq_users_mail ON users (email)", "uq_users_mail", "users"),
        ("CREATE INDEX ix_fills_y ON fills (ts) WHERE liquidity = 'maker'", "ix_fills_y", "fills"),
    ],
)
def test_a_plain_index_build_on_a_table_in_use_is_named(sql: str, index: str, table: str) -> None:
    [found] = blocking_index_builds("r1", f"BEGIN;\n\n{sql};\n\nCOMMIT;\n")
    assert found.why.startswith(f"builds index {index} with a plain CREATE INDEX: writes to {table} wait until it is built")
    assert found.statement == sql
    assert contract_steps("r1", f"{sql};\n") == []  # expand-only all the same


@pytest.mark.parametrize(
    "sql",
    [
        "COMMIT;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ix_orders_x ON orders (account_id);\nBEGIN;",
        "CREATE TABLE t (id INTEGER NOT NULL, a INTEGER);\nCREATE INDEX ix_t_a ON t (a);",  # a table of its own: empty
        "CREATE INDEX ix_bars_ts ON ONLY bars (ts);",  # a partitioned table's parent alone: nothing to read
    ],
)
def test_an_index_build_that_holds_no_writes_is_not_named(sql: str) -> None:
    assert blocking_index_builds("r1", sql) == []


def test_a_pending_revision_is_named_until_it_builds_its_index_online(scripts: Path) -> None:
    revision = _scripts_with(scripts, '    op.create_index("ix_users_email_x", "users", ["email"])')
    [found] = blocking_index_builds_pending((TODAY,))
    assert (found.revision, found.statement) == (revision, "CREATE INDEX ix_users_email_x ON users (email)")
    assert contract_steps_pending((TODAY,)) == []
    assert blocking_index_builds_pending(()) == []  # a brand-new database: nobody writes it yet

    script = scripts / "migrations" / "versions" / f"99999999_{revision}.py"
    online = '    from tradestack.kit import online_ddl\n\n    online_ddl.create_index("ix_users_email_x", "users", ["email"])'
    script.write_text(script.read_text().replace('    op.create_index("ix_users_email_x", "users", ["email"])', online))
    assert blocking_index_builds_pending((TODAY,)) == []
    assert contract_steps_pending((TODAY,)) == []  # rendered and judged, not skipped


def test_no_shipped_revision_builds_a_plain_index_on_a_table_in_use() -> None:
    assert blocking_index_builds_pending((pending_revisions(())[0],)) == []
