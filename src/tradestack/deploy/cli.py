"""Release commands: `tradestack smoke`, `tradestack loadtest` and the `tradestack deploy` group.

Only typer, rich and the shared consoles (`kit.terminal`) are imported here; the engines are imported inside the
commands so `tradestack --help` stays fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tradestack.kit.terminal import console, err_console

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
    traders: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Traders created for the run (admin credential), each with its own paper account; simulated users take"
            " them in turn [default: one per user]. 1: everyone shares the signed-in user's `loadtest` account.",
        ),
    ] = None,
    wait: Annotated[str, typer.Option(help="Seconds between a user's requests, MIN-MAX (the seeds' Locust: 1-3).")] = "1-3",
) -> None:
    """Run the realistic mix (quotes, candles, portfolio, order place/cancel, WebSocket subscribers) with Locust
    headless; write its CSV/HTML report; exit 1 naming each missed SLO.

    Each simulated user is its own trader with its own paper account (created through the API before the run,
    disabled after it), so per-user and per-account limits apply as for real users. One machine simulating many
    users meets the per-IP limits a real crowd would not: start the target with
    TRADESTACK_RATE_LIMIT_EXEMPT_IPS='["<load generator's address>"]' (a load-test target only, never production).
    """
    from tradestack.deploy.loadtest import LoadTestError, parse_wait, run_loadtest
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
            symbol=symbol.upper(), verify_tls=not insecure, traders=traders, wait=parse_wait(wait),
        )  # fmt: skip
    except LoadTestError as exc:
        raise _fail(str(exc)) from None
    console.print(f"{result.traders} trader(s) with their own paper accounts, set up in {result.setup_seconds:.1f} s")
    if result.not_retired:
        err_console.print(f"[yellow]warning:[/] {result.not_retired} load-test trader(s) could not be disabled after the run")
    table = Table(title=f"loadtest {base_url}: {users} users for {duration}, {wait} s between requests")
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
    if result.rate_limited:
        err_console.print(
            f"[yellow]warning:[/] {result.rate_limited} request(s) refused with 429: a target meant for load tests lists"
            " this machine in TRADESTACK_RATE_LIMIT_EXEMPT_IPS (per-IP limits); per-user limits mean too many users"
            " per trader (--traders)"
        )
    if result.missed:
        err_console.print(f"[bold red]SLO missed:[/] {', '.join(o.slo.text for o in result.missed)}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the release commands to the root command line."""
    app.command("smoke")(smoke)
    app.command("loadtest")(loadtest)
    app.add_typer(deploy_app, name="deploy")


deploy_app = typer.Typer(
    help="Release a new version on one host: canary or blue-green through HAProxy, judged by Prometheus.",
    no_args_is_help=True,
)


def _audit(action: str, outcome: str, detail: dict[str, object]) -> None:
    """Record a deploy event in the installation's audit chain (configured by the usual TRADESTACK_* settings)."""
    import asyncio

    from tradestack.audit.service import AuditService
    from tradestack.kit.config import Settings
    from tradestack.kit.runtime import Runtime

    async def record() -> None:
        runtime = Runtime.open(Settings())
        try:
            audit = AuditService(runtime.database, runtime.clock)
            await audit.record(
                action=action, outcome=outcome, actor_email=os.environ.get("USER"), target=f"deploy:{detail.get('id')}",
                detail=detail,
            )  # fmt: skip
            await audit.settle(wait_seconds=5)  # in the chain before the command goes on (a running chainer or this call)
        finally:
            await runtime.close()

    try:
        asyncio.run(record())
    except Exception as exc:  # noqa: BLE001 - a deploy must not stop because its audit record failed; say so loudly
        err_console.print(f"[bold yellow]warning:[/] audit entry {action} not recorded: {type(exc).__name__}: {exc}")


def _engine(spec_path: Path) -> object:
    from tradestack.deploy.engine import Engine
    from tradestack.deploy.spec import SpecError, load_spec

    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        err_console.print(f"[bold red]invalid release spec[/] {spec_path}:")
        for problem in exc.problems:
            err_console.print(f"  - {problem}")
        raise typer.Exit(2) from None
    engine = Engine(spec, str(spec_path), audit=_audit)
    engine.log = lambda message: console.print(f"[dim]{__import__('datetime').datetime.now():%H:%M:%S}[/] {message}")
    return engine


SpecArg = Annotated[Path, typer.Argument(help="The release spec (YAML).", exists=True, dir_okay=False)]


