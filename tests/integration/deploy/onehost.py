"""A real one-host installation for release tests: PostgreSQL, Redis, `serve engine`, blue `serve api`, HAProxy from
deploy/haproxy/haproxy.cfg and Prometheus scraping both colours (label `track`), plus a client load through HAProxy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml

from tradestack.deploy.haproxy import HAProxy
from tradestack.kit.config import Settings

from ..trading.processes import (  # type: ignore[import-not-found]
    PASSWORD,
    TRADESTACK,
    Processes,
    QuotePump,
    cli_ok,
    free_port,
    process_env,
    wait_ready,
)

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).parent

# The test profile: short intervals so a whole canary takes seconds, not minutes. Tolerant of a loaded machine
# (a few requests per window suffice, latency up to 5 s): the bad release of these tests is bad by its errors.
TEST_ANALYSIS: dict[str, Any] = {
    "interval": "1s",
    "window": "8s",
    "count": 4,
    "failureLimit": 0,
    "consecutiveErrorLimit": 2,
    "inconclusive": "abort",
    "metrics": [
        {"name": "error-ratio", "kind": "error_ratio", "max": "1%", "minRequests": 3},
        {"name": "p95-latency", "kind": "latency", "quantile": 0.95, "max": "5s", "minRequests": 3},
    ],
}


def require_tools() -> None:
    for tool in ("haproxy", "prometheus"):
        if shutil.which(tool) is None:
            raise AssertionError(f"{tool} is not installed: run scripts/ensure-release-tools.sh")


@dataclass
class OneHost:
    directory: Path
    env: dict[str, str]
    processes: Processes
    ports: dict[str, int]
    socket: str
    prometheus: str
    haproxy_url: str
    blue: subprocess.Popen[bytes] | None = None
    database_url: str = ""
    edge_url: str = ""  # nginx (TLS) in front of HAProxy
    edge_certificate: str = ""  # its self-signed certificate, to verify against

    @property
    def haproxy(self) -> HAProxy:
        return HAProxy(self.socket, "api")

    def spec(self, **release: Any) -> dict[str, Any]:
        return {
            "release": {
                "version": "test-release",
                "command": [TRADESTACK, "serve", "api"],
                "migrate": [TRADESTACK, "db", "upgrade", "--expand-only"],
                **release,
            },
            "analysis": TEST_ANALYSIS,
            "target": {
                "haproxySocket": self.socket,
                "backend": "api",
                "colours": {"blue": {"port": self.ports["blue"]}, "green": {"port": self.ports["green"]}},
                "prometheus": self.prometheus,
                "stateDir": str(self.directory / "deploy-state"),
                "readyTimeout": "60s",
                "drainTimeout": "10s",
                "bake": "1s",
                "smoke": {"enabled": True, "symbol": "BTC-USD"},
            },
        }

    def write_spec(self, spec: dict[str, Any], name: str = "release.yaml") -> Path:
        path = self.directory / name
        path.write_text(yaml.safe_dump(spec))
        return path

    def deploy(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TRADESTACK, "deploy", *args], env={**self.env, **(env or {})}, cwd=self.directory, capture_output=True,
            text=True, timeout=180,
        )  # fmt: skip

    def deploy_in_background(self, spec: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [TRADESTACK, "deploy", "start", str(spec)], env={**self.env, **(env or {})}, cwd=self.directory,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def state(self) -> dict[str, Any]:
        path = self.directory / "deploy-state" / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def serving(self) -> tuple[str, str]:
        """(the colour with traffic, the other one)."""
        weights = self.haproxy.weights()
        old = max(weights, key=lambda colour: weights[colour])
        return old, "green" if old == "blue" else "blue"

    async def wait_paused_at(self, deploy: subprocess.Popen[bytes], step: int, timeout: float = 90) -> dict[str, Any]:
        """Until the running deploy command holds at `step` (a pause without duration)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state.get("phase") == "paused" and state.get("step") == step:
                return state
            if deploy.poll() is not None:
                raise AssertionError(deploy.stdout.read().decode() if deploy.stdout else f"deploy exited {deploy.returncode}")
            await asyncio.sleep(0.2)
        raise AssertionError(f"the deploy never paused at step {step}: {self.state().get('events', [])[-3:]}")

    async def deploy_async(self, *args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            TRADESTACK, "deploy", *args, env=self.env, cwd=self.directory,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 180)
        return process.returncode or 0, out.decode()


