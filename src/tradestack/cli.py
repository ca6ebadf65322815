"""The `tradestack` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.table import Table

import tradestack
from tradestack.core.errors import ConfigurationError
from tradestack.kit.config import ENV_PREFIX, Settings
from tradestack.kit.terminal import console, err_console

if TYPE_CHECKING:  # imported where used: a command that does not migrate does not load them
    from tradestack.kit.migrations import LockHolder

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
check_app = typer.Typer(help="Invariants of the books, checked on the configured database.", no_args_is_help=True)
app.add_typer(check_app, name="check")
data_app = typer.Typer(help="Price history: import shipped data sets or your own files, list, export.", no_args_is_help=True)
app.add_typer(data_app, name="data")
backtest_app = typer.Typer(help="Backtests: run a strategy over historical bars on the pure domain.", no_args_is_help=True)
app.add_typer(backtest_app, name="backtest")


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


def _serve_runtime(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """`_run_runtime` for a long-running `serve` process: its collector governed as the API's is
    (`kit.gcpolicy.governed`), so full passes do not walk everything the process keeps."""
    from tradestack.kit import gcpolicy

    async def governed(runtime: Any) -> T:
        async with gcpolicy.governed(freeze_survivors=settings.gc_freeze_survivors):
            return await work(runtime)

    return _run_runtime(settings, governed)


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


async def _migrate_and_seed(runtime: Any) -> tuple[str, list[Any], int, bool]:
    """Migrate, seed the instance and first users, count the stored series, look for an alpha model: one
    runtime for all of `up`'s set-up."""
    from tradestack.books.flows import seed_first_users
    from tradestack.kit import migrations
    from tradestack.marketdata.service import MarketDataService
    from tradestack.ops.service import InstanceService
    from tradestack.signals.service import SignalService

    engine = runtime.database.engine
    # At head already (every start but the first after an install or upgrade): no Alembic run. The head
    # read here is cached for the process, so /api/ready's schema check does not read the scripts again.
    if set(await migrations.current_revisions(engine)) != set(migrations.head_revisions()):
        await migrations.upgrade(engine)
    async with runtime.database.session() as session:
        instance = await InstanceService(session, runtime.clock).ensure_seeded()
    seeded = await seed_first_users(runtime)
    has_alpha = bool(await SignalService(runtime).models("alpha"))
    return instance.id, seeded, len(await MarketDataService(runtime).series()), has_alpha


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where the SQLite database and other data live.")] = Path("var"),
    demo_data: Annotated[
        bool, typer.Option("--demo-data/--no-demo-data", help="Import the shipped price history on first start.")
    ] = True,
) -> None:
    """Run everything in one process: migrate, seed demo data, serve the API with live replayed market data."""
    from tradestack.api.server import serve
    from tradestack.kit.secrets import secrets_dir, with_generated_secrets

    settings = load_settings(
        host=host,
        port=port,
        data_dir=data_dir,
        workers=1,
        marketdata_in_process=True,
        engine_in_process=True,
        strategies_in_process=True,
    )
    if not _is_loopback(settings.host):
        err_console.print(
            f"[bold yellow]warning:[/] listening on {settings.host} exposes this single-user installation to the network"
            " without TLS; use 127.0.0.1 and put a TLS proxy in front (see deploy/) to serve others"
        )
    try:
        settings = with_generated_secrets(settings)
    except ConfigurationError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"secrets: {secrets_dir(settings)} (generated on first start, owner-only; back them up with the database)")
    instance_id, seeded, stored_series, has_alpha = _run_runtime(settings, _migrate_and_seed)
    if demo_data and not stored_series:
        _import_demo_on_first_start(settings)
    trainers: list[Any] = []
    train_first_alpha = demo_data and not has_alpha
    if train_first_alpha:
        from tradestack.signals.artifacts import mark_first_training

        # Until the trainer starts (and names itself), this process stands for it: signals say a model is coming.
        mark_first_training(settings.data_dir, os.getpid())
        console.print("first start: an alpha model will be trained on the stored daily bars in the background once serving")
    console.print(f"[green]database ready[/] ({settings.masked()['effective_database_url']}), instance {instance_id}")
    for user in seeded:
        secret = (
            f"password [bold]{user.password}[/] (shown once: store it now)"
            if user.password
            else "password from TRADESTACK_ADMIN_PASSWORD"
        )
        console.print(f"created {user.role.value} [bold]{user.email}[/], {secret}")
    # The trainer (a process of its own, minutes of CPU) starts once the server is ready, not beside its start-up.
    _announce_when_serving(
        settings.host, settings.port, on_ready=(lambda: trainers.append(_start_first_alpha())) if train_first_alpha else None
    )
    code = serve(settings)
    for trainer in trainers:
        if trainer.poll() is None:
            trainer.terminate()
            trainer.wait(10)
    if train_first_alpha:
        from tradestack.signals.artifacts import clear_first_training

        clear_first_training(settings.data_dir)
    raise typer.Exit(code)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@serve_app.command("marketdata")
def serve_marketdata() -> None:
    """Run the market-data feeds and publish to Redis (cache and pub/sub) for every API replica."""
    from tradestack.marketdata.tasks import run_market_data

    settings = load_settings()
    if settings.redis_url is None:
        raise _fail("serve marketdata publishes through Redis: set TRADESTACK_REDIS_URL (embedded mode runs feeds in `up`)")
    from tradestack.kit.logging import configure_logging

    configure_logging(settings.log_level, json=settings.log_json)
    with contextlib.suppress(KeyboardInterrupt):
        _serve_runtime(settings, run_market_data)


@serve_app.command("engine")
def serve_engine(
    shard: Annotated[int, typer.Option(help="Which shard of the accounts (0..TRADESTACK_ENGINE_SHARDS-1).")] = 0,
) -> None:
    """Run one paper matching engine shard: orders from its Redis stream, quotes from the bus, fills to the database.

    Shard 0 also records every account's equity for the portfolio chart (`TRADESTACK_EQUITY_RECORD_SECONDS`).
    """
    from tradestack.books.tasks import record_equity_forever
    from tradestack.trading.engine import run_engine

    settings = load_settings()
    if settings.redis_url is None:
        raise _fail("serve engine takes orders from a Redis stream: set TRADESTACK_REDIS_URL (embedded mode runs it in `up`)")
    if not 0 <= shard < settings.engine_shards:
        raise _fail(
            f"--shard must be between 0 and {settings.engine_shards - 1} (TRADESTACK_ENGINE_SHARDS={settings.engine_shards})"
        )
    from tradestack.kit.logging import configure_logging

    configure_logging(settings.log_level, json=settings.log_json)
    with contextlib.suppress(KeyboardInterrupt):
        _serve_runtime(
            settings, lambda runtime: _with_recorder(run_engine(runtime, shard), runtime, record_equity_forever, shard == 0)
        )


async def _with_recorder(
    main: Awaitable[None], runtime: Any, recorder: Callable[[Any], Coroutine[Any, Any, None]], wanted: bool
) -> None:
    """Await `main`, with `recorder(runtime)` running beside it when `wanted` (stopped when `main` ends)."""
    if not wanted:
        await main
        return
    from tradestack.kit.aio import stop_tasks

    side = asyncio.create_task(recorder(runtime), name="equity-recorder")
    try:
        await main
    finally:
        await stop_tasks([side], "equity recorder")


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


DEFAULT_LOCK_WAIT_SECONDS = 300.0
_LOCK_WAIT_OPTION = typer.Option(
    "--lock-wait",
    min=0,
    help="PostgreSQL: seconds to wait while another run holds the migration lock (it is named meanwhile), then exit 1 "
    "with nothing applied.",
)


def _say_lock_wait(holder: LockHolder | None, waited: float) -> None:
    """`kit.migrations`' report while a run waits for another's migration lock."""
    who = holder.describe() if holder is not None else "a backend that has just let it go"
    err_console.print(f"[yellow]waiting[/] ({waited:.0f} s) for the migration lock, held by {who}")


def _say_step_wait(statement: str, blockers: tuple[LockHolder, ...], waited: float) -> None:
    """`kit.migrations`' report while a revision's statement waits for other backends (a concurrent index build waits for
    every older transaction, a backup's included)."""
    who = "; ".join(blocker.describe() for blocker in blockers) or "a backend that has just let go"
    err_console.print(
        f"[yellow]waiting[/] ({waited:.0f} s): {statement} waits for {who}. It goes on once that ends; to go on sooner, "
        "end it (SELECT pg_terminate_backend(<pid>)) or stop this run and migrate after it"
    )


def _say_step(revision: str, message: str, upgraded: bool, seconds: float) -> None:
    """`kit.migrations`' report of each revision a run applies or reverts."""
    console.print(f"  {'applied' if upgraded else 'reverted'} {revision}: {message} ({seconds:.1f} s)")


