"""Typed errors. Each carries the HTTP status a caller sees and a detail saying what to fix.

The API renders every `TradestackError` through one handler as
``{"error": "<ErrorClass>", "detail": "<what to fix>"}``; anything else is a bug and a 500.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TradestackError(Exception):
    """Base of every expected failure."""

    status_code: ClassVar[int] = 400

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    @property
    def error(self) -> str:
        """Name of the error class, as shown to API callers."""
        return type(self).__name__


class BadRequestError(TradestackError):
    status_code = 400


class AuthenticationError(TradestackError):
    status_code = 401


class PermissionDeniedError(TradestackError):
    status_code = 403


class NotFoundError(TradestackError):
    status_code = 404


class ConflictError(TradestackError):
    status_code = 409


class PayloadTooLargeError(TradestackError):
    status_code = 413


class ValidationFailedError(TradestackError):
    status_code = 422


class RateLimitedError(TradestackError):
    status_code = 429


class ServiceUnavailableError(TradestackError):
    status_code = 503


class ConfigurationError(Exception):
    """The process cannot start with the configuration it was given (not an HTTP error)."""
