"""Release commands: `tradestack smoke`, `tradestack loadtest` and the `tradestack deploy` group.

Only typer and rich are imported here; the engines are imported inside the commands so `tradestack --help` stays fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
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


def loadtest(
    base_url: Annotated[str, typer.Option("--base-url", help="Target installation (tests: 127.0.0.1 only).")],
    users: Annotated[int, typer.Option(min=1, help="Concurrent simulated users (one in five streams quotes).")] = 10,
    spawn_rate: Annotated[float, typer.Option("--spawn-rate", min=0.1, help="Users started per second.")] = 5.0,
    duration: Annotated[str, typer.Option(help="How long to run: 30s, 2m, ...")] = "60s",
    slo: Annotated[str, typer.Option(help="Objectives: p95=200ms,error_rate=1%,rps=20 (percentiles p50..p100).")] = "",
    out: Annotated[Path, typer.Option(help="Directory for the CSV and HTML report.")] = Path("var/loadtest"),
    email: Annotated[str | None, typer.Option(help="Load-test user's email [env TRADESTACK_LOADTEST_EMAIL].")] = None,
    password: Annotated[str | None, typer.Option(help="Its password [env TRADESTACK_LOADTEST_PASSWORD].")] = None,
    token: Annotated[str | None, typer.Option(help="An access token instead of email and password.")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="An API key instead of email and password.")] = None,
    symbol: Annotated[str, typer.Option(help="Instrument the mix quotes, charts and orders.")] = "BTC-USD",
    insecure: Annotated[bool, typer.Option("--insecure", help="Do not verify the TLS certificate.")] = False,
) -> None:
    """Run the realistic mix (quotes, candles, portfolio, order place/cancel, WebSocket subscribers) with Locust
    headless; write its CSV/HTML report; exit 1 naming each missed SLO."""
    from tradestack.deploy.loadtest import LoadTestError, run_loadtest
    from tradestack.deploy.slo import DEFAULT_SLOS, SloError, parse_duration, parse_slos
    from tradestack.deploy.smoke import Credentials

    try:
        slos = parse_slos(slo or DEFAULT_SLOS)
        seconds = parse_duration(duration)
    except SloError as exc:
        raise _fail(str(exc)) from None
    credentials = Credentials(
        email=email or os.environ.get("TRADESTACK_LOADTEST_EMAIL"),
        password=password or os.environ.get("TRADESTACK_LOADTEST_PASSWORD"),
        token=token,
        api_key=api_key,
    )
    try:
        result = run_loadtest(
            base_url, credentials, users=users, spawn_rate=spawn_rate, duration_seconds=seconds, slos=slos, out_dir=out,
            symbol=symbol.upper(), verify_tls=not insecure,
        )  # fmt: skip
    except LoadTestError as exc:
        raise _fail(str(exc)) from None
    table = Table(title=f"loadtest {base_url}: {users} users for {duration}")
    for column in ("request", "count", "failures", "median ms", "p95 ms", "p99 ms", "req/s"):
        table.add_column(column, justify="left" if column == "request" else "right")
    for row in result.by_name:
        table.add_row(
            f"{row['Type']} {row['Name']}", row["Request Count"], row["Failure Count"],
            f"{float(row['Median Response Time']):.0f}", row["95%"], row["99%"], f"{float(row['Requests/s']):.1f}",
        )  # fmt: skip
    console.print(table)
    slo_table = Table(title="SLOs")
    for column in ("objective", "measured", "status"):
        slo_table.add_column(column)
    for outcome in result.outcomes:
        measured = (
            f"{outcome.value:.2%}" if outcome.slo.metric == "error_rate"
            else f"{outcome.value:.1f}/s" if outcome.slo.metric == "rps"
            else f"{outcome.value * 1000:.0f} ms"
        )  # fmt: skip
        status = "met" if outcome.met else "missed"
        slo_table.add_row(outcome.slo.text, measured, f"[{STATUS_STYLE[status]}]{status}[/]")
    console.print(slo_table)
    console.print(
        f"{result.requests} requests, {result.failures} failed; report in {out}/loadtest_stats.csv, {out}/loadtest.html"
    )
    if result.missed:
        err_console.print(f"[bold red]SLO missed:[/] {', '.join(o.slo.text for o in result.missed)}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the release commands to the root command line."""
    app.command("smoke")(smoke)
    app.command("loadtest")(loadtest)