def _migrate(settings: Settings, action: str, revision: str, lock_wait: float) -> str:
    """Run `db upgrade`/`db downgrade`'s migration (each revision, any wait for the lock and any statement that waits
    for other backends said as it happens); the revision(s) the database is at then, read in the same runtime. Exit 1
    when another run kept the lock too long."""
    from tradestack.kit import migrations

    async def work(db: Any) -> tuple[str, ...]:
        await migrations.run(
            db.engine, action, revision, lock_wait=lock_wait, on_lock_wait=_say_lock_wait, on_step=_say_step,
            on_step_wait=_say_step_wait,
        )  # fmt: skip
        return await migrations.current_revisions(db.engine)

    try:
        return ", ".join(_run(settings, work)) or "base"
    except migrations.MigrationLockBusyError as exc:
        raise _fail(str(exc), code=1) from None


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    expand_only: Annotated[
        bool,
        typer.Option(
            "--expand-only",
            help="Refuse (exit 1, nothing applied) when a pending migration drops, renames or retypes what the running "
            "version reads, or adds a NOT NULL column without a default: the release step of `tradestack deploy`.",
        ),
    ] = False,
    allow_contract: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-contract",
            help="With --expand-only: a revision whose contract steps you checked no running version needs (repeatable).",
        ),
    ] = None,
    lock_wait: Annotated[float, _LOCK_WAIT_OPTION] = DEFAULT_LOCK_WAIT_SECONDS,
) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from tradestack.kit import migrations

    settings = load_settings()
    if expand_only:
        if revision != "head":
            raise _fail("--expand-only judges every migration up to head: leave out REVISION")
        allowed = frozenset(allow_contract or ())
        current = _run(settings, lambda db: migrations.current_revisions(db.engine))
        try:
            steps = migrations.contract_steps_pending(current, allowed)
        except ValueError as exc:
            raise _fail(str(exc), code=1) from None
        if steps:
            for step in steps:
                err_console.print(f"[red]✗[/] {step.revision}: {step.why}" + (f": {step.statement}" if step.statement else ""))
            revisions = sorted({step.revision for step in steps})
            raise _fail(
                f"migration refused: {', '.join(revisions)} not expand-only (contract steps while the old version still "
                "runs); nothing applied. Ship contract steps in a later release, once no running version reads what they "
                "remove, then allow them by name: --allow-contract " + " --allow-contract ".join(revisions),
                code=1,
            )
        for step in migrations.blocking_index_builds_pending(current):  # expand-only, but order entry waits meanwhile
            err_console.print(f"[yellow]![/] {step.revision}: {step.why}: {step.statement}")
        pending = migrations.pending_revisions(current) if current else ["(all)"]
        console.print(f"expand-only: {', '.join(pending) or 'nothing pending'}")
    console.print(f"[green]upgraded[/]: database at {_migrate(settings, 'upgrade', revision, lock_wait)}")


@db_app.command("downgrade", context_settings={"ignore_unknown_options": True})  # REVISION may be -1
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision: an id, -1 for one step, or base for all.")],
    lock_wait: Annotated[float, _LOCK_WAIT_OPTION] = DEFAULT_LOCK_WAIT_SECONDS,
) -> None:
    """Revert migrations down to REVISION."""
    console.print(f"[yellow]downgraded[/]: database at {_migrate(load_settings(), 'downgrade', revision, lock_wait)}")


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
    from tradestack.audit.schemas import VerifyReport
    from tradestack.audit.service import AuditService

    settings = load_settings()

    async def check(runtime: Any) -> tuple[VerifyReport, tuple[int, float]]:
        audit = AuditService(runtime.database, runtime.clock)
        return await audit.verify(), await audit.backlog()

    report, (waiting, oldest_age) = _run_runtime(settings, check)
    if not report.ok:
        raise _fail(f"audit log is NOT intact: {report.problem}", code=1)
    console.print(f"[green]audit log intact[/]: {report.checked} rows, head hash {report.head_hash or '-'}")
    if report.anonymised:
        console.print(f"{report.anonymised} of them anonymised (personal fields erased by retention)")
    if waiting:
        console.print(
            f"{waiting} entries wait in the outbox to be chained (oldest {oldest_age:.1f} s): "
            "a running API process chains them; see audit_outbox_backlog"
        )
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


@check_app.command("integrity")
def check_integrity_command() -> None:
    """Journal zero-sum per currency, positions = fold of fills, orders = fold of events, balances = fold of journal.

    Also that every fill is recorded by its order's events. Exits 1 naming each problem.
    """
    from tradestack.ops.integrity import check_integrity

    report = _run(load_settings(), check_integrity)
    summary = ", ".join(f"{count} {what}" for what, count in report.checked.items())
    if not report.ok:
        for problem in report.problems:
            err_console.print(f"[red]✗[/] {problem}")
        raise _fail(f"integrity check FAILED ({len(report.problems)} problem(s) shown; checked {summary})", code=1)
    console.print(f"[green]integrity check passed[/]: {summary}")


@check_app.command("dependencies")
def check_dependencies_command(
    marketdata: Annotated[
        bool, typer.Option("--marketdata", help="Also require fresh market data (a feed published recently).")
    ] = False,
) -> None:
    """What a worker process needs answers: database, cache, schema at this version's head (and fresh market data).

    The container healthcheck of `serve engine` and `serve marketdata` (deploy/compose): exit 1 naming each failure.
    """
    from tradestack.ops.service import HealthService

    async def probe(runtime: Any) -> dict[str, Any]:
        return await HealthService(runtime).dependencies(marketdata=marketdata)

    checks = _run_runtime(load_settings(), probe)
    failed = {name: check for name, check in checks.items() if not check.ok}
    for name, check in checks.items():
        console.print(f"{name}: {'[green]ok[/]' if check.ok else '[red]failed[/]'}{f' ({check.detail})' if check.detail else ''}")
    if failed:
        raise _fail(f"dependencies failing: {', '.join(failed)}", code=1)


def _import_demo_on_first_start(settings: Settings) -> None:
    from tradestack.marketdata.datasets import DEMO

    console.print("first start: importing the shipped price history (once)")
    _import_datasets(settings, list(DEMO), brief=True)


def _import_datasets(settings: Settings, names: list[str], *, brief: bool = False) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tradestack.marketdata import datasets
    from tradestack.marketdata.flows import import_datasets

    unknown = [n for n in names if n not in datasets.DATASETS]
    if unknown:
        raise _fail(f"unknown data set(s) {', '.join(unknown)}: use {', '.join(datasets.DATASETS)}")
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        reading = progress.add_task("reading packaged files", total=len(names))
        loaded = []
        for name in names:
            loaded.append(datasets.load(name))
            progress.advance(reading)
        storing = progress.add_task(
            "storing bars", total=sum(ds.rows + sum(s.dropped for s in ds.series.values()) for ds in loaded)
        )
        result = _run_runtime(settings, lambda runtime: import_datasets(runtime, loaded, lambda n: progress.advance(storing, n)))
    if brief:
        _print_import_summary(result)
    else:
        _print_import(result)
    return result


def _print_import(result: Any) -> None:
    table = Table("symbol", "res", "source", "rows", "new", "same", "conflict", "refused", "checks")
    for s in result.series:
        table.add_row(
            s.symbol, s.resolution.value, s.source, str(s.rows), str(s.counts.inserted), str(s.counts.unchanged),
            str(s.counts.conflicting), str(len(s.rejected)), s.report.summary().split("; ", 1)[-1],
        )  # fmt: skip
    console.print(table)
    for s in result.series:
        for reason in s.rejected[:5]:
            console.print(f"[yellow]refused[/] {s.symbol} {s.resolution.value}: {reason}")
        if len(s.rejected) > 5:
            console.print(f"[yellow]refused[/] {s.symbol} {s.resolution.value}: … {len(s.rejected) - 5} more")
    console.print(
        f"[green]{result.inserted} bars stored[/], {result.unchanged} already present, "
        f"{result.conflicting} conflicting (kept as stored), {result.rejected} rows refused"
    )


@data_app.command("import")
def data_import(
    sources: Annotated[list[str] | None, typer.Argument(help="Data sets to import [default: all of them].")] = None,
) -> None:
    """Import shipped price history (validated; re-importing changes nothing). `data sources` lists them."""
    from tradestack.marketdata.datasets import DATASETS

    _import_datasets(load_settings(), list(sources or DATASETS))


@data_app.command("sources")
def data_sources() -> None:
    """List the data sets that ship with the packages."""
    from tradestack.marketdata.datasets import DATASETS

    table = Table("name", "package", "licence", "what")
    for dataset in DATASETS.values():
        table.add_row(dataset.name, dataset.package, dataset.licence, dataset.description)
    console.print(table)


@data_app.command("list")
def data_list() -> None:
    """List the stored series: symbol, resolution, bars, first and last."""
    from tradestack.marketdata.service import MarketDataService

    found = _run_runtime(load_settings(), lambda runtime: MarketDataService(runtime).series())
    table = Table("symbol", "resolution", "bars", "first (UTC)", "last (UTC)")
    for s in found:
        table.add_row(s.symbol, s.resolution.value, str(s.bars), s.first.isoformat(), s.last.isoformat())
    console.print(table)


def _import_user_file(
    path: Path,
    *,
    parquet: bool,
    symbol: str | None,
    resolution: str | None,
    replace: bool,
    calendar: str,
    instrument: dict[str, Any],
) -> None:
    from decimal import Decimal, InvalidOperation

    from tradestack.core.errors import TradestackError
    from tradestack.domain.instruments import Instrument, InstrumentKind
    from tradestack.domain.marketdata import Timeframe
    from tradestack.domain.validation import Calendar
    from tradestack.marketdata.files import BarFileError, read_bars_csv, read_bars_parquet
    from tradestack.marketdata.flows import import_file

    settings = load_settings()
    try:
        tf = Timeframe.parse(resolution) if resolution else None
        chosen_calendar = Calendar(calendar)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if not path.is_file():
        raise _fail(f"{path}: no such file")
    try:
        parsed = (read_bars_parquet if parquet else read_bars_csv)(path, symbol=symbol, resolution=tf)
    except BarFileError as exc:
        raise _fail("\n  ".join([f"{path.name} cannot be imported:", *exc.errors])) from None
    create = None
    given = {k: v for k, v in instrument.items() if v is not None}
    if given:
        missing = [k for k in ("kind", "venue", "quote_currency", "tick_size", "lot_size") if k not in given]
        if missing:
            raise _fail(f"to describe a new instrument also give: {', '.join('--' + m.replace('_', '-') for m in missing)}")
        if len(parsed.symbols) != 1:
            raise _fail("instrument options describe one symbol; this file holds several")
        try:
            kind = InstrumentKind(given["kind"])
            create = Instrument(
                symbol=parsed.symbols[0], kind=kind, venue=given["venue"], name=given.get("name") or parsed.symbols[0],
                quote_currency=given["quote_currency"], base_currency=given.get("base_currency"),
                tick_size=Decimal(given["tick_size"]), lot_size=Decimal(given["lot_size"]),
                tradable=kind.value != "index",
            )  # fmt: skip
        except (ValueError, InvalidOperation, KeyError) as exc:
            raise _fail(f"instrument options: {exc}") from None
    try:
        result = _run_runtime(
            settings,
            lambda runtime: import_file(runtime, parsed, calendar=chosen_calendar, replace=replace, create=create),
        )
    except TradestackError as exc:
        raise _fail(exc.detail) from None
    if parsed.resolution_inferred:
        console.print(f"resolution inferred from the timestamps: {parsed.resolution.value}")
    _print_import(result)