def _print_state(state: object) -> None:
    from tradestack.deploy.state import DeployState

    assert isinstance(state, DeployState)  # noqa: S101
    table = Table(title=f"deploy {state.id}: {state.version}", show_header=False)
    rows = [
        ("phase", state.phase), ("colours", f"{state.old} -> {state.new}"), ("step", str(state.step)),
        ("weight of new", str(state.weight)), ("started", state.started_at), ("finished", state.finished_at or "-"),
        ("duration", f"{state.duration_seconds}s" if state.duration_seconds is not None else "-"),
        ("reason", state.reason or "-"),
        ("rollback time", f"{state.rollback_seconds}s from the first failed measurement to weight 0, "
         f"{state.bad_step_seconds}s from the bad step's weight change" if state.rollback_seconds is not None else "-"),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


@deploy_app.command("start")
def deploy_start(spec: SpecArg) -> None:
    """Deploy the spec's release to the idle colour, step traffic with analysis, promote or roll back (exit 1)."""
    from tradestack.deploy.engine import DeployError, Engine
    from tradestack.deploy.haproxy import HAProxyError

    engine = _engine(spec)
    assert isinstance(engine, Engine)  # noqa: S101
    try:
        outcome = engine.start()
    except (DeployError, HAProxyError) as exc:
        raise _fail(str(exc)) from None
    _print_state(outcome.state)
    if not outcome.ok:
        err_console.print(
            f"[bold red]deploy rolled back:[/] {outcome.state.reason}: {outcome.state.events[-2].get('detail', '')}"
        )
        raise typer.Exit(1)


@deploy_app.command("status")
def deploy_status(
    spec: SpecArg, as_json: Annotated[bool, typer.Option("--json", help="Print the state file as JSON.")] = False
) -> None:
    """Where the current (or last) deploy stands, with the weights HAProxy reports now."""
    from dataclasses import asdict

    from tradestack.deploy.engine import Engine
    from tradestack.deploy.haproxy import HAProxyError

    engine = _engine(spec)
    assert isinstance(engine, Engine)  # noqa: S101
    state = engine.store.load()
    if state is None:
        raise _fail(f"no deploy recorded in {engine.store.directory}", 1)
    try:
        weights: dict[str, int] | str = engine.haproxy.weights()
    except HAProxyError as exc:
        weights = f"unknown ({exc})"
    if as_json:
        typer.echo(json.dumps({**asdict(state), "haproxy_weights": weights}, indent=2))
        return
    _print_state(state)
    console.print(f"HAProxy weights now: {weights}")


def _operator(spec: Path, what: str) -> None:
    from tradestack.deploy.engine import DeployError, Engine
    from tradestack.deploy.haproxy import HAProxyError

    engine = _engine(spec)
    assert isinstance(engine, Engine)  # noqa: S101
    try:
        state = engine.rollback() if what == "rollback" else engine.request(what)
    except (DeployError, HAProxyError) as exc:
        raise _fail(str(exc), 1) from None
    _print_state(state)


@deploy_app.command("promote")
def deploy_promote(
    spec: SpecArg,
    full: Annotated[bool, typer.Option("--full", help="Skip every remaining step: the new colour to 100 % now.")] = False,
) -> None:
    """Resume a pause without duration or an inconclusive hold (the next step runs); --full: 100 % now.

    A deploy whose command died is finished here at once (100 %, bake, old colour stopped), with or without --full.
    """
    _operator(spec, "promote-full" if full else "promote")


@deploy_app.command("abort")
def deploy_abort(spec: SpecArg) -> None:
    """Stop the deploy: new colour to weight 0, drained and stopped; old colour at 100 %."""
    _operator(spec, "abort")


@deploy_app.command("rollback")
def deploy_rollback(spec: SpecArg) -> None:
    """Restore the old colour at 100 %: aborts a deploy in progress (also one whose command died), or flips back in bake."""
    _operator(spec, "rollback")


@deploy_app.command("history")
def deploy_history(spec: SpecArg) -> None:
    """Finished deploys, oldest first."""
    from tradestack.deploy.spec import SpecError, load_spec
    from tradestack.deploy.state import StateStore

    try:
        store = StateStore(Path(load_spec(spec).target.state_dir))
    except SpecError as exc:
        raise _fail(str(exc)) from None
    table = Table(title="deploys")
    for column in ("id", "version", "colours", "phase", "reason", "duration s", "rollback s", "bad step to 0 s", "finished"):
        table.add_column(column)
    for entry in store.history():
        table.add_row(
            entry["id"], entry["version"], f"{entry['old']} -> {entry['new']}", entry["phase"], entry["reason"] or "-",
            str(entry["duration_seconds"]), str(entry["rollback_seconds"] or "-"), str(entry.get("bad_step_seconds") or "-"),
            entry["finished_at"] or "-",
        )  # fmt: skip
    console.print(table)


@deploy_app.command("check")
def deploy_check(spec: SpecArg) -> None:
    """Validate a release spec (exit 2 listing each bad field)."""
    from tradestack.deploy.engine import Engine

    engine = _engine(spec)
    assert isinstance(engine, Engine)  # noqa: S101
    steps = ", ".join(
        f"setWeight {s.set_weight}" if s.set_weight is not None else "pause" if s.pause is not None else "analysis"
        for s in engine.spec.effective_steps
    )
    console.print(f"[green]valid[/]: {engine.spec.strategy}, steps: {steps}")


@deploy_app.command("render-argo")
def deploy_render_argo(
    spec: SpecArg,
    prometheus: Annotated[str, typer.Option(help="Prometheus address as seen from the cluster.")] = (
        "http://prometheus.monitoring:9090"
    ),
    out: Annotated[Path | None, typer.Option(help="Write here instead of standard output.")] = None,
) -> None:
    """Render the spec as an Argo Rollouts Rollout and AnalysisTemplates (same steps, same queries and limits)."""
    import yaml

    from tradestack.deploy.argo import render_argo
    from tradestack.deploy.engine import Engine

    engine = _engine(spec)
    assert isinstance(engine, Engine)  # noqa: S101
    text = yaml.safe_dump_all(render_argo(engine.spec, prometheus=prometheus), sort_keys=False)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
