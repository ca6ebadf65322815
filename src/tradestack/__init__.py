"""Tradestack: a self-hosted trading platform with its production operations kit built in."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tradestack")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