_SYMBOL_OPTION = typer.Option(help="Symbol of every row (when the file has no symbol column).")
_RESOLUTION_OPTION = typer.Option(help="1m, 5m, 15m, 1h or 1d [default: inferred from the timestamps].")
_REPLACE_OPTION = typer.Option("--replace", help="Overwrite bars already stored with other values.")
_CALENDAR_OPTION = typer.Option(help="weekdays (equities, FX) or always (crypto): how gaps are counted.")


@data_app.command("retention")
def data_retention(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what the policy would prune and anonymise.")] = False,
) -> None:
    """Apply the retention policy: prune fine bars kept in coarser ones, anonymise long-deactivated users (audited)."""
    from tradestack.audit.service import after_commit
    from tradestack.ops.retention import apply_retention

    async def work(runtime: Any) -> Any:
        report = await apply_retention(runtime, dry_run=dry_run)
        await after_commit(runtime)
        return report

    settings = load_settings()
    report = _run_runtime(settings, work)
    verb = "would prune" if dry_run else "pruned"
    table = Table("symbol", "resolution", "older than (UTC)", "kept in", "bars")
    for prune in report.pruned:
        table.add_row(prune.symbol, prune.resolution, prune.before.isoformat(), prune.covered_by, str(prune.bars))
    console.print(table)
    console.print(f"{verb} {report.bars} bars (policy {settings.retention_bar_days} days)")
    verb = "would anonymise" if dry_run else "anonymised"
    console.print(
        f"{verb} {len(report.anonymised)} users deactivated over {settings.retention_anonymise_after_days} days ago"
        + (f": {', '.join(report.anonymised)}" if report.anonymised else "")
    )
    if not dry_run and report.anonymised:
        console.print(f"erased the personal fields of {report.audit_personal_erased} audit entries (the chain still verifies)")


@data_app.command("import-csv")
def data_import_csv(
    path: Annotated[Path, typer.Argument(help="CSV with ts/date, open, high, low, close[, volume][, symbol].")],
    symbol: Annotated[str | None, _SYMBOL_OPTION] = None,
    resolution: Annotated[str | None, _RESOLUTION_OPTION] = None,
    replace: Annotated[bool, _REPLACE_OPTION] = False,
    calendar: Annotated[str, _CALENDAR_OPTION] = "weekdays",
    kind: Annotated[str | None, typer.Option(help="New instrument: equity, fx, crypto or index.")] = None,
    venue: Annotated[str | None, typer.Option(help="New instrument: venue code (NASDAQ, NYSE, ASX, NSE, FX, CRYPTO).")] = None,
    quote_currency: Annotated[str | None, typer.Option(help="New instrument: quote currency.")] = None,
    base_currency: Annotated[str | None, typer.Option(help="New instrument (FX, crypto): base currency.")] = None,
    tick_size: Annotated[str | None, typer.Option(help="New instrument: tick size.")] = None,
    lot_size: Annotated[str | None, typer.Option(help="New instrument: lot size.")] = None,
    name: Annotated[str | None, typer.Option(help="New instrument: name.")] = None,
) -> None:
    """Import bars from your own CSV file: unreadable rows are reported by line, rows failing the checks by time."""
    _import_user_file(
        path, parquet=False, symbol=symbol, resolution=resolution, replace=replace, calendar=calendar,
        instrument={"kind": kind, "venue": venue, "quote_currency": quote_currency, "base_currency": base_currency,
                    "tick_size": tick_size, "lot_size": lot_size, "name": name},
    )  # fmt: skip


@data_app.command("import-parquet")
def data_import_parquet(
    path: Annotated[Path, typer.Argument(help="Parquet with ts, open, high, low, close[, volume][, symbol].")],
    symbol: Annotated[str | None, _SYMBOL_OPTION] = None,
    resolution: Annotated[str | None, _RESOLUTION_OPTION] = None,
    replace: Annotated[bool, _REPLACE_OPTION] = False,
    calendar: Annotated[str, _CALENDAR_OPTION] = "weekdays",
) -> None:
    """Import bars from a Parquet file (such as one written by `data export`)."""
    _import_user_file(path, parquet=True, symbol=symbol, resolution=resolution, replace=replace, calendar=calendar, instrument={})


@data_app.command("export")
def data_export(
    symbol: Annotated[str, typer.Argument(help="Symbol to export.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")],
    resolution: Annotated[str, typer.Option(help="Stored resolution to export.")] = "1d",
    start: Annotated[str | None, typer.Option(help="From this time (ISO 8601, inclusive).")] = None,
    end: Annotated[str | None, typer.Option(help="Until this time (ISO 8601, exclusive).")] = None,
) -> None:
    """Export a stored series to Parquet (exact decimals, UTC timestamps)."""
    from datetime import UTC, datetime

    from tradestack.core.errors import TradestackError
    from tradestack.domain.marketdata import Timeframe
    from tradestack.marketdata.flows import export_parquet

    def when(text: str | None) -> datetime | None:
        if text is None:
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise _fail(f"not an ISO 8601 time: {text!r}") from None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    try:
        tf = Timeframe.parse(resolution)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    settings = load_settings()
    try:
        count = _run_runtime(settings, lambda runtime: export_parquet(runtime, symbol, tf, out, start=when(start), end=when(end)))
    except TradestackError as exc:
        raise _fail(exc.detail) from None
    console.print(f"[green]{count} bars[/] of {symbol.upper()} {tf.value} written to {out}")


# -- issue 10: password reset from the command line (lost demo password) ---------------------------


@user_app.command("reset-password")
def user_reset_password(email: Annotated[str, typer.Argument(help="Email of the user.")]) -> None:
    """Give a user a one-time temporary password, to be changed at their next sign-in (audited)."""
    from tradestack.core.errors import TradestackError
    from tradestack.identity.service import Caller, identity_session

    settings = load_settings()

    async def reset(runtime: Any) -> str:
        async with identity_session(runtime, Caller(user_agent="tradestack cli")) as service:
            user = await service.user_by_email(email)
            return await service.reset_password(user.id, actor=None)

    try:
        temporary = _run_runtime(settings, reset)
    except TradestackError as exc:
        raise _fail(exc.detail) from exc
    console.print(f"temporary password for {email.lower()}: [bold]{temporary}[/]")
    console.print("It works once: sign in with it, then set a new one with POST /api/auth/password.")


NOT_READY_NOTICE_SECONDS = 30.0


def _announce_when_serving(host: str, port: int, timeout: float = 300.0, on_ready: Callable[[], object] | None = None) -> None:
    """Print "serving on ..." once the server answers /api/ready with 200, not before (a background thread);
    then run `on_ready`. A server that answers but is still not ready after `NOT_READY_NOTICE_SECONDS` is
    announced with a pointer to /api/ready (which names what is missing)."""
    import threading
    import time
    import urllib.error
    import urllib.request

    probe_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared, not bound
    probe = f"http://{probe_host}:{port}/api/ready"

    def wait() -> None:
        deadline = time.monotonic() + timeout
        answered_at: float | None = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(probe, timeout=1) as response:  # our own http URL
                    if response.status == 200:
                        console.print(f"serving on [bold]http://{host}:{port}[/]  (Ctrl+C to stop)")
                        if on_ready is not None:
                            on_ready()
                        return
            except urllib.error.HTTPError:  # 503: up, not ready yet
                answered_at = answered_at or time.monotonic()
                if time.monotonic() - answered_at > NOT_READY_NOTICE_SECONDS:
                    console.print(f"serving on [bold]http://{host}:{port}[/], not ready yet: see /api/ready")
                    return
            except OSError:
                pass
            time.sleep(0.05)

    threading.Thread(target=wait, name="announce-serving", daemon=True).start()


def _print_import_summary(result: Any) -> None:
    """Two lines instead of the per-series table: what was stored, and how many shipped rows were skipped."""
    console.print(f"[green]{result.inserted} bars stored[/] in {len(result.series)} series ({result.unchanged} already present)")
    if result.rejected:
        console.print(f"{result.rejected} rows of the shipped files skipped: see `tradestack data report`")


@data_app.command("report")
def data_report(
    sources: Annotated[list[str] | None, typer.Argument(help="Data sets to check [default: all of them].")] = None,
) -> None:
    """List the rows of the shipped data sets that are not imported, by file and line, and why."""
    from tradestack.marketdata import datasets

    names = list(sources or datasets.DATASETS)
    unknown = [n for n in names if n not in datasets.DATASETS]
    if unknown:
        raise _fail(f"unknown data set(s) {', '.join(unknown)}: use {', '.join(datasets.DATASETS)}")
    total = 0
    for name in names:
        for series in datasets.load(name).series.values():
            for row in series.rejected:
                total += 1
                console.print(f"{name} {row.source}: {row.reason}")
    console.print(f"{total} rows skipped in {len(names)} data set(s)")