async def start_one_host(directory: Path, postgres_url: str, redis_url: str, namespace: str) -> OneHost:
    require_tools()
    env = process_env(
        directory,
        TRADESTACK_DATABASE_URL=postgres_url,
        TRADESTACK_REDIS_URL=redis_url,
        TRADESTACK_REDIS_NAMESPACE=namespace,
        TRADESTACK_MARKETDATA_FEEDS="[]",
    )
    processes = Processes(directory)
    cli_ok(env, directory, "db", "upgrade")
    cli_ok(env, directory, "data", "import", "btc-usd")
    email = f"smoke-{uuid.uuid4().hex[:8]}@example.com"
    cli_ok(env, directory, "user", "create", email, "--role", "trader", "--password-stdin", stdin=PASSWORD + "\n")
    env.update(TRADESTACK_SMOKE_EMAIL=email, TRADESTACK_SMOKE_PASSWORD=PASSWORD)
    processes.start("engine", ["serve", "engine"], env)
    ports = {
        "blue": free_port(), "green": free_port(), "haproxy": free_port(), "prometheus": free_port(),
        "nginx_http": free_port(), "nginx": free_port(),
    }  # fmt: skip
    socket = str(directory / "haproxy.sock")
    haproxy_env = {
        **env,
        "TRADESTACK_HAPROXY_SOCKET": socket,
        "TRADESTACK_HAPROXY_BIND": f"127.0.0.1:{ports['haproxy']}",
        "TRADESTACK_BLUE_ADDR": f"127.0.0.1:{ports['blue']}",
        "TRADESTACK_GREEN_ADDR": f"127.0.0.1:{ports['green']}",
    }
    _start_daemon(
        processes, "haproxy", ["haproxy", "-db", "-f", str(REPO / "deploy/haproxy/haproxy.cfg")], haproxy_env, directory
    )
    _start_nginx(processes, directory, ports, env)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "tradestack-api",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{ports['blue']}"], "labels": {"track": "blue"}},
                    {"targets": [f"127.0.0.1:{ports['green']}"], "labels": {"track": "green"}},
                ],
            }
        ],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    _start_daemon(
        processes, "prometheus",
        ["prometheus", f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{ports['prometheus']}"],
        env, directory,
    )  # fmt: skip
    host = OneHost(
        directory,
        env,
        processes,
        ports,
        socket,
        f"http://127.0.0.1:{ports['prometheus']}",
        f"http://127.0.0.1:{ports['haproxy']}",
    )
    host.edge_url = f"https://127.0.0.1:{ports['nginx']}"
    host.edge_certificate = str(directory / "tls" / "server.crt")
    host.blue = processes.start("blue", ["serve", "api", "--port", str(ports["blue"])], env)
    await wait_ready(f"http://127.0.0.1:{ports['blue']}", host.blue)
    deadline = time.monotonic() + 30
    while not (socket_ready := Path(socket).exists()) or host.haproxy.servers()["blue"].operational != 2:
        if time.monotonic() > deadline:
            raise AssertionError(f"HAProxy did not see blue up (socket {socket_ready})")
        time.sleep(0.1)
    _wait_http(f"{host.prometheus}/-/ready")
    _wait_http(f"{host.edge_url}/api/health", certificate=host.edge_certificate)
    return host


def _start_nginx(processes: Processes, directory: Path, ports: dict[str, int], env: dict[str, str]) -> None:
    """nginx with deploy/nginx/tradestack.conf as shipped (HAProxy's address rendered in, ports and paths moved to the
    test's): TLS with a self-signed certificate for 127.0.0.1, the security headers, keep-alive to HAProxy."""
    tls = directory / "tls"
    tls.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tls / "server.key"), "-out", str(tls / "server.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    site = (REPO / "deploy/nginx/tradestack.conf").read_text()
    site = site.replace("${TRADESTACK_HAPROXY_UPSTREAM}", f"127.0.0.1:{ports['haproxy']}")
    site = site.replace("/etc/tradestack/tls/", f"{tls}/")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{ports['nginx_http']};")
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{ports['nginx']} ssl http2;")
    (directory / "nginx-site.conf").write_text(site)
    temp = directory / "nginx-temp"
    temp.mkdir()
    (directory / "nginx.conf").write_text(
        f"daemon off;\npid {directory}/nginx.pid;\nerror_log stderr;\nworker_processes 1;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n"
        f"  include {directory}/nginx-site.conf;\n}}\n"
    )
    _start_daemon(processes, "nginx", ["nginx", "-c", str(directory / "nginx.conf"), "-e", "stderr"], env, directory)


def _start_daemon(processes: Processes, name: str, args: list[str], env: dict[str, str], directory: Path) -> None:
    log_path = directory / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, env=env, cwd=directory, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    process.log_path = log_path  # type: ignore[attr-defined]
    processes.started.append(process)


def _wait_http(url: str, timeout: float = 30, certificate: str | None = None) -> None:
    context = ssl.create_default_context(cafile=certificate) if certificate else True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1, verify=context).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {timeout} s")


