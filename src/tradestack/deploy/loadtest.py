"""`tradestack loadtest`: sign in once, open the load-test account, run Locust headless with the shipped mix, read its
CSV report and judge the SLOs.

Locust runs as a child process (it monkey-patches the standard library with gevent, which must not happen inside
this one); its report is ``<out>/loadtest_stats.csv`` (and ``_failures.csv``, ``_exceptions.csv``,
``_stats_history.csv``) plus ``<out>/loadtest.html``.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tradestack.deploy.slo import Slo
from tradestack.deploy.smoke import Credentials

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LOADTEST_ACCOUNT = "loadtest"


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


def _prepare(base_url: str, credentials: Credentials, symbol: str, verify_tls: bool) -> dict[str, str]:
    """Environment for the locustfile: a credential, the load-test account, the instrument's tick and lot."""
    with httpx.Client(base_url=base_url, timeout=15, verify=verify_tls) as http:
        if credentials.email and credentials.password:
            login = http.post("/api/auth/login", json={"email": credentials.email, "password": credentials.password})
            if login.status_code != 200 or "access_token" not in login.json():
                raise LoadTestError(f"sign-in as {credentials.email} failed: HTTP {login.status_code} {login.text[:200]}")
            token, is_key = str(login.json()["access_token"]), False
        elif credentials.token or credentials.api_key:
            token, is_key = str(credentials.token or credentials.api_key), credentials.api_key is not None
        else:
            raise LoadTestError("give --email/--password (or TRADESTACK_LOADTEST_EMAIL/_PASSWORD), --token or --api-key")
        headers = {"X-API-Key": token} if is_key else {"Authorization": f"Bearer {token}"}
        accounts = http.get("/api/accounts", headers=headers)
        if accounts.status_code != 200:
            raise LoadTestError(f"GET /api/accounts: HTTP {accounts.status_code} {accounts.text[:200]}")
        account = next((a["id"] for a in accounts.json() if a["name"] == LOADTEST_ACCOUNT), None)
        if account is None:
            body = {"name": LOADTEST_ACCOUNT, "base_currency": "USD", "deposit": {"currency": "USD", "amount": "1000000"}}
            opened = http.post("/api/accounts", json=body, headers=headers)
            if opened.status_code != 201:
                raise LoadTestError(f"opening the {LOADTEST_ACCOUNT!r} account: HTTP {opened.status_code} {opened.text[:200]}")
            account = opened.json()["id"]
        instruments = http.get("/api/market/instruments", headers=headers).json()["instruments"]
        instrument = next((i for i in instruments if i["symbol"] == symbol), None)
        if instrument is None:
            raise LoadTestError(f"{symbol} is not a listed instrument: pick one of {', '.join(i['symbol'] for i in instruments)}")
    return {
        "TRADESTACK_LOADTEST_TOKEN": token,
        "TRADESTACK_LOADTEST_API_KEY": "1" if is_key else "0",
        "TRADESTACK_LOADTEST_ACCOUNT": str(account),
        "TRADESTACK_LOADTEST_SYMBOL": symbol,
        "TRADESTACK_LOADTEST_TICK": str(instrument["tick_size"]),
        "TRADESTACK_LOADTEST_LOT": str(instrument["lot_size"]),
    }


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
) -> LoadTestResult:
    """Run the mix for `duration_seconds` and judge `slos`; the report files are written under `out_dir`."""
    env = {**os.environ, **_prepare(base_url, credentials, symbol, verify_tls)}
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "loadtest"
    args = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", base_url.rstrip("/"),
        "--users", str(users), "--spawn-rate", str(spawn_rate), "--run-time", f"{max(1, round(duration_seconds))}s",
        "--stop-timeout", "10", "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary",
        "--loglevel", "WARNING", "--exit-code-on-error", "0",
    ]  # fmt: skip
    if not verify_tls:
        env["REQUESTS_CA_BUNDLE"] = ""
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=duration_seconds + 120, check=False)  # noqa: S603
    (out_dir / "locust.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise LoadTestError(f"Locust exited with {done.returncode}: {(done.stderr or done.stdout)[-1500:]}")
    result = read_stats(Path(f"{prefix}_stats.csv"))
    result.report_dir = out_dir
    result.outcomes = [SloOutcome(slo, result.value_of(slo), slo.met_by(result.value_of(slo))) for slo in slos]
    return result
