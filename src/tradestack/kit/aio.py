"""Small asyncio helpers shared by the background loops."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; True when it is set.

    Not ``asyncio.wait_for(event.wait(), timeout)``: on Python 3.11, a cancellation that arrives in
    the same loop iteration as the event is swallowed by `wait_for` (it returns the result instead),
    so a background loop that was told to stop goes round again. Seen: the audit chainer's stop
    hanging for its whole close budget after a wake-up raced the cancellation.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