# --- issue 14: backups -------------------------------------------------------------------------
backup_app = typer.Typer(
    help="Backups: create, list, verify, restore, prune (see docs/runbooks/disaster-recovery.md).", no_args_is_help=True
)
app.add_typer(backup_app, name="backup")
BackupDirOption = Annotated[
    Path | None, typer.Option("--dir", help="Where backups live (default <data_dir>/backups).", show_default=False)
]


def _progress() -> Callable[[str], None]:
    return lambda message: err_console.print(f"[dim]... {message}[/]")


def _checked_backup_command(
    backup_ref: str, directory: Path | None, work: Callable[[Settings, Any], Awaitable[Any]], *, failed: str, passed: str
) -> None:
    """Resolve the backup, run `work` (verify or restore) and report its problems, exiting 1 on any."""
    from tradestack.ops.backup import BackupError, backups_root, resolve_backup

    settings = load_settings()
    try:
        backup = resolve_backup(backups_root(settings, directory), backup_ref)
        result = _run_runtime(settings, lambda _runtime: work(settings, backup))
    except BackupError as exc:
        raise _fail(exc.detail, code=1) from None
    if not result.ok:
        for problem in result.problems:
            err_console.print(f"  - {problem}")
        raise _fail(f"backup {backup.id} {failed}", code=1)
    console.print(f"[green]backup {backup.id} {passed}[/]: {result.checked.get('rows', 0)} rows, integrity and audit chain ok")


@backup_app.command("create")
def backup_create(
    directory: BackupDirOption = None,
    encrypt: Annotated[bool, typer.Option(help="Encrypt with TRADESTACK_ENCRYPTION_KEY (AES-256-GCM).")] = False,
    copy_to: Annotated[
        str | None,
        typer.Option(help="Also copy the finished backup to a second location: a directory (or mount) or s3://BUCKET/PREFIX."),
    ] = None,
) -> None:
    """Back up the configured database (consistent while the API serves)."""
    from tradestack.ops.backup import BackupError, backups_root, create_backup

    settings = load_settings()
    try:
        backup = _run_runtime(
            settings,
            lambda runtime: create_backup(
                settings, backups_root(settings, directory), encrypt=encrypt, clock=runtime.clock,
                copy_to=copy_to if copy_to is None or copy_to.startswith("s3://") else Path(copy_to),
                progress=_progress(),
            ),
        )  # fmt: skip
    except BackupError as exc:
        raise _fail(exc.detail, code=1) from None
    facts = backup.manifest["fingerprint"]
    rows = sum(table["rows"] for table in facts["tables"].values())
    console.print(f"[green]backup {backup.id}[/] written to {backup.path}: {rows} rows, audit head {facts['audit_head'] or '-'}")


@backup_app.command("list")
def backup_list(directory: BackupDirOption = None) -> None:
    """Backups, oldest first, with their verification state."""
    from tradestack.ops.backup import backups_root, list_backups

    table = Table("id", "created (UTC)", "dialect", "schema", "encrypted", "bytes", "verified")
    for backup in list_backups(backups_root(load_settings(), directory)):
        verified = "-" if backup.verification is None else ("ok" if backup.verified else "FAILED")
        size = sum(entry["bytes"] for entry in backup.manifest["files"])
        table.add_row(
            backup.id, backup.manifest["created_at"], backup.manifest["dialect"], str(backup.manifest["schema_revision"]),
            "yes" if backup.manifest["encrypted"] else "no", str(size), verified,
        )  # fmt: skip
    console.print(table)


@backup_app.command("verify")
def backup_verify(
    backup_ref: Annotated[str, typer.Argument(metavar="BACKUP", help="Backup id, path, or 'latest'.")] = "latest",
    directory: BackupDirOption = None,
) -> None:
    """Re-check checksums, restore into a scratch database, compare the manifest, run check integrity."""
    from tradestack.ops.backup import verify_backup

    _checked_backup_command(
        backup_ref, directory, lambda settings, backup: verify_backup(settings, backup, progress=_progress()),
        failed="FAILED verification", passed="verified",
    )  # fmt: skip


@backup_app.command("restore")
def backup_restore(
    backup_ref: Annotated[str, typer.Argument(metavar="BACKUP", help="Backup id, path, or 'latest'.")] = "latest",
    directory: BackupDirOption = None,
    force: Annotated[bool, typer.Option(help="Replace a target database that holds data.")] = False,
) -> None:
    """Restore into the configured database: staged, checked, then swapped in atomically. Stop the API first."""
    from tradestack.ops.backup import restore_backup

    _checked_backup_command(
        backup_ref, directory, lambda settings, backup: restore_backup(settings, backup, force=force, progress=_progress()),
        failed="was NOT restored: it failed its checks; the target is unchanged", passed="restored",
    )  # fmt: skip


