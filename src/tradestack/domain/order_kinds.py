"""The kinds and states of an order: how it is priced, how long it works, where it is in its life.

Split from `tradestack.domain.orders`, which re-exports every name here; matching and risk read them.
"""

from __future__ import annotations

from enum import StrEnum


class OrderType(StrEnum):
    """How an order is priced."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"

    @property
    def needs_limit_price(self) -> bool:
        """Whether orders of this type carry a limit price (and others must not)."""
        return self in _LIMIT_TYPES

    @property
    def needs_stop_price(self) -> bool:
        """Whether orders of this type carry a stop price and wait to be triggered."""
        return self in _STOP_TYPES


_LIMIT_TYPES = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_STOP_TYPES = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})


class TimeInForce(StrEnum):
    """How long an order works: the trading day, until canceled, immediate-or-cancel, fill-or-kill."""

    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class Liquidity(StrEnum):
    """Whether a fill added liquidity (maker) or took it (taker); unknown when the venue does not say."""

    MAKER = "maker"
    TAKER = "taker"
    UNKNOWN = "unknown"


class OrderStatus(StrEnum):
    """Where an order is in its life. An order with no events yet has no status (None)."""

    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    DENIED = "denied"
    TRIGGERED = "triggered"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        """Whether the order is final: no event applies any more."""
        return self in _TERMINAL_STATUSES

    @property
    def is_open(self) -> bool:
        """Whether the order may still change (the opposite of `is_terminal`)."""
        return not self.is_terminal


_TERMINAL_STATUSES = frozenset(
    {OrderStatus.DENIED, OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED}
)
WORKING_STATUSES = frozenset({OrderStatus.ACCEPTED, OrderStatus.TRIGGERED, OrderStatus.PARTIALLY_FILLED})
"""The statuses of an order a matching engine works: accepted, and not ended yet."""
