"""EncryptedString stores only ciphertext on SQLite and PostgreSQL, and reencrypt_all rotates keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select, text, update
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tradestack.kit import crypto
from tradestack.kit.config import Settings
from tradestack.kit.crypto import DecryptionError, EncryptedString, Keyring, configure_keyring, key_id, reencrypt_all
from tradestack.kit.db import Database

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
K3 = bytes(range(200, 232))


class ProbeBase(DeclarativeBase):
    """A declarative base with its own MetaData, apart from the application's models."""

    metadata = MetaData()


class Probe(ProbeBase):
    __tablename__ = "encrypted_probe"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(40))
    secret: Mapped[str | None] = mapped_column(EncryptedString("probe.secret"))
    note: Mapped[str | None] = mapped_column(EncryptedString("probe.note"))


probes = Probe.__table__
assert isinstance(probes, Table)
# A second table with a composite primary key, and one without encrypted columns (left alone).
pairs = Table(
    "encrypted_probe_pair",
    ProbeBase.metadata,
    Column("left_id", Integer, primary_key=True),
    Column("right_id", String(10), primary_key=True),
    Column("token", EncryptedString("probe.pair_token")),
)
Table("plain_probe", ProbeBase.metadata, Column("id", Integer, primary_key=True), Column("value", String(40)))

SECRETS = {1: "JBSWY3DPEHPK3PXP", 2: "ünïcødé ✓", 3: "", 4: None}


