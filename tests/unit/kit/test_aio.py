"""`wait_event` never swallows a cancellation, even one that races the event."""

from __future__ import annotations

import asyncio

from tradestack.kit.aio import wait_event


async def test_a_cancellation_racing_the_event_still_stops_the_loop() -> None:
    event = asyncio.Event()
    rounds = 0

    async def background() -> None:
        nonlocal rounds
        while True:
            await wait_event(event, 30)
            event.clear()
            rounds += 1

    task = asyncio.create_task(background())
    await asyncio.sleep(0)  # the loop now waits for the event
    event.set()
    task.cancel()  # in the same iteration as the event: wait_for would return the event's result instead
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done
    assert task.cancelled()


async def test_the_event_or_the_timeout_ends_the_wait() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 5) is True
