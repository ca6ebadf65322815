"""The runtime's typed registry of per-process components."""

from __future__ import annotations

from tradestack.kit.runtime import Components, Slot


class _Hub:
    pass


HUB: Slot[_Hub] = Slot("test.hub")
OTHER: Slot[_Hub] = Slot("test.hub")  # the same name is a different slot: slots are keys by identity


def test_a_slot_is_empty_until_set_then_holds_what_was_put() -> None:
    components = Components()
    assert components.get(HUB) is None
    assert HUB not in components
    hub = _Hub()
    assert components.put(HUB, hub) is hub
    assert components.get(HUB) is hub
    assert HUB in components
    assert components.get(OTHER) is None
    assert components.pop(HUB) is hub
    assert components.get(HUB) is None
    assert components.pop(HUB) is None


def test_get_or_create_creates_once() -> None:
    components = Components()
    made: list[_Hub] = []

    def create() -> _Hub:
        made.append(_Hub())
        return made[-1]

    first = components.get_or_create(HUB, create)
    assert components.get_or_create(HUB, create) is first
    assert made == [first]
    replaced = components.put(HUB, _Hub())
    assert components.get_or_create(HUB, create) is replaced
    assert len(made) == 1
