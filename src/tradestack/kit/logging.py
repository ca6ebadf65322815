"""Structured logs: one JSON object per line (ts, level, event, and bound context such as request_id)."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any, BinaryIO

import orjson
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _orjson_dumps(event: Any, **_: Any) -> bytes:
    return orjson.dumps(event, default=str)


def _drop_console_only_keys(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate of the message
    return event


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    """Route structlog and the standard library (uvicorn, SQLAlchemy, Alembic) to one format on stdout."""
    numeric_level = _LEVELS[level]
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts")
    shared: list[Any] = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, timestamper]
    if json:
        structlog.configure(
            processors=[
                *shared,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_orjson_dumps),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
            logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
            cache_logger_on_first_use=True,
        )
        renderer: Any = structlog.processors.JSONRenderer(serializer=lambda event, **_: _orjson_dumps(event).decode())
    else:
        structlog.configure(
            processors=[*shared, structlog.dev.ConsoleRenderer()],
            wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
            logger_factory=structlog.PrintLoggerFactory(sys.stdout),
            cache_logger_on_first_use=True,
        )
        renderer = structlog.dev.ConsoleRenderer()

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_console_only_keys],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info, renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    for name in ("uvicorn", "uvicorn.error", "alembic"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Requests are logged once, by our access middleware, with the route template and request id.
    logging.getLogger("uvicorn.access").disabled = True
    ACCESS_LOG.configure(enabled=numeric_level <= logging.INFO, stream=sys.stdout.buffer if json else None)


class AccessLog:
    """The access log's one line per request, written as structlog writes it without going through its processors.

    In JSON mode the line is the object structlog would render for ``log.info("request", **fields)``
    with the request id bound: the fields, ``event``, ``request_id``, ``level`` and ``ts`` (ISO 8601,
    UTC, ``Z``), on stdout; each request pays one orjson call and one write instead of the chain of
    processors. Only ``request_id`` is bound around a request (by the access middleware), so no
    other bound context is missed. In console mode, or before `configure_logging`, the line goes
    through structlog.
    """

    def __init__(self) -> None:
        self.enabled = True
        self._stream: BinaryIO | None = None
        self._fallback = get_logger("tradestack.access")

    def configure(self, *, enabled: bool, stream: BinaryIO | None) -> None:
        self.enabled = enabled
        self._stream = stream

    def request(self, request_id: str, **fields: Any) -> None:
        """Log one request (``event`` "request") with ``fields`` in their order, then the request id."""
        if not self.enabled:
            return
        stream = self._stream
        if stream is None:
            self._fallback.info("request", **fields)
            return
        fields["event"] = "request"
        fields["request_id"] = request_id
        fields["level"] = "info"
        fields["ts"] = datetime.now(UTC)
        stream.write(orjson.dumps(fields, default=str, option=orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE))
        stream.flush()


def get_logger(name: str | None = None) -> Any:
    """A structlog logger."""
    return structlog.get_logger(name)


ACCESS_LOG = AccessLog()
"""This process's access log (configured by `configure_logging`)."""
