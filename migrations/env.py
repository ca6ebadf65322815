"""Alembic environment: runs on a connection handed in by `tradestack.kit.migrations`, or on its own."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from tradestack.kit.config import Settings
from tradestack.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        user_module_prefix="tradestack.kit.types.",
        **kwargs,  # type: ignore[arg-type]
    )


def run_on(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


async def run_standalone(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(run_on)
    await engine.dispose()


def url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings().effective_database_url


if context.is_offline_mode():
    _configure(url=url(), literal_binds=True, render_as_batch=url().startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    run_on(connection)
else:
    asyncio.run(run_standalone(url()))
