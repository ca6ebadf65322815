"""The `tradestack` command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

import tradestack
from tradestack.core.errors import ConfigurationError
from tradestack.kit.config import ENV_PREFIX, Settings

T = TypeVar("T")

app = typer.Typer(
    name="tradestack",
    help="Tradestack: a self-hosted trading platform with its production operations kit built in.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
serve_app = typer.Typer(help="Run one production process (API workers; later the engine and feeds).", no_args_is_help=True)
db_app = typer.Typer(help="Database schema: migrate, inspect, check.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with command-line options exported so worker processes see them too."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    try:
        settings = Settings()
        settings.check_secrets()
    except ValidationError as exc:
        problems = "; ".join(f"{ENV_PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise _fail(f"invalid configuration: {problems}") from exc
    except ConfigurationError as exc:
        raise _fail(str(exc)) from exc
    return settings


def _run(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from tradestack.kit.db import Database

    async def main() -> T:
        database = Database(settings)
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(main())


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"tradestack {tradestack.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Tradestack command line."""


async def _migrate_and_seed(database: Any) -> str:
    from tradestack.core.clock import LiveClock
    from tradestack.kit import migrations
    from tradestack.ops.service import InstanceService

    await migrations.upgrade(database.engine)
    async with database.session() as session:
        instance = await InstanceService(session, LiveClock()).ensure_seeded()
        return instance.id


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where the SQLite database and other data live.")] = Path("var"),
) -> None:
    """Run everything in one process: migrate, seed demo data, serve the API (SQLite unless configured otherwise)."""
    from tradestack.api.server import serve

    settings = load_settings(host=host, port=port, data_dir=data_dir, workers=1)
    instance_id = _run(settings, _migrate_and_seed)
    console.print(f"[green]database ready[/] ({settings.masked()['effective_database_url']}), instance {instance_id}")
    console.print(f"serving on [bold]http://{settings.host}:{settings.port}[/]  (Ctrl+C to stop)")
    raise typer.Exit(serve(settings))


@serve_app.command("api")
def serve_api(
    host: Annotated[str | None, typer.Option(help="Interface to listen on [default: TRADESTACK_HOST or 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: TRADESTACK_PORT or 8000].")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes [default: TRADESTACK_WORKERS or 1].")] = None,
) -> None:
    """Serve the API with N worker processes. Does not migrate: run `tradestack db upgrade` first."""
    from tradestack.api.server import serve

    settings = load_settings(host=host, port=port, workers=workers)
    raise typer.Exit(serve(settings))


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from tradestack.kit import migrations

    settings = load_settings()
    _run(settings, lambda db: migrations.upgrade(db.engine, revision))
    current = _run(settings, lambda db: migrations.current_revisions(db.engine))
    console.print(f"[green]upgraded[/]: database at {', '.join(current) or 'base'}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision: an id, -1 for one step, or base for all.")],
) -> None:
    """Revert migrations down to REVISION."""
    from tradestack.kit import migrations

    settings = load_settings()
    _run(settings, lambda db: migrations.downgrade(db.engine, revision))
    current = _run(settings, lambda db: migrations.current_revisions(db.engine))
    console.print(f"[yellow]downgraded[/]: database at {', '.join(current) or 'base'}")


@db_app.command("current")
def db_current() -> None:
    """Print the revision the database is at, and whether it is the head."""
    from tradestack.kit import migrations

    settings = load_settings()
    current = _run(settings, lambda db: migrations.current_revisions(db.engine))
    head = migrations.head_revisions()
    state = "head" if set(current) == set(head) else f"behind head {', '.join(head)}"
    console.print(f"{', '.join(current) or 'base'} ({state})")


@db_app.command("history")
def db_history() -> None:
    """List every migration, newest first."""
    from tradestack.kit import migrations

    table = Table("revision", "down revision", "message")
    for revision, down, message in migrations.history():
        table.add_row(revision, down or "base", message)
    console.print(table)


@db_app.command("check")
def db_check() -> None:
    """Fail when the models and the migrations disagree (a migration is missing)."""
    from alembic.util.exc import AutogenerateDiffsDetected

    from tradestack.kit import migrations

    settings = load_settings()
    try:
        _run(settings, lambda db: migrations.check(db.engine))
    except AutogenerateDiffsDetected as exc:
        raise _fail(f"models and migrations disagree: {exc}", code=1) from exc
    console.print("[green]models and migrations agree[/]")


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the effective configuration, secrets masked."""
    settings = load_settings()
    data = settings.masked()
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    table = Table("setting", "value", "environment variable")
    for name, value in data.items():
        env = f"{ENV_PREFIX}{name.upper()}" if name in Settings.model_fields else "(derived)"
        table.add_row(name, "" if value is None else str(value), env)
    console.print(table)


def main() -> None:
    """Entry point of the `tradestack` script."""
    app()


if __name__ == "__main__":
    main()
