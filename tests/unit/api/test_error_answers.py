"""What an exception that escapes a route is answered with: contention and outages are 503s that say which."""

from __future__ import annotations

import orjson
import sqlalchemy.exc

from tradestack.api.errors import error_response_for


def _detail(exc: Exception) -> tuple[int, str, str | None]:
    response = error_response_for(exc, "req-1")
    return response.status_code, orjson.loads(response.body)["detail"], response.headers.get("Retry-After")


def test_a_pool_checkout_timeout_is_a_busy_server_not_an_unreachable_database() -> None:
    exc = sqlalchemy.exc.TimeoutError("QueuePool limit of size 10 overflow 0 reached, connection timed out, timeout 5.00")
    status, detail, retry = _detail(exc)
    assert status == 503
    assert retry is not None
    assert "busy" in detail
    assert "pool timeout" in detail
    assert "unreachable" not in detail


def test_a_lost_database_connection_is_an_unreachable_database() -> None:
    exc = sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "Connection refused"))
    status, detail, retry = _detail(exc)
    assert (status, retry is not None) == (503, True)
    assert "the database is unreachable" in detail


def test_anything_else_is_a_500_with_the_request_id() -> None:
    status, detail, retry = _detail(KeyError("bug"))
    assert (status, retry) == (500, None)
    assert "req-1" in detail
