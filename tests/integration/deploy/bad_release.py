"""A test-only bad release: the real API whose quotes service fails (HTTP 500) on every second call.

Run as ``python bad_release.py --host H --port P`` (the release spec's command); it serves the real app through
`tradestack.api.server.serve`, so its metrics (and the 500s) are the real app's. Nothing like it ships.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI

_counter = itertools.count()


def create_bad_app() -> FastAPI:
    from tradestack.api.app import create_app
    from tradestack.marketdata.service import MarketDataService

    good = MarketDataService.quotes_json

    async def sometimes_broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        if next(_counter) % 2:
            raise RuntimeError("test-only fault of the bad release")
        return await good(self, *args, **kwargs)

    MarketDataService.quotes_json = sometimes_broken  # type: ignore[method-assign]
    return create_app()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    from tradestack.api.server import serve
    from tradestack.kit.config import Settings

    raise SystemExit(serve(Settings(host=options.host, port=options.port), app="bad_release:create_bad_app", factory=True))