@dataclass
class ClientLoad:
    """Reads (keep-alive and a new connection each) and order placements through HAProxy, counting every outcome."""

    base: str
    certificate: str | None = None  # the edge's self-signed certificate, to verify against
    headers: dict[str, str] = field(default_factory=dict)
    account_id: str = ""
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    acknowledged_orders: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def _verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.certificate) if self.certificate else True

    async def sign_in(self, email: str) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=10, verify=self._verify) as http:
            login = await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            self.headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            body = {"name": "load", "base_currency": "USD", "deposit": {"currency": "USD", "amount": "10000000"}}
            opened = await http.post("/api/accounts", json=body, headers=self.headers)
            assert opened.status_code == 201, opened.text
            self.account_id = opened.json()["id"]

    def _count(self, kind: str, response: httpx.Response | None, error: str = "") -> None:
        ok = response is not None and response.status_code < 400
        self.outcomes[f"{kind} {'ok' if ok else 'failed'}"] += 1
        if not ok:
            self.failures.append(f"{kind}: {error or (response.status_code, response.text[:200]) if response else error}")

    async def _keepalive_reads(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, headers=self.headers, timeout=10, verify=self._verify) as http:
            while not self._stop.is_set():
                try:
                    self._count("read keep-alive", await http.get("/api/market/quotes", params={"symbols": "BTC-USD"}))
                except httpx.HTTPError as exc:
                    self._count("read keep-alive", None, repr(exc))
                await asyncio.sleep(0.01)

    async def _fresh_reads(self) -> None:
        while not self._stop.is_set():
            async with httpx.AsyncClient(base_url=self.base, headers=self.headers, timeout=10, verify=self._verify) as http:
                try:
                    self._count("read new-connection", await http.get("/api/accounts"))
                except httpx.HTTPError as exc:
                    self._count("read new-connection", None, repr(exc))
            await asyncio.sleep(0.02)

    async def _orders(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, headers=self.headers, timeout=10, verify=self._verify) as http:
            while not self._stop.is_set():
                body = {
                    "account_id": self.account_id, "client_order_id": f"load-{uuid.uuid4().hex}", "symbol": "BTC-USD",
                    "side": "buy", "type": "limit", "time_in_force": "gtc", "quantity": "0.001",
                    "limit_price": str((Decimal(30000)).quantize(Decimal("0.01"), rounding=ROUND_DOWN)),
                }  # fmt: skip
                try:
                    response = await http.post("/api/orders", json=body)
                    self._count("order", response)
                    if response.status_code == 201:
                        self.acknowledged_orders.append(response.json()["id"])
                except httpx.HTTPError as exc:
                    self._count("order", None, repr(exc))
                await asyncio.sleep(0.05)

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        tasks = [
            asyncio.create_task(job()) for job in (self._keepalive_reads, self._keepalive_reads, self._fresh_reads, self._orders)
        ]
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*tasks)

    def count(self, prefix: str, outcome: str) -> int:
        return sum(n for key, n in self.outcomes.items() if key.startswith(prefix) and key.endswith(outcome))


def python_command(script: Path) -> list[str]:
    return [sys.executable, str(script)]


@contextlib.contextmanager
def fresh_database(postgres_server: str) -> Iterator[str]:
    """A brand-new PostgreSQL database for a whole module's installation, dropped at the end."""
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"ts_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = make_url(postgres_server).set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(admin_dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class ThreadedQuotePump:
    """The QuotePump in a thread with its own event loop, so a module-scoped installation keeps quotes flowing across
    tests (each test has its own loop)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="quote-pump", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            async with QuotePump(self.settings, "BTC-USD", 40000, 40040, every=0.2):
                self._started.set()
                while not self._stop.is_set():
                    await asyncio.sleep(0.1)

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._started.set()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(60)
        if self._error is not None:
            raise AssertionError(f"quote pump failed: {self._error!r}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
