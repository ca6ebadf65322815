"""First start: "serving on" is printed once the server is ready, and skipped shipped rows are one line
pointing at `tradestack data report`."""

from __future__ import annotations

import queue
import signal
import threading
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tradestack.cli import app

from ..api.test_server_process import TRADESTACK, _env, free_port, spawn  # type: ignore[import-not-found]

__all__ = ["spawn"]  # the fixture, used by name below

runner = CliRunner()


@pytest.mark.slow
def test_up_says_serving_only_once_it_is_ready(tmp_path: Path, spawn: object) -> None:
    port = free_port()
    args = [str(TRADESTACK), "up", "--port", str(port), "--data-dir", str(tmp_path / "data"), "--no-demo-data"]
    process = spawn(args, _env(tmp_path))  # type: ignore[operator]
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.put(raw.decode(errors="replace"))

    threading.Thread(target=read, daemon=True).start()
    while True:
        line = lines.get(timeout=120)
        if "serving on" in line:
            break
    assert httpx.get(f"http://127.0.0.1:{port}/api/ready", timeout=5).status_code == 200
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def test_data_report_lists_the_skipped_rows_of_the_shipped_files() -> None:
    result = runner.invoke(app, ["data", "report", "btc-usd"])
    assert result.exit_code == 0, result.output
    assert "BTC-USD-15-MIN.csv line 8722: timestamp 2021-12-29T13:50:02+00:00 is not on the 15m grid" in result.output
    assert "rows skipped in 1 data set(s)" in result.output
    assert runner.invoke(app, ["data", "report", "nope"]).exit_code == 2
