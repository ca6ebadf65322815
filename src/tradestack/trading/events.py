"""Order, fill and portfolio updates for WebSocket subscribers, sent through the bus.

Channels are per trading account: ``orders:{account_id}``, ``fills:{account_id}`` and
``portfolio:{account_id}``. A WebSocket client subscribes to ``orders``, ``fills`` or ``portfolio``
and receives the channels of the accounts it may read (see `api/ws.py`).

They go on their own bus channel, `ACCOUNT_CHANNEL`, not on the market data's `FANOUT_CHANNEL`: the
WebSocket hub subscribes to both, while the engine and the strategy runner, which want only quotes,
subscribe to the market data's and are never sent an account's update (neither by Redis nor in process).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from tradestack.kit.logging import get_logger
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.schemas import frame
from tradestack.marketdata.service import encode_message

log = get_logger(__name__)
ACCOUNT_CHANNELS = ("orders", "fills", "portfolio")
ACCOUNT_CHANNEL = "accounts"
"""The bus channel of every account's updates (all kinds, so that each account channel keeps its order)."""


async def publish(runtime: Runtime, kind: str, account_id: str, data: dict[str, Any]) -> None:
    """Send one update; a bus failure is logged, never raised (the update is already committed)."""
    await publish_many(runtime, kind, [(account_id, data)])


def messages_of(updates: Sequence[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, bytes]]:
    """The bus messages (bus channel, message) that send updates (kind, account id, data), in order."""
    messages = []
    for kind, account_id, data in updates:
        channel = f"{kind}:{account_id}"
        messages.append((ACCOUNT_CHANNEL, encode_message(channel, frame(kind.removesuffix("s"), channel, data))))
    return messages


async def publish_many(runtime: Runtime, kind: str, updates: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Send updates (account id, data) in order, in one round trip; a bus failure is logged, never raised."""
    await publish_updates(runtime, [(kind, account_id, data) for account_id, data in updates])


async def publish_updates(runtime: Runtime, updates: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
    """Send updates (kind, account id, data) of any kinds in order, in one round trip; a bus failure is logged, never
    raised."""
    try:
        await runtime.bus.publish_many(messages_of(updates))
    except Exception as exc:  # noqa: BLE001 - notifications are best effort; the books are not
        channels = sorted({f"{kind}:{account_id}" for kind, account_id, _ in updates})
        log.warning("could not publish trading updates", channels=channels[:10], error=f"{type(exc).__name__}: {exc}")


def _order_updates(orders: Sequence[BaseModel]) -> list[tuple[str, str, dict[str, Any]]]:
    updates = []
    for order in orders:
        data = order.model_dump(mode="json")
        updates.append(("orders", str(data["account_id"]), data))
    return updates


def order_messages(orders: Sequence[BaseModel]) -> list[tuple[str, bytes]]:
    """The bus messages that send the orders' updates, in order (what `publish_orders` sends)."""
    return messages_of(_order_updates(orders))


async def publish_orders(runtime: Runtime, orders: Sequence[BaseModel]) -> None:
    """Send the orders' updates, in order, in one round trip."""
    await publish_updates(runtime, _order_updates(orders))


async def publish_order(runtime: Runtime, order: BaseModel) -> None:
    await publish_orders(runtime, [order])
