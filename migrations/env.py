"""Alembic environment: runs on a connection handed in by `tradestack.kit.migrations`, or on its own."""

from __future__ import annotations

import asyncio
import re

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from tradestack.kit.config import Settings
from tradestack.models import Base

config = context.config
target_metadata = Base.metadata


# Partitions of `bars` (migration 0004) are managed by the migration, not by models.
_PARTITION = re.compile(r"^bars_(before_1970|\d{4}s|default)$")


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    return not (type_ == "table" and name is not None and _PARTITION.match(name))


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        include_name=_include_name,
        compare_type=True,
        compare_server_default=True,
        user_module_prefix="tradestack.kit.types.",
        **kwargs,  # type: ignore[arg-type]
    )


def run_on(connection: Connection) -> None:
    # One transaction per revision when the connection comes without one (kit.migrations on PostgreSQL), so a
    # revision can build an index concurrently between them; within the caller's transaction otherwise.
    hooks = {"on_version_apply": config.attributes["on_version_apply"]} if "on_version_apply" in config.attributes else {}
    _configure(
        connection=connection,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=True,
        **hooks,  # kit.migrations' report of each revision as it is applied (`db upgrade` prints them)
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_standalone(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
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
