"""Order, fill and portfolio updates for WebSocket subscribers, sent through the fan-out bus.

Channels are per trading account: ``orders:{account_id}``, ``fills:{account_id}`` and
``portfolio:{account_id}``. A WebSocket client subscribes to ``orders``, ``fills`` or ``portfolio``
and receives the channels of the accounts it may read (see `api/ws.py`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tradestack.kit.logging import get_logger
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.schemas import frame
from tradestack.marketdata.service import FANOUT_CHANNEL, encode_message

log = get_logger(__name__)
ACCOUNT_CHANNELS = ("orders", "fills", "portfolio")


async def publish(runtime: Runtime, kind: str, account_id: str, data: dict[str, Any]) -> None:
    """Send one update; a bus failure is logged, never raised (the update is already committed)."""
    channel = f"{kind}:{account_id}"
    try:
        await runtime.bus.publish(FANOUT_CHANNEL, encode_message(channel, frame(kind.removesuffix("s"), channel, data)))
    except Exception as exc:  # noqa: BLE001 - notifications are best effort; the books are not
        log.warning("could not publish a trading update", channel=channel, error=f"{type(exc).__name__}: {exc}")


async def publish_order(runtime: Runtime, order: BaseModel) -> None:
    data = order.model_dump(mode="json")
    await publish(runtime, "orders", str(data["account_id"]), data)
