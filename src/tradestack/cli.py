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
user_app = typer.Typer(help="Users: create and list (admins manage the rest through the API).", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
secrets_app = typer.Typer(help="Secrets at rest.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(audit_app, name="audit")
app.add_typer(secrets_app, name="secrets")

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
    """Run `work(database)` with the process runtime open (keyring configured), then close it."""
    return _run_runtime(settings, lambda runtime: work(runtime.database))


def _run_runtime(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from tradestack.kit.runtime import Runtime

    async def main() -> T:
        runtime = Runtime.open(settings)
        try:
            return await work(runtime)
        finally:
            await runtime.close()

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


async def _migrate_and_seed(runtime: Any) -> tuple[str, list[Any]]:
    from tradestack.identity.service import seed_first_users
    from tradestack.kit import migrations
    from tradestack.ops.service import InstanceService

    await migrations.upgrade(runtime.database.engine)
    async with runtime.database.session() as session:
        instance = await InstanceService(session, runtime.clock).ensure_seeded()
    return instance.id, await seed_first_users(runtime)


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where the SQLite database and other data live.")] = Path("var"),
) -> None:
    """Run everything in one process: migrate, seed demo data, serve the API (SQLite unless configured otherwise)."""
    from tradestack.api.server import serve

    settings = load_settings(host=host, port=port, data_dir=data_dir, workers=1)
    instance_id, seeded = _run_runtime(settings, _migrate_and_seed)
    console.print(f"[green]database ready[/] ({settings.masked()['effective_database_url']}), instance {instance_id}")
    for user in seeded:
        secret = (
            f"password [bold]{user.password}[/] (shown once: store it now)"
            if user.password
            else "password from TRADESTACK_ADMIN_PASSWORD"
        )
        console.print(f"created {user.role.value} [bold]{user.email}[/], {secret}")
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


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Argument(help="Email address to sign in with.")],
    role: Annotated[str, typer.Option(help="admin, trader, viewer or risk.")] = "viewer",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")] = False,
) -> None:
    """Create a user (the password is asked for, or read from stdin with --password-stdin)."""
    from tradestack.core.errors import TradestackError
    from tradestack.identity.permissions import Role
    from tradestack.identity.service import Caller, identity_session

    try:
        chosen = Role(role)
    except ValueError:
        raise _fail(f"unknown role {role!r}: use one of {', '.join(r.value for r in Role)}") from None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = load_settings()

    async def create(runtime: Any) -> str:
        async with identity_session(runtime, Caller(user_agent="tradestack cli")) as service:
            user = await service.create_user(email, password, chosen)
            return str(user.id)

    try:
        user_id = _run_runtime(settings, create)
    except TradestackError as exc:
        raise _fail(exc.detail) from exc
    console.print(f"[green]created[/] {chosen.value} {email.lower()} ({user_id})")


@user_app.command("list")
def user_list() -> None:
    """List users with role, state and MFA."""
    from tradestack.identity.service import Caller, IdentityService

    settings = load_settings()

    async def fetch(runtime: Any) -> list[tuple[str, ...]]:
        async with runtime.database.read_session() as session:
            users = await IdentityService(session, runtime, Caller()).list_users(limit=10_000, offset=0)
            return [
                (u.email, u.role, "yes" if u.is_active else "no", "on" if u.mfa_enabled else "off",
                 u.created_at.strftime("%Y-%m-%d %H:%M"), u.id)
                for u in users
            ]  # fmt: skip

    table = Table("email", "role", "active", "mfa", "created (UTC)", "id")
    for row in _run_runtime(settings, fetch):
        table.add_row(*row)
    console.print(table)


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the hash chain of the audit log; exit 1 naming the first edited, deleted or reordered row."""
    from tradestack.audit.service import AuditService

    settings = load_settings()
    report = _run_runtime(settings, lambda runtime: AuditService(runtime.database, runtime.clock).verify())
    if not report.ok:
        raise _fail(f"audit log is NOT intact: {report.problem}", code=1)
    console.print(f"[green]audit log intact[/]: {report.checked} rows, head hash {report.head_hash or '-'}")
    console.print("Compare the head hash with one recorded elsewhere to detect removal of the newest rows.")


@secrets_app.command("rotate-key")
def secrets_rotate_key() -> None:
    """Re-encrypt every encrypted column with TRADESTACK_ENCRYPTION_KEY.

    First set the new key as TRADESTACK_ENCRYPTION_KEY and the old one in
    TRADESTACK_ENCRYPTION_PREVIOUS_KEYS; after this command the old key can be dropped.
    """
    from tradestack.kit.crypto import get_keyring, reencrypt_all
    from tradestack.models import Base

    settings = load_settings()

    async def rotate(runtime: Any) -> dict[str, int]:
        async with runtime.database.engine.begin() as connection:
            return await reencrypt_all(connection, Base.metadata, get_keyring())

    counts = _run_runtime(settings, rotate)  # the runtime configured the keyring from settings
    for column, count in counts.items():
        console.print(f"{column}: {count} re-encrypted")
    console.print(f"[green]every encrypted value now uses key id {get_keyring().active_key_id}[/]")


def main() -> None:
    """Entry point of the `tradestack` script."""
    app()


if __name__ == "__main__":
    main()
