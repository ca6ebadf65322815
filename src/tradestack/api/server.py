"""Running the API under uvicorn, with metrics shared across workers and a clean exit on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from types import FrameType

import uvicorn

from tradestack.api.protocol import DirectWriteWebSocketProtocol, ReadTimeoutHttpProtocol
from tradestack.kit.config import Settings
from tradestack.kit.metrics import MULTIPROCESS_ENV

APP_FACTORY = "tradestack.api.app:create_app"


def prepare_multiprocess_metrics(data_dir: Path) -> Path:
    """Give the workers an empty directory to share metric samples through (before any worker starts)."""
    existing = os.environ.get(MULTIPROCESS_ENV)
    if existing:
        path = Path(existing)
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="metrics-", dir=data_dir))
        os.environ[MULTIPROCESS_ENV] = str(path)
    if path.exists():
        for child in path.iterdir():
            if child.is_file() and child.suffix == ".db":
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def serve(settings: Settings, *, app: str = APP_FACTORY, factory: bool = True) -> int:
    """Serve `app` until SIGTERM/SIGINT; in-flight requests finish; returns the exit code (0)."""
    created_metrics_dir: Path | None = None
    if settings.workers > 1 and not os.environ.get(MULTIPROCESS_ENV):
        created_metrics_dir = prepare_multiprocess_metrics(settings.data_dir)
    received: list[int] = []

    def remember(signum: int, _frame: FrameType | None) -> None:
        # uvicorn re-raises the signal after its graceful shutdown; landing here lets us exit 0.
        received.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, remember)
    try:
        uvicorn.run(
            app,
            factory=factory,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            log_level=settings.log_level,
            access_log=False,
            # Forwarded headers only from the proxies the settings name (none by default).
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
            http=ReadTimeoutHttpProtocol,
            ws=DirectWriteWebSocketProtocol,
            timeout_keep_alive=settings.keep_alive_seconds,
            timeout_worker_healthcheck=settings.worker_healthcheck_seconds,
            ws_max_size=settings.ws_max_frame_bytes,
            timeout_graceful_shutdown=int(settings.graceful_timeout_seconds),
            server_header=False,
            ws_per_message_deflate=settings.ws_compression,
        )
    finally:
        if created_metrics_dir is not None:
            shutil.rmtree(created_metrics_dir, ignore_errors=True)
    return 0
