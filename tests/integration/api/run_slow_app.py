"""Serve `slow_app:create` exactly as `tradestack serve api` serves the real app."""

from __future__ import annotations

import sys

from tradestack.api.server import serve
from tradestack.kit.config import Settings

if __name__ == "__main__":
    sys.exit(serve(Settings(), app="slow_app:create", factory=True))
