"""`tradestack loadtest`: set up the simulated traders, run Locust headless with the shipped mix, read its CSV report
and judge the SLOs.

Set-up, through the API as any client would: sign in with the given credential; unless ``--traders 1``, create one
trader per simulated user (an admin's credential is needed), sign each in and open its own paper account, so the
per-user and per-account limits (request rate, orders per minute) are the ones a real user meets; after the run the
created traders are disabled. Simulating many users from one address meets the per-IP limits, which a real crowd
would not: the load-test target is started with ``TRADESTACK_RATE_LIMIT_EXEMPT_IPS`` naming the load generator's
address (never in production); without it the set-up stops at the first 429 and says so.

Locust runs as a child process (it monkey-patches the standard library with gevent, which must not happen inside
this one); its report is ``<out>/loadtest_stats.csv`` (and ``_failures.csv``, ``_exceptions.csv``,
``_stats_history.csv``) plus ``<out>/loadtest.html``.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tradestack.deploy.slo import Slo
from tradestack.deploy.smoke import Credentials

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LOADTEST_ACCOUNT = "loadtest"
SETUP_CONCURRENCY = 8
PATIENCE_SECONDS = 180.0
DEFAULT_WAIT = (1.0, 3.0)  # the seeds' Locust user: wait_time = between(1, 3)


class LoadTestError(Exception):
    """The load test could not run (sign-in, set-up or Locust itself failed); the message says what to fix."""


@dataclass(frozen=True)
class SloOutcome:
    slo: Slo
    value: float
    met: bool


@dataclass
class LoadTestResult:
    requests: int
    failures: int
    rps: float
    percentiles_ms: dict[str, float]
    by_name: list[dict[str, str]]
    outcomes: list[SloOutcome] = field(default_factory=list)
    report_dir: Path | None = None
    traders: int = 0
    setup_seconds: float = 0.0
    rate_limited: int = 0
    not_retired: int = 0

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 1.0

    @property
    def missed(self) -> list[SloOutcome]:
        return [o for o in self.outcomes if not o.met]

    def value_of(self, slo: Slo) -> float:
        if slo.metric == "error_rate":
            return self.error_rate
        if slo.metric == "rps":
            return self.rps
        return self.percentiles_ms[slo.metric[1:] + "%"] / 1000


@dataclass(frozen=True)
class Trader:
    """One simulated trader's credential and its own paper account; `user_id` is set for traders the set-up created."""

    token: str
    is_key: bool
    account: str
    user_id: str | None = None

    def to_json(self) -> dict[str, str | bool]:
        return {"token": self.token, "api_key": self.is_key, "account": self.account}


@dataclass
class Preparation:
    """What the set-up made: the traders (one per simulated user, or the signed-in user alone) and the instrument."""

    admin_headers: dict[str, str]
    traders: list[Trader]
    symbol: str
    tick: str
    lot: str
    run: str = ""


def _headers(token: str, is_key: bool) -> dict[str, str]:
    return {"X-API-Key": token} if is_key else {"Authorization": f"Bearer {token}"}


def _refusal(what: str, answer: httpx.Response) -> LoadTestError:
    hint = ""
    if answer.status_code == 429 and ("client " in answer.text or "sign-in" in what):
        hint = (
            " - the target limits this client's address: start the load-test target with"
            " TRADESTACK_RATE_LIMIT_EXEMPT_IPS naming it, a JSON list (per-user and per-account limits still apply),"
            " or use fewer --traders"
        )
    elif answer.status_code == 429:
        hint = " - the signed-in user's own limit, still full after waiting it out: use fewer --traders or wait a minute"
    elif answer.status_code == 403 and what.startswith("creating"):
        hint = " - one trader per simulated user needs an admin's credential (users:admin); or give --traders 1"
    return LoadTestError(f"{what}: HTTP {answer.status_code} {answer.text[:200]}{hint}")