@backup_app.command("prune")
def backup_prune(
    directory: BackupDirOption = None,
    daily: Annotated[int, typer.Option(min=0, help="Keep the newest backup of this many days.")] = 7,
    weekly: Annotated[int, typer.Option(min=0, help="... of this many ISO weeks.")] = 4,
    monthly: Annotated[int, typer.Option(min=0, help="... of this many months.")] = 12,
    dry_run: Annotated[bool, typer.Option(help="Only print what would be deleted.")] = False,
) -> None:
    """Delete backups outside the retention policy; the newest and the newest verified are always kept."""
    from tradestack.ops.backup import backups_root, prune_backups

    doomed = prune_backups(backups_root(load_settings(), directory), daily=daily, weekly=weekly, monthly=monthly, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for backup in doomed:
        console.print(f"{verb} {backup.id}")
    console.print(f"{len(doomed)} backup(s) {verb}")


# --- issue 14: migrate --------------------------------------------------------------------------
migrate_app = typer.Typer(help="Move an installation's data to another database.", no_args_is_help=True)
app.add_typer(migrate_app, name="migrate")


@migrate_app.command("to-postgres")
def migrate_to_postgres_command(
    target: Annotated[str, typer.Argument(help="Empty PostgreSQL database: postgresql+asyncpg://user@host/db")],
    dry_run: Annotated[bool, typer.Option(help="Only report what would be moved.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="Rows per committed batch.")] = 5000,
) -> None:
    """Copy every table of this embedded installation to PostgreSQL, then reconcile (resumable)."""
    from rich.progress import Progress

    from tradestack.ops.migrate import MigrationError, migrate_to_postgres

    settings = load_settings()
    with Progress(console=err_console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=total)
            bar.update(tasks[table], completed=done)

        try:
            report = _run_runtime(
                settings,
                lambda _runtime: migrate_to_postgres(settings, target, dry_run=dry_run, batch=batch_size, progress=progress),
            )
        except MigrationError as exc:
            raise _fail(exc.detail, code=1) from None
    if dry_run:
        for name, rows in report.planned.items():
            console.print(f"{name}: {rows} rows" + (f" ({report.copied.get(name, 0)} already copied)" if report.resumed else ""))
        console.print(f"dry run: {sum(report.planned.values())} rows in {len(report.planned)} tables would be moved")
        return
    if not report.ok:
        for problem in report.problems:
            err_console.print(f"  - {problem}")
        raise _fail("the target did NOT reconcile with the source", code=1)
    resumed = " (resumed)" if report.resumed else ""
    console.print(
        f"[green]migrated{resumed}[/]: {sum(report.copied.values())} rows in {len(report.copied)} tables; counts, checksums, "
        f"journal sums, audit head {report.audit_head or '-'} and check integrity all match"
    )


# --- issue 14: disaster-recovery drill ---------------------------------------------------------
dr_app = typer.Typer(help="Disaster recovery: rehearse point-in-time recovery and measure RTO/RPO.", no_args_is_help=True)
app.add_typer(dr_app, name="dr")


@dr_app.command("drill")
def dr_drill(
    traffic_seconds: Annotated[float, typer.Option(min=1, max=3600, help="Seconds of writes around the target time.")] = 4.0,
    keep: Annotated[bool, typer.Option(help="Keep the drill's clusters and repository for inspection.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the measured report as JSON.")] = False,
    replica: Annotated[
        bool, typer.Option("--replica", help="Instead: crash a primary under traffic, promote its synchronous replica.")
    ] = False,
) -> None:
    """PITR rehearsal with pgBackRest on a throwaway cluster: backup, write, restore to a time, verify, measure.

    With --replica: failover to a synchronous streaming replica; every acknowledged order must survive (RPO 0).
    """
    from tradestack.api.app import create_app
    from tradestack.ops.drill import DrillError, describe, run_drill

    settings = load_settings()
    if replica:
        _replica_drill(settings, create_app, traffic_seconds=traffic_seconds, keep=keep, as_json=as_json)
        return
    try:
        report = asyncio.run(
            run_drill(
                settings,
                create_app,
                traffic_seconds=traffic_seconds,
                keep=keep,
                say=lambda m: err_console.print(f"[dim]... {m}[/]"),
            )
        )
    except DrillError as exc:
        raise _fail(exc.detail, code=1) from None
    facts = describe(report)
    if _drill_outcome(facts, report.ok, report.problems, as_json=as_json, failure="the drill's restore did NOT verify"):
        console.print(
            f"[green]drill passed[/]: RTO {facts['rto_seconds']} s (restore to a promoted cluster), "
            f"RPO {facts['rpo_seconds']} s (target time minus the last recovered commit); "
            f"heartbeats {facts['heartbeats_recovered']}/{facts['heartbeats_acknowledged_before_target']} acknowledged before T, "
            f"orders {facts['orders_recovered']}/{facts['orders_acknowledged_before_target']}; integrity and audit chain ok"
        )


def _drill_outcome(facts: dict[str, Any], ok: bool, problems: list[str], *, as_json: bool, failure: str) -> bool:
    """Print a drill's JSON (when asked) and its problems; fail with `failure` when it did not pass; True = print the summary."""
    if as_json:
        typer.echo(json.dumps({**facts, "ok": ok, "problems": problems}))
    if not ok:
        for problem in problems:
            err_console.print(f"  - {problem}")
        raise _fail(failure, code=1)
    return not as_json


def _replica_drill(settings: Settings, app_factory: Any, *, traffic_seconds: float, keep: bool, as_json: bool) -> None:
    from tradestack.ops.drill import DrillError
    from tradestack.ops.replica_drill import describe, run_replica_drill

    try:
        report = asyncio.run(
            run_replica_drill(
                settings, app_factory, traffic_seconds=traffic_seconds, keep=keep,
                say=lambda m: err_console.print(f"[dim]... {m}[/]"),
            )
        )  # fmt: skip
    except DrillError as exc:
        raise _fail(exc.detail, code=1) from None
    facts = describe(report)
    failure = "the failover lost acknowledged data or did not verify"
    if _drill_outcome(facts, report.ok, report.problems, as_json=as_json, failure=failure):
        console.print(
            f"[green]failover drill passed[/]: RTO {facts['rto_seconds']} s (primary crash to a promoted replica), "
            f"RPO {facts['rpo_seconds']} s ({facts['acknowledged_lost']} acknowledged commits lost); heartbeats "
            f"{facts['heartbeats_recovered']}/{facts['heartbeats_acknowledged']} acknowledged, orders "
            f"{facts['orders_recovered']}/{facts['orders_acknowledged']}; integrity and audit chain ok"
        )


# -- release engineering (issue 13): smoke, loadtest, deploy -------------------------------------------
from tradestack.deploy.cli import register as _register_release_commands  # noqa: E402 - one block for the release commands

_register_release_commands(app)


# -- signals: the cross-sectional alpha and its model registry ------------------------------------

signals_app = typer.Typer(help="Signals: train, evaluate, list, show and promote alpha models.", no_args_is_help=True)
app.add_typer(signals_app, name="signals")


def _day(text: str | None, option: str) -> Any:
    from datetime import date

    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _fail(f"{option}: not an ISO date (YYYY-MM-DD): {text!r}") from None


def _signals_call(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(SignalService)`; typed errors become a clear message and exit code 2."""
    from tradestack.core.errors import TradestackError
    from tradestack.signals.service import SignalService

    try:
        return _run_runtime(settings, lambda runtime: work(SignalService(runtime)))
    except TradestackError as exc:
        raise _fail(exc.detail) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _print_evaluation(evaluation: Any) -> None:
    from tradestack.signals import report

    console.print(report.folds_table(evaluation))
    console.print(report.summary_table(evaluation))


def _fold_progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)


UniverseOption = Annotated[
    str | None, typer.Option("--universe", help="Comma-separated symbols [default: every equity with daily bars].")
]
HorizonOption = Annotated[int, typer.Option("--horizon", help="Label: forward return over this many days.")]
FromOption = Annotated[str | None, typer.Option("--from", help="First day of data used (YYYY-MM-DD).")]
ToOption = Annotated[str | None, typer.Option("--to", help="Last day of data used (YYYY-MM-DD).")]


@signals_app.command("evaluate")
def signals_evaluate(
    universe: UniverseOption = None,
    horizon: HorizonOption = 5,
    start: FromOption = None,
    end: ToOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Directory for report.json and report.png.")] = None,
) -> None:
    """Walk-forward evaluation of the LightGBM alpha against 20-day momentum and a no-skill model (nothing registered)."""
    from tradestack.signals import alpha, report

    settings = load_settings()
    symbols = universe.split(",") if universe else None
    panel = _signals_call(settings, lambda s: _panel_for(s, symbols, _day(start, "--from"), _day(end, "--to")))
    console.print(f"universe {', '.join(panel.symbols)}: {len(panel.dates)} days, {'OHLCV' if panel.has_ohlcv else 'close-only'}")
    with _fold_progress() as progress:
        task = progress.add_task("walk-forward folds", total=None)
        try:
            evaluation = alpha.evaluate(panel, horizon=horizon, progress=lambda i, n: progress.update(task, completed=i, total=n))
        except ValueError as exc:
            raise _fail(str(exc)) from None
    _print_evaluation(evaluation)
    target = out or settings.data_dir / "reports" / "alpha-evaluation"
    target.mkdir(parents=True, exist_ok=True)
    report.write_json(evaluation, target / "report.json")
    report.write_png(evaluation, target / "report.png")
    console.print(f"report written to {target / 'report.json'} and {target / 'report.png'}")


async def _panel_for(service: Any, symbols: list[str] | None, start: Any, end: Any) -> Any:
    return await service.panel(await service.universe(symbols), start=start, end=end)


@signals_app.command("train")
def signals_train(
    universe: UniverseOption = None,
    horizon: HorizonOption = 5,
    start: FromOption = None,
    end: ToOption = None,
    evaluate: Annotated[bool, typer.Option("--evaluate/--no-evaluate", help="Walk-forward evaluation first.")] = True,
    promote: Annotated[bool, typer.Option("--promote", help="Promote the new version right away.")] = False,
) -> None:
    """Train the alpha on stored daily bars, evaluate it walk-forward and register it (model, metadata, report)."""
    settings = load_settings()
    symbols = universe.split(",") if universe else None
    with _fold_progress() as progress:
        tasks: dict[str, Any] = {}

        def advance(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        trained = _signals_call(
            settings,
            lambda s: s.train(symbols=symbols, horizon=horizon, start=_day(start, "--from"), end=_day(end, "--to"),
                              evaluate=evaluate, progress=advance),
        )  # fmt: skip
    if trained.evaluation is not None:
        _print_evaluation(trained.evaluation)
    console.print(f"[green]registered[/] {trained.model.version} in {trained.directory}")
    if promote:
        _signals_call(settings, lambda s: s.promote(trained.model.version))
        console.print(f"[green]promoted[/] {trained.model.version}")


@signals_app.command("train-lob")
def signals_train_lob(
    snapshots: Annotated[int, typer.Option(help="Books to simulate (synthetic order-book simulator).")] = 30_000,
    horizon: Annotated[int, typer.Option(help="Predict the mid move over this many book updates.")] = 10,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 16,
    promote: Annotated[bool, typer.Option("--promote", help="Promote the new version right away.")] = False,
    lob: Annotated[str | None, typer.Option("--lob", help="Train on books saved by `data import-lob --name`.")] = None,
) -> None:
    """Train the order-book predictor walk-forward (logistic regression vs LightGBM, the better kept) and register it."""
    from tradestack.core.errors import TradestackError
    from tradestack.signals.service import PredictorService

    settings = load_settings()
    with console.status(f"simulating {snapshots} books, training walk-forward"):
        try:
            trained = _run_runtime(
                settings,
                lambda runtime: PredictorService(runtime).train(snapshots=snapshots, horizon=horizon, seed=seed, lob=lob),
            )
        except TradestackError as exc:
            raise _fail(exc.detail) from None
    evaluation = trained.evaluation
    table = Table("fold", *(f"{name} acc / bal. acc" for name in evaluation.overall), "majority baseline", title=(
        f"order-book predictor, mid move over {horizon} updates, {evaluation.snapshots} books "
        f"({evaluation.flat_fraction:.1%} flat, left out)"))  # fmt: skip
    rows = [(str(i + 1), fold) for i, fold in enumerate(evaluation.folds)] + [("overall", evaluation.overall)]
    for name, figures in rows:
        cells = [f"{f['accuracy']:.4f} / {f['balanced_accuracy']:.4f}" for f in figures.values()]
        table.add_row(name, *cells, f"{next(iter(figures.values()))['majority_baseline']:.4f}")
    console.print(table)
    console.print(
        f"kept: {evaluation.chosen}; OFI check: R² of {horizon}-update mid changes on their OFI = {evaluation.ofi_r2:.4f}"
    )
    console.print(f"[green]registered[/] {trained.model.version} in {trained.directory}")
    if promote:
        _signals_call(settings, lambda s: s.promote(trained.model.version))
        console.print(f"[green]promoted[/] {trained.model.version}")


@signals_app.command("list")
def signals_list() -> None:
    """Registered models, newest first, with their out-of-sample IC."""
    models = _signals_call(load_settings(), lambda s: s.models())
    table = Table("version", "kind", "created (UTC)", "promoted", "horizon", "symbols", "IC", "RankIC", "momentum IC")
    for m in models:
        model, momentum = m.metrics.get("model", {}), m.metrics.get("momentum", {})
        table.add_row(
            m.version, m.kind, m.created_at.isoformat(timespec="seconds"), "yes" if m.promoted else "", str(m.horizon),
            str(len(m.universe)), _num(model.get("ic")), _num(model.get("rank_ic")), _num(momentum.get("ic")),
        )  # fmt: skip
    console.print(table)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@signals_app.command("show")
def signals_show(version: Annotated[str, typer.Argument(help="Model version (see `signals list`).")]) -> None:
    """One model: metadata, and its walk-forward report when it was evaluated."""
    model, metadata, directory = _signals_call(load_settings(), lambda s: s.model(version))
    console.print(f"[bold]{model.version}[/] ({model.kind}){' [green]promoted[/]' if model.promoted else ''}")
    console.print(f"files: {directory}")
    console.print(
        f"universe: {', '.join(model.universe)}; horizon {model.horizon} days; window {' to '.join(model.training_window)}"
    )
    console.print(f"data fingerprint {model.data_fingerprint}; libraries {metadata.get('libraries')}")
    if metadata.get("source"):
        console.print(f"trained on {metadata['source']}; model type {metadata.get('model_type')}")
    if metadata.get("evaluation"):
        for name, figures in metadata["evaluation"]["overall"].items():
            shown = ", ".join(f"{k} {_num(v)}" for k, v in figures.items())
            console.print(f"{name}: {shown}")


@signals_app.command("promote")
def signals_promote(version: Annotated[str, typer.Argument(help="Model version to serve (an older one rolls back).")]) -> None:
    """Serve VERSION from now on (audited; the previous one stays registered for rollback)."""
    model, previous = _signals_call(load_settings(), lambda s: s.promote(version))
    console.print(f"[green]promoted[/] {model.version} (previously {previous or 'none'})")


FIRST_START_ROUNDS = 50
"""Boosting rounds of the model `up` trains on first start (a few seconds); `signals train` uses more."""


@data_app.command("import-lob")
def data_import_lob(
    file: Annotated[Path, typer.Argument(help="CSV of order events: timestamp, order_id, side, price, volume, action.")],
    name: Annotated[str | None, typer.Option(help="Name to save the snapshots under [default: the file's stem].")] = None,
    depth: Annotated[int, typer.Option(help="Levels a side in each snapshot.")] = 10,
    trades: Annotated[
        Path | None, typer.Option(help="CSV of trades: timestamp, price, amount, side (buy/sell, the aggressor).")
    ] = None,
) -> None:
    """Rebuild L2 snapshots from order-by-order events (created/changed/deleted) for `signals train-lob --lob NAME`."""
    import re

    from tradestack.signals import lob_import

    if not file.is_file():
        raise _fail(f"{file}: no such file")
    label = name or file.stem
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", label):
        raise _fail(f"--name: use letters, digits, '.', '_' or '-' (at most 64), got {label!r}")
    if not 1 <= depth <= 50:
        raise _fail(f"--depth must be between 1 and 50, got {depth}")
    if trades is not None and not trades.is_file():
        raise _fail(f"--trades {trades}: no such file")
    settings = load_settings()
    lines = sum(1 for _ in file.open()) - 1
    with _fold_progress() as progress:
        task = progress.add_task("events", total=max(lines, 0))
        try:
            rebuilt = lob_import.read(file, depth=depth, progress=lambda n: progress.advance(task, n))
        except ValueError as exc:
            raise _fail(str(exc)) from None
        progress.update(task, completed=lines)
    for reason in rebuilt.refused[:10]:
        err_console.print(f"[yellow]refused[/] {reason}")
    if len(rebuilt.refused) > 10:
        err_console.print(f"[yellow]refused[/] ... {len(rebuilt.refused) - 10} more")
    if not rebuilt.levels:
        raise _fail(f"no snapshot with {depth} levels on both sides could be built from {file}")
    traded = None
    if trades is not None:
        try:
            traded = lob_import.read_trades(trades, rebuilt.timestamps)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        for reason in traded.refused[:10]:
            err_console.print(f"[yellow]refused trade[/] {reason}")
        if len(traded.refused) > 10:
            err_console.print(f"[yellow]refused trade[/] ... {len(traded.refused) - 10} more")
    target = settings.data_dir / "lob" / f"{label}.npz"
    lob_import.save(rebuilt, target, traded)
    console.print(
        f"[green]{len(rebuilt.levels)} snapshots[/] of {depth} levels from {rebuilt.events} events "
        f"({len(rebuilt.refused)} rows refused) saved to {target}"
    )
    if traded is not None:
        console.print(
            f"trades: buy {sum(traded.buy):g} and sell {sum(traded.sell):g} traded across the snapshots "
            f"({len(traded.refused)} rows refused, {traded.after_last} after the last snapshot left out)"
        )


def _train_first_alpha(settings: Settings) -> None:
    """On first start, train and promote an alpha on the stored equities when none is registered (no evaluation: seconds).

    While it runs, the marker names this process (the API answers 409 "being trained" with Retry-After)."""
    from tradestack.core.errors import TradestackError
    from tradestack.signals.artifacts import clear_first_training, mark_first_training
    from tradestack.signals.service import SignalService

    async def first(runtime: Any) -> str | None:
        service = SignalService(runtime)
        if await service.models("alpha"):
            return None
        try:
            trained = await service.train(evaluate=False, rounds=FIRST_START_ROUNDS)
        except TradestackError as exc:
            return f"skipped: {exc.detail}"
        await service.promote(trained.model.version, via="first start")
        return trained.model.version

    mark_first_training(settings.data_dir, os.getpid())
    try:
        outcome = _run_runtime(settings, first)
    finally:
        clear_first_training(settings.data_dir)
    if outcome is not None:
        console.print(f"first start: alpha model {outcome}")


def _start_first_alpha() -> Any:
    """Train the first alpha in a child process beside the server (409 for signals until then)."""
    import subprocess

    return subprocess.Popen([sys.executable, "-m", "tradestack.cli", "signals", "first-start"])


@signals_app.command("first-start", hidden=True)
def signals_first_start() -> None:
    """Train and promote a first alpha when none is registered (what `up` runs in the background)."""
    _train_first_alpha(load_settings())


@serve_app.command("signals")
def serve_signals(
    interval: Annotated[float, typer.Option(help="Seconds between refreshes of the cached signals.")] = 60.0,
) -> None:
    """Keep the promoted model's signals computed in the shared cache (Redis) for every API worker."""
    settings = load_settings()
    if settings.redis_url is None:
        raise _fail("serve signals shares signals through Redis: set TRADESTACK_REDIS_URL (embedded mode computes in `up`)")
    from tradestack.kit.logging import configure_logging
    from tradestack.signals.tasks import run_signals

    configure_logging(settings.log_level, json=settings.log_json)
    with contextlib.suppress(KeyboardInterrupt):
        _serve_runtime(settings, lambda runtime: run_signals(runtime, interval))


# -- strategies on paper (issue 17) -------------------------------------------------------------------


@serve_app.command("strategies")
def serve_strategies() -> None:
    """Run every strategy deployed with /api/strategy on paper: quotes from the Redis bus, orders through order entry."""
    settings = load_settings()
    if settings.redis_url is None:
        raise _fail("serve strategies reads quotes on the Redis bus: set TRADESTACK_REDIS_URL (embedded mode runs them in `up`)")
    from tradestack.kit.logging import configure_logging
    from tradestack.strategy.runner import run_strategies

    configure_logging(settings.log_level, json=settings.log_json)
    with contextlib.suppress(KeyboardInterrupt):
        _serve_runtime(settings, run_strategies)


def main() -> None:
    """Entry point of the `tradestack` script."""
    app()


if __name__ == "__main__":
    main()


# -- backtests -------------------------------------------------------------------------------------


def _parse_params(texts: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise _fail(f"--param {text!r}: write it as name=value, e.g. --param fast=10")
        params[key.strip()] = value.strip()
    return params


def _parse_day(option: str, text: str | None) -> Any:
    from datetime import UTC, datetime, time

    if text is None:
        return None
    try:
        day = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"{option} {text!r} is not a date; use YYYY-MM-DD") from None
    if day.tzinfo is None:
        day = datetime.combine(day.date(), time(0), UTC) if len(text) <= 10 else day.replace(tzinfo=UTC)
    return day


def _backtest_bars(dataset_name: str | None, symbols: list[str], timeframe: Any) -> dict[str, Any]:
    """Bars of each symbol from the shipped data set that holds them (validated as `data import` does)."""
    from tradestack.marketdata import datasets

    names = [dataset_name] if dataset_name else list(datasets.DATASETS)
    if dataset_name and dataset_name not in datasets.DATASETS:
        raise _fail(f"unknown data set {dataset_name!r}: use {', '.join(datasets.DATASETS)}")
    found: dict[str, Any] = {}
    for name in names:
        loaded = datasets.load(name)
        for symbol in symbols:
            bars = loaded.bars.get((symbol, timeframe))
            if bars and symbol not in found:
                found[symbol] = bars
        if len(found) == len(symbols):
            break
    missing = [s for s in symbols if s not in found]
    if missing:
        where = f"data set {dataset_name}" if dataset_name else "the shipped data sets"
        raise _fail(f"no {timeframe.value} bars of {', '.join(missing)} in {where}; `tradestack data sources` lists them")
    return found


@backtest_app.command("run")
def backtest_run(
    strategy: Annotated[str, typer.Argument(help="Strategy name: sma_cross, bollinger, top_k (the promoted alpha model).")],
    symbols: Annotated[str, typer.Option("--symbols", help="Comma-separated symbols, e.g. AAPL,MSFT.")],
    start: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD, UTC) [default: first bar].")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day, included [default: last bar].")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Strategy parameter name=value (repeatable).")] = None,
    capital: Annotated[str, typer.Option(help="Starting cash in the account currency.")] = "100000",
    fees: Annotated[str, typer.Option(help="Commission in basis points of the notional, rounded to the cent.")] = "0",
    fee_minimum: Annotated[str, typer.Option(help="Smallest commission per order.")] = "0",
    slippage: Annotated[str, typer.Option(help="Slippage of market orders, in basis points.")] = "0",
    currency: Annotated[str, typer.Option(help="Account currency.")] = "USD",
    dataset: Annotated[
        str | None, typer.Option(help="Shipped data set to read [default: the first holding the symbols].")
    ] = None,
    timeframe: Annotated[str, typer.Option(help="Bar resolution.")] = "1d",
    output: Annotated[Path | None, typer.Option(help="Write the result (spec, metrics, fills, equity) as JSON here.")] = None,
    store: Annotated[bool, typer.Option(help="Keep the run in the database (GET /api/backtests).")] = True,
    tearsheet: Annotated[
        Path | None, typer.Option(help="Write the tearsheet (tearsheet.png, tearsheet.html) into this directory.")
    ] = None,
) -> None:
    """Run STRATEGY over the shipped bars of --symbols: fills at the next bar's open, fees, risk checks."""
    from decimal import Decimal, InvalidOperation

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tradestack.backtest.engine import BacktestConfig, run_backtest
    from tradestack.backtest.metrics import compute_metrics
    from tradestack.backtest.report import result_document
    from tradestack.domain.matching import FeeModel, SlippageModel
    from tradestack.strategy.api import StrategyError
    from tradestack.strategy.examples import build, needs_scores

    names, resolution, first, last = _backtest_request(symbols, timeframe, start, end)
    amounts: dict[str, Decimal] = {}
    for option, text in (("--capital", capital), ("--fees", fees), ("--fee-minimum", fee_minimum), ("--slippage", slippage)):
        try:
            amounts[option] = Decimal(text)
        except InvalidOperation:
            raise _fail(f"{option} {text!r} is not a number") from None
    bars = _backtest_bars(dataset, names, resolution)
    scores = _promoted_scores(bars, first, last) if needs_scores(strategy) else None
    try:
        chosen = build(strategy, names, _parse_params(param or []), scores=scores)
        config = BacktestConfig(
            capital=amounts["--capital"],
            currency=currency.upper(),
            fee=FeeModel(bps=amounts["--fees"], minimum=amounts["--fee-minimum"], places=2),
            slippage=SlippageModel(amounts["--slippage"]),
            allow_short=bool(getattr(chosen, "sells_short", False)),
        )
    except (StrategyError, ValueError) as exc:
        raise _fail(str(exc)) from None
    series = _series_between(bars, names, first, last, start, end)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task(f"{chosen.name} on {', '.join(names)}", total=sum(len(s) for s in series))
        try:
            result = run_backtest(chosen, series, config, progress=lambda done, total: bar.update(task, completed=done))
        except StrategyError as exc:
            raise _fail(str(exc)) from None
    metrics = compute_metrics(result)
    period = f"{series[0].bar(0).ts:%Y-%m-%d} .. {series[0].bar(len(series[0]) - 1).ts:%Y-%m-%d}"
    table = Table("metric", "value", title=f"{chosen.name} {', '.join(names)} {period}")
    for label, value in (
        ("bars", f"{result.bars}"),
        ("orders / fills", f"{len(result.orders)} / {len(result.trades)}"),
        ("start equity", f"{metrics.start_equity:,.2f} {config.currency}"),
        ("final equity", f"{metrics.final_equity:,.2f} {config.currency}"),
        ("fees paid", f"{metrics.fees_paid:,.2f} {config.currency}"),
        ("total return", f"{metrics.total_return:.2%}"),
        ("annual return", f"{metrics.annual_return:.2%}"),
        ("annual volatility", f"{metrics.annual_volatility:.2%}"),
        ("Sharpe", f"{metrics.sharpe:.2f}"),
        ("Sortino", f"{metrics.sortino:.2f}"),
        ("max drawdown", f"{metrics.max_drawdown:.2%} ({metrics.max_drawdown_duration_periods} bars under water at most)"),
        ("Calmar", f"{metrics.calmar:.2f}"),
        ("hit rate", f"{metrics.hit_rate:.1%} of {metrics.round_trips} exits"),
        ("turnover", f"{metrics.turnover:.2f}x average equity"),
        ("exposure", f"{metrics.exposure:.1%} of bars"),
    ):
        table.add_row(label, value)
    console.print(table)
    if output is not None:
        output.write_text(json.dumps(result_document(result, metrics), indent=1))
        console.print(f"result written to {output}")
    if tearsheet is not None:
        from tradestack.backtest import tearsheet as sheets

        png, page = sheets.write(
            sheets.Tearsheet.of_result(result, metrics, series, f"{chosen.name} {', '.join(names)} {period}"), tearsheet
        )
        console.print(f"tearsheet written to {png} and {page}")
    if store:
        from sqlalchemy.exc import SQLAlchemyError

        from tradestack.strategy.service import BacktestService

        settings = load_settings()
        params = _parse_params(param or [])
        try:
            source = {"dataset": dataset, "timeframe": resolution.value}
            run_id = _run_runtime(
                settings, lambda runtime: BacktestService(runtime).store(result, metrics, series, params, source)
            )
        except SQLAlchemyError as exc:
            message = str(exc).splitlines()[0]
            hint = "is the database migrated? `tradestack db upgrade`, or run with --no-store"
            raise _fail(f"the run was not stored ({message}); {hint}") from None
        console.print(f"stored as backtest [bold]{run_id}[/] (GET /api/backtests/{run_id})")


# -- backtests: sweep, tearsheet (issue 17) ---------------------------------------------------------


def _backtest_request(symbols: str, timeframe: str, start: str | None, end: str | None) -> tuple[list[str], Any, Any, Any]:
    """--symbols, --timeframe, --from and --to checked: the symbols, the resolution, the first and last day."""
    from tradestack.domain.marketdata import Timeframe

    names = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    if not names:
        raise _fail("--symbols: give one or more comma-separated symbols, e.g. AAPL")
    try:
        resolution = Timeframe.parse(timeframe)
    except ValueError as exc:
        raise _fail(f"--timeframe: {exc}") from None
    first, last = _parse_day("--from", start), _parse_day("--to", end)
    if first is not None and last is not None and last < first:
        raise _fail(f"--to {end} is before --from {start}")
    return names, resolution, first, last


def _backtest_series(symbols: str, dataset: str | None, timeframe: str, start: str | None, end: str | None) -> list[Any]:
    """The shipped bars of comma-separated `symbols` as `BarSeries` between --from and --to."""
    names, resolution, first, last = _backtest_request(symbols, timeframe, start, end)
    return _series_between(_backtest_bars(dataset, names, resolution), names, first, last, start, end)


def _series_between(
    bars: dict[str, Any], names: list[str], first: Any, last: Any, start: str | None, end: str | None
) -> list[Any]:
    """Each symbol's bars between the first and last day as a `BarSeries`; refused when one has none there."""
    from datetime import timedelta

    from tradestack.backtest.data import BarSeries

    if last is not None and end is not None and len(end) <= 10:
        last = last + timedelta(days=1, microseconds=-1)  # a day given: all of its bars (intraday ones too)
    series = []
    for symbol in names:
        one = BarSeries.from_bars(symbol, bars[symbol]).between(first, last)
        if len(one) == 0:
            raise _fail(f"no bars of {symbol} between {start or 'the start'} and {end or 'the end'}")
        series.append(one)
    return series


@backtest_app.command("sweep")
def backtest_sweep(
    strategy: Annotated[str, typer.Argument(help="Strategy with a vectorised form: sma_cross, bollinger.")],
    symbols: Annotated[str, typer.Option("--symbols", help="Comma-separated symbols; each is swept as its own account.")],
    grid: Annotated[list[str], typer.Option("--grid", help="Parameter values: name=v1,v2,... or name=start:stop:step.")],
    start: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD, UTC) [default: first bar].")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day, included [default: last bar].")] = None,
    capital: Annotated[str, typer.Option(help="Starting cash in the account currency.")] = "100000",
    fees: Annotated[str, typer.Option(help="Commission in basis points of the notional, rounded to the cent.")] = "0",
    slippage: Annotated[str, typer.Option(help="Slippage of market orders, in basis points.")] = "0",
    dataset: Annotated[str | None, typer.Option(help="Shipped data set to read.")] = None,
    timeframe: Annotated[str, typer.Option(help="Bar resolution.")] = "1d",
    metric: Annotated[str, typer.Option(help="Statistic that ranks the combinations (and the heatmap).")] = "sharpe",
    top: Annotated[int, typer.Option(help="Best combinations shown and re-run in the event-driven engine.")] = 5,
    out: Annotated[Path | None, typer.Option(help="Directory for the heatmap PNG and the metrics JSON.")] = None,
    dask: Annotated[str | None, typer.Option("--dask", help="Dask scheduler (tcp://host:8786) to spread the grid on.")] = None,
) -> None:
    """Sweep STRATEGY over a parameter grid at once (vectorised), then re-run the best in the event-driven engine."""
    from decimal import Decimal, InvalidOperation

    from tradestack.backtest import sweep as sweeps
    from tradestack.backtest.engine import BacktestConfig
    from tradestack.domain.instruments import instrument
    from tradestack.domain.matching import FeeModel, SlippageModel
    from tradestack.strategy.api import StrategyError

    try:
        parsed_grid = sweeps.parse_grid(strategy, grid)
        if metric not in sweeps.METRICS:
            raise StrategyError(f"--metric {metric!r}: use one of {', '.join(sweeps.METRICS)}")
        config = BacktestConfig(
            capital=Decimal(capital), fee=FeeModel(bps=Decimal(fees), places=2), slippage=SlippageModel(Decimal(slippage))
        )
    except InvalidOperation:
        raise _fail("--capital, --fees and --slippage must be numbers") from None
    except (StrategyError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if top < 0:
        raise _fail("--top must be 0 or more")
    series = _backtest_series(symbols, dataset, timeframe, start, end)
    client: Any = None
    if dask:
        from dask.distributed import Client

        try:
            client = Client(dask, timeout="10s")  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise _fail(f"--dask {dask}: no scheduler answers ({exc})") from None
    try:
        for one in series:
            try:
                market_instrument = instrument(one.symbol)
                result = sweeps.run_sweep(strategy, one, parsed_grid, config, market_instrument, client=client)
            except (StrategyError, KeyError) as exc:
                raise _fail(str(exc).strip("'\"")) from None
            _print_sweep(result, one, metric, top, config, market_instrument, out)
    finally:
        if client is not None:
            client.close()


def _print_sweep(result: Any, series: Any, metric: str, top: int, config: Any, market_instrument: Any, out: Path | None) -> None:
    from tradestack.backtest import sweep as sweeps

    shown = ("total_return", "sharpe", "sortino", "max_drawdown", "calmar", "trades", "hit_rate", "exposure")
    best = result.best(top, metric)
    names = list(result.grid)
    skipped = f", {result.skipped} refused ({result.skip_reasons[0]})" if result.skipped else ""
    title = f"{result.strategy} {result.symbol}: {len(result.combos)} combinations over {result.bars} bars{skipped}"
    table = Table(*names, *shown, "engine", title=title)
    market = sweeps.prepare(series, market_instrument, config)
    disagreements = 0
    for index in best:
        row = result.metrics[index]
        cells = []
        for name in shown:
            value = float(row[sweeps.METRICS.index(name)])
            cells.append(f"{value:.0f}" if name == "trades" else "-" if value != value else f"{value:.3f}")
        agreement = sweeps.agree(market, result.strategy, result.combos[index])
        if agreement.agrees:
            verdict = f"[green]same {agreement.engine_trades} fills[/]"
        elif not agreement.exact:
            verdict = "[yellow]not compared: participation cap binds[/]"
        else:
            disagreements += 1
            verdict = f"[red]differs at {agreement.first_difference}[/]"
        table.add_row(*(result.combos[index][n] for n in names), *cells, verdict)
    console.print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        stem = f"sweep-{result.strategy}-{result.symbol}"
        rows = [
            {**combo, **{m: _json_number(float(v)) for m, v in zip(sweeps.METRICS, row.tolist(), strict=True)}}
            for combo, row in zip(result.combos, result.metrics, strict=True)
        ]
        (out / f"{stem}.json").write_text(json.dumps({"grid": result.grid, "bars": result.bars, "combinations": rows}, indent=1))
        if sweeps.write_heatmap(result, out / f"{stem}-{metric}.png", metric):
            console.print(f"heatmap written to {out / f'{stem}-{metric}.png'}")
        else:
            console.print("no heatmap: it needs two parameters with several values")
        console.print(f"every combination's metrics written to {out / f'{stem}.json'}")
    if disagreements:
        raise _fail(f"{disagreements} of the best combinations trade differently in the event-driven engine")


def _json_number(value: float) -> float | None:
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def _promoted_scores(bars: dict[str, Any], first: Any, last: Any) -> Any:
    """The promoted alpha model's scores of every day of `bars` as a `ScoreTable`; a clear refusal without one."""
    from sqlalchemy.exc import SQLAlchemyError

    from tradestack.core.errors import ConflictError, ServiceUnavailableError
    from tradestack.signals.service import SignalService
    from tradestack.strategy.examples import ScoreTable

    try:
        history = _run_runtime(load_settings(), lambda runtime: SignalService(runtime).score_history(bars))
    except (ConflictError, ServiceUnavailableError) as exc:
        raise _fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise _fail(f"the model registry is not readable ({str(exc).splitlines()[0]}); `tradestack db upgrade`?") from None
    rows = tuple(
        {symbol: value for symbol, value in zip(history.symbols, day, strict=True) if value == value}
        for day in history.scores.tolist()
    )
    trained_from, trained_to = history.training_window
    console.print(f"scores of the promoted model {history.model_version} (trained on {trained_from} .. {trained_to})")
    if trained_to and (first is None or first.date().isoformat() <= trained_to):
        console.print(
            f"[yellow]note: the backtest overlaps the model's training window (to {trained_to}): "
            "those days are in-sample and flatter the result[/]"
        )
    outside = [s for s in history.symbols if s not in history.universe]
    if outside:
        console.print(f"[yellow]note: {', '.join(outside)} not in the model's training universe[/]")
    return ScoreTable(history.model_version, history.days, rows)


@backtest_app.command("parity")
def backtest_parity(
    strategy: Annotated[str, typer.Argument(help="Strategy name: sma_cross, bollinger.")],
    symbol: Annotated[str, typer.Option("--symbol", help="The symbol to replay, e.g. AAPL.")],
    start: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD, UTC) [default: first bar].")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day, included [default: last bar].")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Strategy parameter name=value (repeatable).")] = None,
    capital: Annotated[str, typer.Option(help="Starting cash in the instrument's currency.")] = "100000",
    dataset: Annotated[str | None, typer.Option(help="Shipped data set to read [default: the first holding the symbol].")] = None,
    timeframe: Annotated[str, typer.Option(help="Bar resolution (also the paper host's bar length).")] = "1m",
    steps: Annotated[int, typer.Option(help="Replayed quotes per bar.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the replay's intrabar paths and touch sizes.")] = 0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the report (every order, both hosts) as JSON here.")
    ] = None,
    show: Annotated[int, typer.Option(help="Rows of the table (the unexplained first).")] = 40,
) -> None:
    """Run STRATEGY in the backtester and through the paper stack on the same bars; compare order by order.

    Exits 1 when a difference has no named cause.
    """
    from decimal import Decimal, InvalidOperation

    from tradestack.backtest.parity import Verdict
    from tradestack.strategy.api import StrategyError
    from tradestack.strategy.parity import run_parity

    if steps < 4:
        raise _fail("--steps: a bar is replayed as at least 4 quotes (open, low, high, close)")
    names, resolution, first, last = _backtest_request(symbol, timeframe, start, end)
    if len(names) != 1:
        raise _fail("--symbol: give one symbol")
    try:
        amount = Decimal(capital)
    except InvalidOperation:
        raise _fail(f"--capital {capital!r} is not a number") from None
    series = _series_between(_backtest_bars(dataset, names, resolution), names, first, last, start, end)[0]
    bars = [series.bar(i) for i in range(len(series))]
    console.print(f"replaying {len(bars)} bars of {names[0]} ({steps} quotes each) through the backtester and the paper stack")
    try:
        report = asyncio.run(
            run_parity(
                strategy,
                names[0],
                bars,
                load_settings(),
                params=_parse_params(param or []),
                capital=amount,
                steps=steps,
                seed=seed,
            )
        )
    except StrategyError as exc:
        raise _fail(str(exc)) from None
    colours = {Verdict.MATCHED: "green", Verdict.EXPLAINED: "yellow", Verdict.UNEXPLAINED: "red"}
    table = Table("bar", "#", "order", "backtest fills", "paper fills", "verdict", "why", title=f"parity {strategy} {names[0]}")
    ordered = sorted(report.comparisons, key=lambda c: (c.verdict is not Verdict.UNEXPLAINED, c.decided_at, c.rank))
    for row in ordered[: max(0, show)]:
        one = row.backtest or row.paper
        assert one is not None  # noqa: S101 - a comparison has at least one order
        table.add_row(
            f"{row.decided_at:%Y-%m-%d %H:%M}",
            str(row.rank),
            f"{one.side.value} {one.quantity} {one.symbol}",
            _fills_text(row.backtest),
            _fills_text(row.paper),
            f"[{colours[row.verdict]}]{row.verdict.value}[/]",
            ", ".join(dict.fromkeys(c.name for c in row.causes)),
        )
    console.print(table)
    summary = Table("", "value", title="summary")
    for label, value in (
        ("bars / quotes", f"{report.bars} / {report.quotes}"),
        ("orders compared", str(len(report.comparisons))),
        ("matched", str(report.count(Verdict.MATCHED))),
        ("explained", str(report.count(Verdict.EXPLAINED))),
        ("unexplained", str(report.count(Verdict.UNEXPLAINED))),
        ("matched or explained", f"{report.share_matched_or_explained:.1%}"),
        ("backtest final equity", f"{report.backtest_equity:,.2f}"),
        ("seconds (backtest / paper)", f"{report.seconds['backtest']:.2f} / {report.seconds['paper']:.2f}"),
    ):
        summary.add_row(label, value)
    console.print(summary)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=1))
        console.print(f"report written to {json_path}")
    if not report.ok:
        unexplained = [c for c in report.comparisons if c.verdict is Verdict.UNEXPLAINED]
        for row in unexplained[:5]:
            console.print(f"[red]{row.decided_at:%Y-%m-%d %H:%M} #{row.rank}[/]: " + "; ".join(c.detail for c in row.causes))
        raise _fail(f"{len(unexplained)} order(s) differ without a named cause")


def _fills_text(row: Any) -> str:
    if row is None:
        return "-"
    if not row.fills:
        return str(row.status.value)
    return f"{row.filled} @ {row.average_price:.4f} ({len(row.fills)} fills, fees {row.fees})"


@backtest_app.command("tearsheet")
def backtest_tearsheet(
    run_id: Annotated[str, typer.Argument(help="A stored run's id (`GET /api/backtests` lists them).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for tearsheet-<id>.png and tearsheet-<id>.html.")],
) -> None:
    """Draw a stored run's tearsheet: equity and drawdown, monthly returns, trades on the price chart (PNG + HTML)."""
    from tradestack.backtest import tearsheet as sheets
    from tradestack.backtest.report import data_fingerprint
    from tradestack.core.errors import NotFoundError
    from tradestack.strategy.service import BacktestService

    try:
        detail = _run_runtime(load_settings(), lambda runtime: BacktestService(runtime).get(run_id))
    except NotFoundError as exc:
        raise _fail(str(exc)) from None
    source = detail.spec.get("source") or {}
    series: list[Any] = []
    try:
        series = _backtest_series(
            ",".join(detail.symbols),
            source.get("dataset"),
            source.get("timeframe") or "1d",
            detail.first_bar.isoformat(),
            detail.last_bar.isoformat(),
        )
    except typer.Exit:
        series = []
    if series and data_fingerprint(series) != detail.data_fingerprint:
        series = []  # the shipped bars changed since the run: draw no price chart rather than a wrong one
    title = f"{detail.strategy} {', '.join(detail.symbols)} {detail.first_bar:%Y-%m-%d} .. {detail.last_bar:%Y-%m-%d}"
    sheet = sheets.Tearsheet.of_document(detail.result, detail.metrics, detail.spec["capital"], series, title)
    png, page = sheets.write(sheet, out, f"tearsheet-{run_id}")
    console.print(f"tearsheet written to {png} and {page}")
