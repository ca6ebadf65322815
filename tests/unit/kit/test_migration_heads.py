"""The head read from the scripts' text is Alembic's own head, and reading it loads no Alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from tradestack.kit import migrations


def test_head_from_the_scripts_text_is_alembics_head() -> None:
    migrations.head_revisions.cache_clear()
    alembic_heads = ScriptDirectory.from_config(migrations.alembic_config()).get_heads()
    assert migrations.head_revisions() == tuple(sorted(alembic_heads))


def _script(directory: Path, name: str, revision: str, down: str) -> None:
    (directory / f"{name}.py").write_text(
        f'"""{name}"""\n\nrevision: str = "{revision}"\ndown_revision = {down}\n\n\ndef upgrade() -> None:\n    pass\n'
    )


@pytest.mark.parametrize(
    ("scripts", "heads"),
    [
        ([("a", "None"), ("b", '"a"'), ("c", '"b"')], ("c",)),
        ([("a", "None"), ("b", '"a"'), ("c", '"a"')], ("b", "c")),  # two branches: two heads
        ([("a", "None"), ("b", '"a"'), ("c", '"a"'), ("m", '("b", "c")')], ("m",)),  # merged again
    ],
)
def test_heads_of_branches_and_merges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: list[tuple[str, str]], heads: tuple[str, ...]
) -> None:
    (tmp_path / "versions").mkdir()
    (tmp_path / "env.py").write_text("")
    for revision, down in scripts:
        _script(tmp_path / "versions", f"rev_{revision}", revision, down)
    monkeypatch.setattr(migrations, "migrations_dir", lambda: tmp_path)
    migrations.head_revisions.cache_clear()
    try:
        assert migrations.head_revisions() == heads
        assert tuple(sorted(ScriptDirectory.from_config(migrations.alembic_config()).get_heads())) == heads
    finally:
        migrations.head_revisions.cache_clear()


def test_a_script_that_computes_its_revision_falls_back_to_alembic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "versions").mkdir()
    (tmp_path / "env.py").write_text("")
    _script(tmp_path / "versions", "rev_a", "a", "None")
    (tmp_path / "versions" / "rev_b.py").write_text('revision = "b"\ndown_revision = "".join(["a"])\n')
    monkeypatch.setattr(migrations, "migrations_dir", lambda: tmp_path)
    migrations.head_revisions.cache_clear()
    try:
        assert migrations.head_revisions() == ("b",)
    finally:
        migrations.head_revisions.cache_clear()


def test_reading_the_head_imports_no_alembic() -> None:
    code = "import sys; from tradestack.kit import migrations; migrations.head_revisions(); print('alembic' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
