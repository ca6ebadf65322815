"""Handing order changes to an engine in this process (`LocalCommands`)."""

from __future__ import annotations

import asyncio

from tradestack.trading.commands import Change, LocalCommands


async def test_changes_with_nothing_to_settle_are_handed_over_in_order_without_a_pass_of_the_event_loop() -> None:
    """The order desk hands over every group's accepted orders: doing so must not cost a task per order and a
    pass of the request loop (a pass lets the engine's thread take the GIL in the middle of the answer)."""
    delivered: list[tuple[str, str]] = []

    async def deliver(change: Change) -> None:
        delivered.append((change.account_id, change.order_id))

    async def deliver_settled(change: Change) -> None:
        raise AssertionError("nothing here is to be settled")

    commands = LocalCommands(deliver, deliver_settled)
    handing = commands.orders_changed([Change("a1", "o1"), Change("a2", "o2"), Change("a1", "o3")])
    try:
        handing.send(None)
    except StopIteration:
        pass
    else:
        handing.close()
        raise AssertionError("the hand-over waited for the event loop")
    assert delivered == [("a1", "o1"), ("a2", "o2"), ("a1", "o3")]


async def test_a_change_to_settle_is_waited_for_and_every_change_is_handed_over() -> None:
    delivered: list[tuple[str, str, bool]] = []
    settled = asyncio.Event()

    async def deliver(change: Change) -> None:
        delivered.append((change.account_id, change.order_id, False))

    async def deliver_settled(change: Change) -> None:
        delivered.append((change.account_id, change.order_id, True))
        await asyncio.sleep(0)
        settled.set()

    await LocalCommands(deliver, deliver_settled).orders_changed([Change("a1", "o1"), Change("a1", "o2", settle=True)])
    assert settled.is_set()
    assert delivered == [("a1", "o1", False), ("a1", "o2", True)]
