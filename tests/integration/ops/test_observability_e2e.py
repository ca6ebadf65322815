"""Real daemons: Prometheus scraping a real Tradestack API, Alertmanager delivering to a webhook sink.

- Every Grafana panel's PromQL runs against that Prometheus without error; the core panels return data.
- Stopping the API fires TradestackAPIDown through the page route (and the ticket copy) within its
  `for` (30 s) plus scrape/evaluation/grouping bounds; starting it again sends the resolved notification.

Intervals are shortened (1 s scrape and evaluation, 1 s group_wait) but the rules, their `for`
durations and the routes are the ones in deploy/.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")) and os.environ.get("CI") != "true",
        reason="needs prometheus and prometheus-alertmanager (bash scripts/ensure-observability-tools.sh)",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Sink:
    """The webhook receiver: every notification Alertmanager posts, with the path (receiver) it hit."""

    url: str
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def notifications(self, alertname: str, status: str, path: str) -> list[dict[str, Any]]:
        return [
            body
            for hit, body in list(self.received)
            if hit == path
            and body.get("status") == status
            and any(alert["labels"].get("alertname") == alertname for alert in body.get("alerts", []))
        ]


@dataclass
class Stack:
    api_port: int
    prometheus: str
    sink: Sink
    start_api: Any
    stop_api: Any


def wait_until(predicate: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {seconds:g} s")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("observability")
    started: list[subprocess.Popen[bytes]] = []

    # The webhook sink.
    sink = Sink(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            sink.received.append((self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink.url = f"http://127.0.0.1:{server.server_address[1]}"

    # The API.
    api_port = free_port()
    env = {
        **os.environ,
        "TRADESTACK_DATA_DIR": str(tmp / "data"),
        "TRADESTACK_PROBE_INTERVAL_SECONDS": "1",
        "TRADESTACK_MARKETDATA_FEEDS": "[]",
        "TRADESTACK_LOG_LEVEL": "warning",
    }
    env = {
        key: value for key, value in env.items() if not key.startswith("TRADESTACK_DATABASE") and key != "TRADESTACK_REDIS_URL"
    }
    tradestack = str(Path(sys.executable).parent / "tradestack")
    subprocess.run([tradestack, "db", "upgrade"], env=env, check=True, capture_output=True)
    api: list[subprocess.Popen[bytes]] = []

    def start_api() -> None:
        process = subprocess.Popen(
            [tradestack, "serve", "api", "--port", str(api_port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        api.append(process)
        started.append(process)
        wait_until(lambda: _answers(f"http://127.0.0.1:{api_port}/api/health"), 60, "the API answering")

    def stop_api() -> None:
        process = api.pop()
        process.terminate()
        process.wait(timeout=30)

    # Alertmanager: the deploy config, receivers pointed at the sink, grouping timers shortened.
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = sink.url + "/" + receiver["name"]
    for route in [config["route"], *config["route"]["routes"]]:
        route.update(group_wait="1s", group_interval="2s", repeat_interval="1h")
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(config))
    am_port = free_port()
    started.append(
        subprocess.Popen(
            [
                "prometheus-alertmanager",
                f"--config.file={tmp / 'alertmanager.yml'}",
                f"--storage.path={tmp / 'am'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )

    # Prometheus: the deploy rules with 1 s group intervals, scraping the API every second.
    rules = tmp / "rules"
    rules.mkdir()
    for path in (DEPLOY / "prometheus" / "rules").glob("*.yml"):
        data = yaml.safe_load(path.read_text())
        for group in data["groups"]:
            group["interval"] = "1s"
        (rules / path.name).write_text(yaml.safe_dump(data))
    prometheus_config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules / "*.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "tradestack", "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config))
    prom_port = free_port()
    started.append(
        subprocess.Popen(
            [
                "prometheus",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    try:
        start_api()
        wait_until(lambda: _answers(f"http://127.0.0.1:{am_port}/-/ready"), 60, "Alertmanager ready")
        wait_until(lambda: _answers(f"http://127.0.0.1:{prom_port}/-/ready"), 60, "Prometheus ready")
        yield Stack(api_port, f"http://127.0.0.1:{prom_port}", sink, start_api, stop_api)
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        server.shutdown()
        server.server_close()


def query(prometheus: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = response.json()
    return body


def panels() -> list[tuple[str, str, str, bool]]:
    found = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            core = "core:" in panel.get("description", "")
            for target in panel["targets"]:
                found.append((path.stem, panel["title"], target["expr"].replace("$__rate_interval", "1m"), core))
    return found


def test_every_dashboard_panel_queries_a_real_prometheus(stack: Stack) -> None:
    api = f"http://127.0.0.1:{stack.api_port}"
    for _ in range(20):
        httpx.get(f"{api}/api/version", timeout=5)
        httpx.get(f"{api}/api/instruments", timeout=5)
    all_panels = panels()
    assert len(all_panels) >= 25
    core = [panel for panel in all_panels if panel[3]]
    assert len(core) >= 10

    def core_have_data() -> bool:
        return all(query(stack.prometheus, expr)["data"]["result"] for _, _, expr, _ in core)

    # Rates need two scrapes and the recorded series one evaluation after them.
    wait_until(core_have_data, 60, "every core panel returning data")
    for dashboard, title, expr, _ in all_panels:
        body = query(stack.prometheus, expr)
        assert body["status"] == "success", f"{dashboard} / {title}: {body.get('error')}"


def test_api_down_pages_and_resolves_through_alertmanager(stack: Stack) -> None:
    wait_until(lambda: query(stack.prometheus, 'up{job="tradestack"} == 1')["data"]["result"], 30, "the API scraped")
    stack.stop_api()
    # for: 30 s + 1 s scrape + 1 s evaluation + 1 s group_wait, with margin for a loaded machine.
    firing = wait_until(
        lambda: stack.sink.notifications("TradestackAPIDown", "firing", "/page"), 90, "the API-down page reaching the sink"
    )
    alert = next(a for a in firing[0]["alerts"] if a["labels"]["alertname"] == "TradestackAPIDown")
    assert alert["labels"]["severity"] == "page"
    assert alert["labels"]["instance"] == f"127.0.0.1:{stack.api_port}"
    assert alert["annotations"]["runbook_url"] == "docs/runbooks/incident.md#tradestackapidown"
    # pages also leave a ticket: another route, with a group_wait of its own, so it may come a moment after the page
    wait_until(lambda: stack.sink.notifications("TradestackAPIDown", "firing", "/ticket"), 30, "the API-down ticket")
    assert not stack.sink.notifications("TradestackAPIDown", "resolved", "/page")

    stack.start_api()
    wait_until(
        lambda: stack.sink.notifications("TradestackAPIDown", "resolved", "/page"),
        90,
        "the resolved notification reaching the sink",
    )