@pytest.fixture(autouse=True)
def restore_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without a process keyring; the one before the test comes back after it."""
    monkeypatch.setattr(crypto, "_keyring", None)


@pytest.fixture
async def engine(database_url: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    database = Database(Settings(database_url=database_url, data_dir=tmp_path))
    async with database.engine.begin() as connection:
        await connection.run_sync(ProbeBase.metadata.create_all)
    yield database.engine
    await database.dispose()


async def _raw(engine: AsyncEngine, column: str = "secret") -> dict[int, str | None]:
    """Stored text, read without the column type."""
    async with engine.connect() as connection:
        rows = (await connection.execute(text(f"SELECT id, {column} FROM encrypted_probe ORDER BY id"))).all()  # noqa: S608
    return {row[0]: row[1] for row in rows}


async def _plain(engine: AsyncEngine) -> dict[int, tuple[str | None, str | None]]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(probes.c.id, probes.c.secret, probes.c.note).order_by(probes.c.id))).all()
    return {row[0]: (row[1], row[2]) for row in rows}


async def _insert_probes(engine: AsyncEngine, ids: list[int]) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            insert(probes),
            [{"id": i, "label": f"row {i}", "secret": SECRETS[i], "note": f"note {i}"} for i in ids],
        )


async def test_core_insert_stores_only_ciphertext_and_reads_back_plaintext(engine: AsyncEngine) -> None:
    configure_keyring(Keyring(K1))
    await _insert_probes(engine, [1, 2, 3, 4])

    raw = await _raw(engine)
    for i, plaintext in SECRETS.items():
        if plaintext is None:
            assert raw[i] is None
            continue
        stored = raw[i]
        assert stored is not None
        assert stored != plaintext
        assert plaintext == "" or plaintext not in stored
        assert stored.startswith(f"v1.{key_id(K1)}.")
        assert Keyring(K1).decrypt(stored, purpose="probe.secret") == plaintext
    assert await _plain(engine) == {i: (secret, f"note {i}") for i, secret in SECRETS.items()}


async def test_orm_round_trip_and_update(engine: AsyncEngine) -> None:
    configure_keyring(Keyring(K1))
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions.begin() as session:
        session.add(Probe(id=1, label="orm", secret="orm secret", note=None))

    stored = (await _raw(engine))[1]
    assert stored is not None
    assert stored.startswith(f"v1.{key_id(K1)}.")
    assert "orm secret" not in stored

    async with sessions.begin() as session:
        probe = await session.get_one(Probe, 1)
        assert (probe.secret, probe.note) == ("orm secret", None)
        probe.secret = "changed"
    changed = (await _raw(engine))[1]
    assert changed is not None
    assert changed != stored
    async with sessions() as session:
        assert (await session.get_one(Probe, 1)).secret == "changed"


async def test_same_plaintext_is_stored_differently(engine: AsyncEngine) -> None:
    configure_keyring(Keyring(K1))
    async with engine.begin() as connection:
        await connection.execute(
            insert(probes), [{"id": 1, "label": "a", "secret": "same"}, {"id": 2, "label": "b", "secret": "same"}]
        )
    raw = await _raw(engine)
    assert raw[1] != raw[2]


async def test_value_copied_into_another_column_does_not_decrypt(engine: AsyncEngine) -> None:
    configure_keyring(Keyring(K1))
    await _insert_probes(engine, [1])
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE encrypted_probe SET note = secret WHERE id = 1"))
    async with engine.connect() as connection:
        assert (await connection.execute(select(probes.c.secret))).scalar_one() == SECRETS[1]
        with pytest.raises(DecryptionError, match="another purpose"):
            (await connection.execute(select(probes.c.note))).scalar_one()


async def test_non_text_values_are_refused(engine: AsyncEngine) -> None:
    configure_keyring(Keyring(K1))
    async with engine.begin() as connection:
        with pytest.raises(StatementError, match="stores str, not int") as info:
            await connection.execute(insert(probes).values(id=1, label="x", secret=1234))
    assert isinstance(info.value.orig, TypeError)


async def test_rotation_reencrypts_every_value_under_the_active_key(engine: AsyncEngine) -> None:
    configure_keyring(Keyring(K1))
    await _insert_probes(engine, [1, 2, 3, 4])
    async with engine.begin() as connection:
        await connection.execute(insert(pairs), [{"left_id": 1, "right_id": "a", "token": "pair a"}])
        await connection.execute(insert(pairs), [{"left_id": 1, "right_id": "b", "token": None}])
    before = await _raw(engine)

    rotated = Keyring(K2, [K1])
    configure_keyring(rotated)
    # A row written after the new key became active is already current.
    async with engine.begin() as connection:
        await connection.execute(insert(probes).values(id=5, label="new", secret="written under k2", note=None))
        await connection.execute(insert(pairs), [{"left_id": 2, "right_id": "a", "token": "pair new"}])
    assert (await _raw(engine))[5].startswith(f"v1.{key_id(K2)}.")  # type: ignore[union-attr]

    async with engine.begin() as connection:
        counts = await reencrypt_all(connection, ProbeBase.metadata, rotated)
    assert counts == {"encrypted_probe.secret": 3, "encrypted_probe.note": 4, "encrypted_probe_pair.token": 1}

    expected = {**{i: (secret, f"note {i}") for i, secret in SECRETS.items()}, 5: ("written under k2", None)}
    for column in ("secret", "note"):
        for i, stored in (await _raw(engine, column)).items():
            assert stored is None or stored.startswith(f"v1.{key_id(K2)}."), (column, i)
    after = await _raw(engine)
    assert all(after[i] != before[i] for i in (1, 2, 3))
    assert await _plain(engine) == expected

    # The old key is no longer needed.
    configure_keyring(Keyring(K2))
    assert await _plain(engine) == expected
    async with engine.connect() as connection:
        rows = (await connection.execute(select(pairs.c.left_id, pairs.c.right_id, pairs.c.token))).all()
    assert sorted(tuple(row) for row in rows) == [(1, "a", "pair a"), (1, "b", None), (2, "a", "pair new")]
    # Without K2 nothing reads any more: the values really moved.
    configure_keyring(Keyring(K1))
    with pytest.raises(DecryptionError, match=f"unknown key id {key_id(K2)}"):
        await _plain(engine)

    async with engine.begin() as connection:
        again = await reencrypt_all(connection, ProbeBase.metadata, Keyring(K2))
    assert again == {"encrypted_probe.secret": 0, "encrypted_probe.note": 0, "encrypted_probe_pair.token": 0}
    assert await _raw(engine) == after


async def test_rotation_runs_in_the_callers_transaction(engine: AsyncEngine) -> None:
    configure_keyring(Keyring(K1))
    await _insert_probes(engine, [1, 2])
    before = await _raw(engine)

    async with engine.connect() as connection:
        transaction = await connection.begin()
        counts = await reencrypt_all(connection, ProbeBase.metadata, Keyring(K2, [K1]))
        assert counts["encrypted_probe.secret"] == 2
        await transaction.rollback()
    assert await _raw(engine) == before

    async with engine.begin() as connection:
        counts = await reencrypt_all(connection, ProbeBase.metadata, Keyring(K2, [K1]))
    assert counts["encrypted_probe.secret"] == 2


async def test_rotation_with_an_unknown_key_names_the_value_and_changes_nothing(engine: AsyncEngine) -> None:
    configure_keyring(Keyring(K1))
    await _insert_probes(engine, [1])
    configure_keyring(Keyring(K3))
    await _insert_probes(engine, [2])
    before = await _raw(engine)

    with pytest.raises(DecryptionError, match=r"encrypted_probe\.secret at primary key \(2,\): encrypted with unknown key id"):
        async with engine.begin() as connection:
            await reencrypt_all(connection, ProbeBase.metadata, Keyring(K2, [K1]))
    assert await _raw(engine) == before


async def test_rotation_does_not_overwrite_a_value_written_meanwhile(engine: AsyncEngine) -> None:
    configure_keyring(Keyring(K1))
    await _insert_probes(engine, [1, 2])
    concurrent = Keyring(K2).encrypt("written meanwhile", purpose="probe.secret")
    written: list[bool] = []

    def write_before_first_update(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        # Another writer changes every secret between reencrypt_all's read and its first update.
        if statement.lstrip().upper().startswith("UPDATE") and not written:
            written.append(True)
            cursor.execute(f"UPDATE encrypted_probe SET secret = '{concurrent}'")  # noqa: S608 - base64url text

    rotated = Keyring(K2, [K1])
    event.listen(engine.sync_engine, "before_cursor_execute", write_before_first_update)
    try:
        async with engine.begin() as connection:
            counts = await reencrypt_all(connection, ProbeBase.metadata, rotated)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", write_before_first_update)

    assert written == [True]
    assert counts["encrypted_probe.secret"] == 0
    assert counts["encrypted_probe.note"] == 2
    assert await _raw(engine) == {1: concurrent, 2: concurrent}
    configure_keyring(Keyring(K2))
    assert await _plain(engine) == {1: ("written meanwhile", "note 1"), 2: ("written meanwhile", "note 2")}


async def test_table_without_primary_key_is_refused(engine: AsyncEngine) -> None:
    metadata = MetaData()
    Table("encrypted_no_pk", metadata, Column("token", EncryptedString("probe.no_pk")))
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        with pytest.raises(ValueError, match="encrypted_no_pk has encrypted columns but no primary key"):
            await reencrypt_all(connection, metadata, Keyring(K2))


async def test_raw_update_through_core_is_encrypted_too(engine: AsyncEngine) -> None:
    configure_keyring(Keyring(K1))
    await _insert_probes(engine, [1])
    async with engine.begin() as connection:
        await connection.execute(update(probes).where(probes.c.id == 1).values(secret="updated"))
    stored = (await _raw(engine))[1]
    assert stored is not None
    assert stored.startswith(f"v1.{key_id(K1)}.")
    assert Keyring(K1).decrypt(stored, purpose="probe.secret") == "updated"
