"""Release commands: `tradestack smoke`, `tradestack loadtest` and the `tradestack deploy` group.

Only typer and rich are imported here; the engines are imported inside the commands so `tradestack --help` stays fast.
"""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow", "met": "green", "missed": "bold red"}


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def smoke(
    base_url: Annotated[str, typer.Option("--base-url", help="Where the installation answers, e.g. https://trade.example.com.")],
    email: Annotated[str | None, typer.Option(help="Smoke user's email (exercises login) [env TRADESTACK_SMOKE_EMAIL].")] = None,
    password: Annotated[
        str | None, typer.Option(help="Smoke user's password; prefer the environment [env TRADESTACK_SMOKE_PASSWORD].")
    ] = None,
    token: Annotated[str | None, typer.Option(help="An access token instead of email and password.")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="An API key instead of email and password.")] = None,
    symbol: Annotated[str, typer.Option(help="Instrument for quotes, candles, the order and the WebSocket.")] = "BTC-USD",
    timeout: Annotated[float, typer.Option(help="Seconds each request may take.")] = 10.0,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Do not verify the TLS certificate (self-signed staging).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a running installation end to end; exit 1 naming each failed check.

    Health, ready, database, version, login, quotes, candles, a paper order placed and canceled on the
    user's account named `smoke` (opened on first use), and one WebSocket quote.
    """
    from tradestack.deploy.smoke import Credentials, run_smoke

    credentials = Credentials(
        email=email or os.environ.get("TRADESTACK_SMOKE_EMAIL"),
        password=password or os.environ.get("TRADESTACK_SMOKE_PASSWORD"),
        token=token,
        api_key=api_key,
    )
    report = run_smoke(base_url, credentials, symbol=symbol.upper(), timeout=timeout, verify_tls=not insecure)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        table = Table(title=f"smoke {report.base_url}")
        for column in ("check", "status", "detail", "seconds"):
            table.add_column(column)
        for check in report.checks:
            style = STATUS_STYLE[check.status]
            table.add_row(check.name, f"[{style}]{check.status}[/]", check.detail, f"{check.seconds:.2f}")
        console.print(table)
    if not report.ok:
        err_console.print(f"[bold red]smoke failed:[/] {', '.join(report.failed)}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the release commands to the root command line."""
    app.command("smoke")(smoke)
