"""Reading order requests and events back from their JSON form (`to_dict`): every field checked, named when wrong.

Decimals travel as strings, timestamps as ISO 8601, enums as their values. Unknown or missing
fields are refused, so a stored event always reads back as exactly what was written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tradestack.core.money import D
from tradestack.domain.marketdata import Side
from tradestack.domain.orders import EVENT_TYPES, Liquidity, OrderEvent, OrderRequest, OrderType, TimeInForce


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _decimal(name: str, value: Any) -> Decimal:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a decimal number written as a string, got {value!r}")
    return D(value)


def _optional_decimal(name: str, value: Any) -> Decimal | None:
    return None if value is None else _decimal(name, value)


def _timestamp(name: str, value: Any) -> datetime:
    try:
        return datetime.fromisoformat(_text(name, value))
    except ValueError as exc:
        raise ValueError(f"{name} must be an ISO 8601 timestamp, got {value!r}") from exc


def _member(enum: type[StrEnum]) -> Callable[[str, Any], StrEnum]:
    def decode(name: str, value: Any) -> StrEnum:
        try:
            return enum(_text(name, value))
        except ValueError:
            valid = ", ".join(member.value for member in enum)
            raise ValueError(f"{name} must be one of {valid}, got {value!r}") from None

    return decode


def _request(name: str, value: Any) -> OrderRequest:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be an object, got {value!r}")
    return OrderRequest.from_dict(value)


_Decoder = Callable[[str, Any], Any]

_REQUEST_DECODERS: Mapping[str, _Decoder] = {
    "client_order_id": _text,
    "account_id": _text,
    "symbol": _text,
    "side": _member(Side),
    "type": _member(OrderType),
    "quantity": _decimal,
    "limit_price": _optional_decimal,
    "stop_price": _optional_decimal,
    "time_in_force": _member(TimeInForce),
}

_EVENT_DECODERS: Mapping[str, _Decoder] = {
    "order_id": _text,
    "ts": _timestamp,
    "request": _request,
    "reason": _text,
    "fill_id": _text,
    "quantity": _decimal,
    "price": _decimal,
    "fee": _decimal,
    "fee_currency": _text,
    "liquidity": _member(Liquidity),
    "new_quantity": _optional_decimal,
    "new_limit_price": _optional_decimal,
    "new_stop_price": _optional_decimal,
}


def _decode_fields(what: str, data: Mapping[str, Any], names: set[str], decoders: Mapping[str, _Decoder]) -> dict[str, Any]:
    missing = sorted(names - data.keys())
    unknown = sorted(data.keys() - names)
    if missing or unknown:
        parts = [f"missing {', '.join(missing)}" if missing else "", f"unknown {', '.join(unknown)}" if unknown else ""]
        raise ValueError(f"{what}: {'; '.join(part for part in parts if part)}")
    return {name: decoders[name](name, data[name]) for name in names}


def decode_request(data: Mapping[str, Any]) -> OrderRequest:
    """The request written by `OrderRequest.to_dict`; ValueError naming the field when the data is malformed."""
    return OrderRequest(**_decode_fields("OrderRequest", data, {field.name for field in fields(OrderRequest)}, _REQUEST_DECODERS))


def decode_event(data: Mapping[str, Any]) -> OrderEvent:
    """The event written by `OrderEvent.to_dict`; ValueError naming the problem when it is malformed."""
    kind = data.get("kind")
    event_type = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if event_type is None:
        raise ValueError(f"unknown order event kind {kind!r}; known kinds: {', '.join(EVENT_TYPES)}")
    body = {key: value for key, value in data.items() if key != "kind"}
    names = {field.name for field in fields(event_type)}
    return event_type(**_decode_fields(event_type.__name__, body, names, _EVENT_DECODERS))
