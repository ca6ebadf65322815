"""ExactDecimal round-trips every digit on SQLite and PostgreSQL, and refuses what it cannot store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, insert, select
from sqlalchemy.exc import StatementError

from tradestack.core.money import plain
from tradestack.kit.config import Settings
from tradestack.kit.db import Database
from tradestack.kit.types import ExactDecimal

metadata = MetaData()
amounts = Table(
    "exact_decimal_probe",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("amount", ExactDecimal(38, 18)),
    Column("price", ExactDecimal(20, 8)),
)


@pytest.fixture
async def db(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(Settings(database_url=database_url, data_dir=tmp_path))
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield database
    await database.dispose()


async def _roundtrip(db: Database, amount: Decimal) -> Decimal | None:
    async with db.engine.begin() as connection:
        result = await connection.execute(insert(amounts).values(amount=amount).returning(amounts.c.id))
        row_id = result.scalar_one()
        value = (await connection.execute(select(amounts.c.amount).where(amounts.c.id == row_id))).scalar_one()
    assert value is None or isinstance(value, Decimal)
    return value


@pytest.mark.parametrize(
    "raw",
    [
        "0.1",
        "0.000000000000000001",
        "99999999999999999999.999999999999999999",
        "-12345.678900",
        "1E+5",
        "0",
    ],
)
async def test_values_come_back_exactly(db: Database, raw: str) -> None:
    value = await _roundtrip(db, Decimal(raw))
    assert value == Decimal(raw)
    assert plain(value) == plain(Decimal(raw))  # type: ignore[arg-type]


async def test_three_tenths_add_up_exactly(db: Database) -> None:
    total = Decimal(0)
    for _ in range(3):
        total += await _roundtrip(db, Decimal("0.1")) or Decimal(0)
    assert total == Decimal("0.3")


async def test_float_is_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="exact"):
        await _roundtrip(db, 0.1)  # type: ignore[arg-type]


async def test_more_places_than_scale_is_refused_not_rounded(db: Database) -> None:
    with pytest.raises(StatementError, match="more than 18 decimal places"):
        await _roundtrip(db, Decimal("0.0000000000000000001"))


async def test_too_many_integer_digits_is_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="more than 20 integer digits"):
        await _roundtrip(db, Decimal("123456789012345678901"))


async def test_null_stays_null(db: Database) -> None:
    assert await _roundtrip(db, None) is None  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.decimals(min_value=Decimal("-1e19"), max_value=Decimal("1e19"), places=18, allow_nan=False, allow_infinity=False))
async def test_any_value_in_range_round_trips(db: Database, value: Decimal) -> None:
    stored = await _roundtrip(db, value)
    assert stored == value
    assert stored is not None
    assert plain(stored) == plain(value)