def _patient(http: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """`method` `url`, waiting out a per-user 429 (its Retry-After, at most `PATIENCE_SECONDS` in all): the admin's
    own limit (600 requests a minute by default) is met when several hundred traders are created or disabled."""
    waited = 0.0
    while True:
        answer = http.request(method, url, **kwargs)
        retry = float(answer.headers.get("retry-after", "0") or 0) if answer.status_code == 429 else 0.0
        if answer.status_code != 429 or "client " in answer.text or waited + retry > PATIENCE_SECONDS:
            return answer
        time.sleep(retry)
        waited += retry


def _sign_in(http: httpx.Client, credentials: Credentials) -> tuple[str, bool]:
    if credentials.email and credentials.password:
        login = http.post("/api/auth/login", json={"email": credentials.email, "password": credentials.password})
        if login.status_code != 200 or "access_token" not in login.json():
            raise _refusal(f"sign-in as {credentials.email} failed", login)
        return str(login.json()["access_token"]), False
    if credentials.token or credentials.api_key:
        return str(credentials.token or credentials.api_key), credentials.api_key is not None
    raise LoadTestError("give --email/--password (or TRADESTACK_LOADTEST_EMAIL/_PASSWORD), --token or --api-key")


def _loadtest_account(http: httpx.Client, headers: dict[str, str]) -> str:
    """The id of the caller's paper account named `LOADTEST_ACCOUNT`, opened (USD 1,000,000) on first use."""
    accounts = http.get("/api/accounts", headers=headers)
    if accounts.status_code != 200:
        raise _refusal("GET /api/accounts", accounts)
    account = next((a["id"] for a in accounts.json() if a["name"] == LOADTEST_ACCOUNT), None)
    if account is not None:
        return str(account)
    body = {"name": LOADTEST_ACCOUNT, "base_currency": "USD", "deposit": {"currency": "USD", "amount": "1000000"}}
    opened = http.post("/api/accounts", json=body, headers=headers)
    if opened.status_code != 201:
        raise _refusal(f"opening the {LOADTEST_ACCOUNT!r} account", opened)
    return str(opened.json()["id"])


def _new_trader(http: httpx.Client, admin_headers: dict[str, str], email: str) -> Trader:
    """A trader created through the API by the admin, signed in, with its own `LOADTEST_ACCOUNT`."""
    password = secrets.token_urlsafe(18)
    body = {"email": email, "password": password, "role": "trader"}
    created = _patient(http, "POST", "/api/users", json=body, headers=admin_headers)
    if created.status_code != 201:
        raise _refusal(f"creating the load-test trader {email}", created)
    login = http.post("/api/auth/login", json={"email": email, "password": password})
    if login.status_code != 200 or "access_token" not in login.json():
        raise _refusal(f"sign-in as the load-test trader {email}", login)
    token = str(login.json()["access_token"])
    return Trader(token, False, _loadtest_account(http, _headers(token, False)), user_id=str(created.json()["id"]))


def prepare(
    http: httpx.Client, credentials: Credentials, symbol: str, *, traders: int, run: str, concurrency: int = SETUP_CONCURRENCY
) -> Preparation:
    """Sign in; with ``traders > 1`` create that many traders (``loadtest-<run>-<n>@loadtest.invalid``, role trader),
    each signed in with its own paper account, as a real user would be; with 1 the signed-in user's own account."""
    token, is_key = _sign_in(http, credentials)
    headers = _headers(token, is_key)
    instruments = http.get("/api/market/instruments", headers=headers)
    if instruments.status_code != 200:
        raise _refusal("GET /api/market/instruments", instruments)
    instrument = next((i for i in instruments.json()["instruments"] if i["symbol"] == symbol), None)
    if instrument is None:
        listed = ", ".join(i["symbol"] for i in instruments.json()["instruments"])
        raise LoadTestError(f"{symbol} is not a listed instrument: pick one of {listed}")
    if traders <= 1:
        pool = [Trader(token, is_key, _loadtest_account(http, headers))]
    else:
        emails = [f"loadtest-{run}-{n:04d}@loadtest.invalid" for n in range(1, traders + 1)]
        with ThreadPoolExecutor(max_workers=concurrency) as pool_executor:
            pool = list(pool_executor.map(lambda email: _new_trader(http, headers, email), emails))
    return Preparation(headers, pool, symbol, str(instrument["tick_size"]), str(instrument["lot_size"]), run)


def retire(http: httpx.Client, preparation: Preparation, concurrency: int = SETUP_CONCURRENCY) -> int:
    """Disable the traders the set-up created (their accounts and orders stay for the record); how many were not."""

    def disable(trader: Trader) -> bool:
        answer = _patient(
            http, "PATCH", f"/api/users/{trader.user_id}", json={"is_active": False}, headers=preparation.admin_headers
        )
        return answer.status_code == 200

    created = [t for t in preparation.traders if t.user_id is not None]
    with ThreadPoolExecutor(max_workers=concurrency) as executor:
        return sum(not ok for ok in executor.map(disable, created))


def locust_env(preparation: Preparation, traders_file: Path, wait: tuple[float, float]) -> dict[str, str]:
    """Environment for the locustfile; the traders' credentials go in `traders_file` (readable by this user only)."""
    traders_file.write_text(json.dumps([t.to_json() for t in preparation.traders]))
    traders_file.chmod(0o600)
    first = preparation.traders[0]
    return {
        "TRADESTACK_LOADTEST_TRADERS": str(traders_file),
        "TRADESTACK_LOADTEST_TOKEN": first.token,
        "TRADESTACK_LOADTEST_API_KEY": "1" if first.is_key else "0",
        "TRADESTACK_LOADTEST_ACCOUNT": first.account,
        "TRADESTACK_LOADTEST_SYMBOL": preparation.symbol,
        "TRADESTACK_LOADTEST_TICK": preparation.tick,
        "TRADESTACK_LOADTEST_LOT": preparation.lot,
        "TRADESTACK_LOADTEST_WAIT": f"{wait[0]}-{wait[1]}",
    }


def parse_wait(text: str) -> tuple[float, float]:
    """``1-3`` (seconds between a simulated user's tasks, uniformly drawn) as (1.0, 3.0)."""
    low, sep, high = text.partition("-")
    try:
        bounds = (float(low), float(high if sep else low))
    except ValueError:
        raise LoadTestError(f"--wait {text!r}: write MIN-MAX seconds, e.g. 1-3") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise LoadTestError(f"--wait {text!r}: need 0 <= MIN <= MAX")
    return bounds


def read_stats(stats_csv: Path) -> LoadTestResult:
    """The aggregated figures and per-request rows of Locust's ``*_stats.csv``."""
    with stats_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    total = next((r for r in rows if r["Name"] == "Aggregated"), None)
    if total is None:
        raise LoadTestError(f"{stats_csv} has no Aggregated row: Locust did not finish its report")
    percentiles = {key: float(total[key]) for key in total if key.endswith("%") and total[key] not in {"", "N/A"}}
    return LoadTestResult(
        requests=int(total["Request Count"]),
        failures=int(total["Failure Count"]),
        rps=float(total["Requests/s"]),
        percentiles_ms=percentiles,
        by_name=[r for r in rows if r["Name"] != "Aggregated"],
    )


def rate_limited_failures(failures_csv: Path) -> int:
    """How many failures of Locust's ``*_failures.csv`` were 429 answers (a rate limit refused them)."""
    if not failures_csv.exists():
        return 0
    with failures_csv.open(newline="") as handle:
        return sum(int(row["Occurrences"]) for row in csv.DictReader(handle) if "429" in row["Error"])


def run_loadtest(
    base_url: str,
    credentials: Credentials,
    *,
    users: int,
    spawn_rate: float,
    duration_seconds: float,
    slos: list[Slo],
    out_dir: Path,
    symbol: str = "BTC-USD",
    verify_tls: bool = True,
    traders: int | None = None,
    wait: tuple[float, float] = DEFAULT_WAIT,
) -> LoadTestResult:
    """Run the mix for `duration_seconds` and judge `slos`; the report files are written under `out_dir`.

    `traders` (default: one per simulated user) traders are created for the run and disabled after it; with 1, every
    simulated user shares the signed-in user's `loadtest` account (and its per-account limits).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "loadtest"
    traders_file = out_dir / "traders.json"
    with httpx.Client(base_url=base_url, timeout=60, verify=verify_tls) as http:
        started = time.monotonic()
        preparation = prepare(http, credentials, symbol, traders=users if traders is None else traders, run=secrets.token_hex(4))
        setup_seconds = time.monotonic() - started
        env = {**os.environ, **locust_env(preparation, traders_file, wait)}
        args = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", base_url.rstrip("/"),
            "--users", str(users), "--spawn-rate", str(spawn_rate), "--run-time", f"{max(1, round(duration_seconds))}s",
            "--stop-timeout", "10", "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary",
            "--loglevel", "WARNING", "--exit-code-on-error", "0",
        ]  # fmt: skip
        if not verify_tls:
            env["REQUESTS_CA_BUNDLE"] = ""
        try:
            done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=duration_seconds + 120, check=False)  # noqa: S603
        finally:
            traders_file.unlink(missing_ok=True)
            not_retired = retire(http, preparation)
    (out_dir / "locust.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise LoadTestError(f"Locust exited with {done.returncode}: {(done.stderr or done.stdout)[-1500:]}")
    result = read_stats(Path(f"{prefix}_stats.csv"))
    result.rate_limited = rate_limited_failures(Path(f"{prefix}_failures.csv"))
    result.report_dir = out_dir
    result.traders = len(preparation.traders)
    result.setup_seconds = setup_seconds
    result.not_retired = not_retired
    result.outcomes = [SloOutcome(slo, result.value_of(slo), slo.met_by(result.value_of(slo))) for slo in slos]
    return result
