"""An engine takes an order's committed state from its hand-over, never a stale one.

Order entry hands the engine each changed order as its transaction committed it (`commands.Change`),
so the engine need not read it again; but hand-overs can arrive in another order than their commits
(a cancel committed, and handed over, before the order desk hands over the order it cancels). Each
case here hands states to a shard of its own (the app's engine thread is told too, but sees no
quote) in the order a race would, and checks the book holds what the database holds: in process (the
`Order`) and through the Redis stream's message (`commands.stream_fields` read back by
`engine.change_of`, on this process's clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from tradestack.domain.marketdata import Quote
from tradestack.domain.orders import Order
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.trading import engine as engine_module
from tradestack.trading.commands import Change, Handed, stream_fields, tick
from tradestack.trading.engine import EngineShard, change_of
from tradestack.trading.repository import TradingRepository

from ..conftest import MakeUser, TestUser  # type: ignore[import-not-found]
from .test_orders import limit_buy, open_account  # type: ignore[import-not-found]


class _Orders:
    """One trader's orders through the API, each change's committed state kept with the tick taken before it."""

    def __init__(self, client: httpx.AsyncClient, runtime: Runtime, trader: TestUser, account: str, via: str) -> None:
        self.client, self.runtime, self.trader, self.account, self.via = client, runtime, trader, account, via

    async def state(self, order_id: str, begun_at: int) -> Change:
        async with self.runtime.database.read_session() as session:
            order = await TradingRepository(session).load(order_id)
        assert order is not None
        change = Change(self.account, order_id, state=order, begun_at=begun_at)
        return change if self.via == "process" else streamed(change)

    async def submit(self, name: str, price: str = "100.00", quantity: str = "10") -> Change:
        begun_at = tick()
        response = await self.client.post(
            "/api/orders", json=limit_buy(self.account, name, price, quantity), headers=self.trader.headers
        )
        assert response.status_code == 201, response.text
        return await self.state(response.json()["id"], begun_at)

    async def replace(self, order_id: str, **terms: str) -> Change:
        begun_at = tick()
        response = await self.client.patch(f"/api/orders/{order_id}", json=terms, headers=self.trader.headers)
        assert response.status_code == 200, response.text
        return await self.state(order_id, begun_at)

    async def cancel(self, order_id: str) -> Change:
        begun_at = tick()
        response = await self.client.delete(f"/api/orders/{order_id}", headers=self.trader.headers)
        assert response.status_code == 200, response.text
        return await self.state(order_id, begun_at)


def streamed(change: Change, clock: bytes | None = None) -> Change:
    """The change as the engine reads it from its Redis stream (fields and values as bytes); `clock` stands for another
    host's."""
    fields = {key.encode(): value if isinstance(value, bytes) else value.encode() for key, value in stream_fields(change).items()}
    if clock is not None:
        fields[b"clock"] = clock
    read = change_of(fields)
    assert read is not None
    return read


@pytest.fixture(params=["process", "stream"])
async def orders(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, request: pytest.FixtureRequest) -> _Orders:
    trader = await make_user(Role.TRADER)
    return _Orders(client, runtime, trader, await open_account(client, trader), request.param)


@pytest.fixture
async def shard(runtime: Runtime) -> EngineShard:
    """A shard of the test's own, past its first step (its first reconciliation: the next is seconds away)."""
    created = EngineShard(runtime)
    await created.step()
    return created


async def _hand(shard: EngineShard, *changes: Change, together: bool) -> None:
    """Hand `changes` over in this order: all before one step (`together`), or a step after each."""
    for change in changes:
        shard.note_changed(change)
        if not together:
            await shard.step()
    await shard.step()


def _terms(shard: EngineShard, order_id: str) -> tuple[Decimal | None, Decimal] | None:
    """(limit price, remaining) of the order in the shard's book; None when it is not there."""
    working = shard.engines["AAPL"].working_order(order_id) if "AAPL" in shard.engines else None
    return None if working is None else (working.limit_price, working.remaining)


def _quote(ask: str) -> Quote:
    price = Decimal(ask)
    return Quote("AAPL", price - 1, price, Decimal(4), Decimal(4), price, Decimal(1), datetime.now(UTC))


def _of(order: Order | None) -> tuple[Decimal | None, Decimal]:
    assert order is not None
    return order.request.limit_price, order.remaining_quantity


@pytest.mark.parametrize("together", [False, True], ids=["apart", "together"])
async def test_a_new_orders_state_handed_over_after_its_replace_is_not_placed(
    orders: _Orders, shard: EngineShard, together: bool
) -> None:
    new = await orders.submit("raced")
    replaced = await orders.replace(new.order_id, limit_price="101.00", quantity="12")
    await _hand(shard, replaced, new, together=together)
    assert _terms(shard, new.order_id) == (Decimal("101.00"), Decimal(12))


@pytest.mark.parametrize("together", [False, True], ids=["apart", "together"])
async def test_a_new_orders_state_handed_over_after_its_cancel_is_not_placed(
    orders: _Orders, shard: EngineShard, together: bool
) -> None:
    new = await orders.submit("canceled-first")
    canceled = await orders.cancel(new.order_id)
    await _hand(shard, canceled, new, together=together)
    assert _terms(shard, new.order_id) is None


async def test_a_stale_replace_after_a_newer_one_is_not_applied(orders: _Orders, shard: EngineShard) -> None:
    new = await orders.submit("twice")
    first = await orders.replace(new.order_id, limit_price="101.00")
    second = await orders.replace(new.order_id, limit_price="102.00")
    await _hand(shard, new, second, first, together=False)
    assert _terms(shard, new.order_id) == (Decimal("102.00"), Decimal(10))


async def test_a_state_past_a_version_the_engine_never_heard_of_is_read_from_the_database(
    orders: _Orders, shard: EngineShard
) -> None:
    """Book at v2; v4 handed over while v5 is committed (v3's and v5's hand-overs still on their way): it reads v5."""
    new = await orders.submit("gap")
    await _hand(shard, new, together=False)
    await orders.replace(new.order_id, limit_price="101.00")
    skipped = await orders.replace(new.order_id, limit_price="102.00")
    await orders.replace(new.order_id, limit_price="103.00")
    await _hand(shard, skipped, together=False)
    assert _terms(shard, new.order_id) == (Decimal("103.00"), Decimal(10))


async def test_a_late_state_of_an_order_the_engine_has_forgotten_is_read_from_the_database(
    orders: _Orders, shard: EngineShard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the engine no longer remembers an order ended, a state committed before it forgot is read, not trusted."""
    monkeypatch.setattr(engine_module, "ENDED_KEPT", 1)
    late = await orders.submit("late")
    canceled = await orders.cancel(late.order_id)
    other = await orders.submit("other")
    other_canceled = await orders.cancel(other.order_id)
    await _hand(shard, canceled, other_canceled, late, together=False)
    assert _terms(shard, late.order_id) is None


async def test_a_state_committed_before_a_failed_rebuild_is_read_from_the_database(
    orders: _Orders, shard: EngineShard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild whose read fails has still dropped what the book knew (here that the order was canceled)."""
    late = await orders.submit("before-rebuild")
    canceled = await orders.cancel(late.order_id)
    await _hand(shard, canceled, together=False)

    async def unavailable(self: TradingRepository, *_: object) -> None:
        raise ConnectionError("database away")

    with monkeypatch.context() as patched:
        patched.setattr(TradingRepository, "open_orders", unavailable)
        with pytest.raises(ConnectionError):
            await shard.rebuild()
    await _hand(shard, late, together=False)
    assert _terms(shard, late.order_id) is None


async def test_an_own_fill_racing_a_replace_makes_the_engine_read_the_order(
    orders: _Orders, shard: EngineShard, runtime: Runtime
) -> None:
    """The shard fills old terms after a replace committed: its fill's version skips the replace's, so it reads the order
    (new terms, less the fill) and then skips the replace's late state, which lacks the fill (placed, it would
    work the whole new quantity again)."""
    new = await orders.submit("filled-meanwhile")
    await _hand(shard, new, together=False)
    replaced = await orders.replace(new.order_id, limit_price="101.00", quantity="12")
    shard.on_quote(_quote(ask="99.00"))  # below the old terms' limit: fills 4
    await shard.step()
    shard.on_quote(_quote(ask="105.00"))  # above both limits: the book keeps what it holds
    await shard.step()
    await _hand(shard, replaced, together=False)
    async with runtime.database.read_session() as session:
        stored = await TradingRepository(session).load(new.order_id)
    assert stored is not None
    assert stored.filled_quantity > 0
    assert _terms(shard, new.order_id) == _of(stored) == (Decimal("101.00"), 12 - stored.filled_quantity)


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the orders read from the database from now on."""
    read: list[str] = []
    load, load_many = TradingRepository.load, TradingRepository.load_many

    async def counted_load(self: TradingRepository, order_id: str) -> Order | None:
        read.append(order_id)
        return await load(self, order_id)

    async def counted_load_many(self: TradingRepository, order_ids: Sequence[str]) -> dict[str, Order]:
        read.extend(order_ids)
        return await load_many(self, order_ids)

    monkeypatch.setattr(TradingRepository, "load", counted_load)
    monkeypatch.setattr(TradingRepository, "load_many", counted_load_many)
    return read


async def test_a_new_orders_handed_over_state_is_placed_without_reading_the_database(
    orders: _Orders, shard: EngineShard, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = await orders.submit("trusted")
    if orders.via == "stream":
        assert isinstance(new.state, Handed)  # the stream's message carried the state
        assert new.begun_at > 0  # and its tick, on this process's clock
    read = _count_reads(monkeypatch)
    await _hand(shard, new, together=False)
    assert _terms(shard, new.order_id) == (Decimal("100.00"), Decimal(10))
    assert new.order_id not in read


@pytest.mark.parametrize("orders", ["process"], indirect=True)  # its stream messages are made here
async def test_a_streamed_state_from_another_hosts_clock_is_read_for_an_order_the_engine_does_not_know(
    orders: _Orders, shard: EngineShard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its tick cannot be compared with the shard's: the order is read (the second one's cancel, committed since, is
    found), not trusted; a later state one version past what the book holds is taken from any host."""
    elsewhere = b"another-host:1"
    new = await orders.submit("elsewhere")
    gone = await orders.submit("canceled-elsewhere")
    await orders.cancel(gone.order_id)
    read = _count_reads(monkeypatch)
    await _hand(shard, streamed(new, elsewhere), streamed(gone, elsewhere), together=False)
    assert sorted(read) == sorted([new.order_id, gone.order_id])
    assert _terms(shard, new.order_id) == (Decimal("100.00"), Decimal(10))
    assert _terms(shard, gone.order_id) is None
    replaced = await orders.replace(new.order_id, limit_price="101.00")
    read.clear()  # the replace read it (order entry)
    await _hand(shard, streamed(replaced, elsewhere), together=False)
    assert _terms(shard, new.order_id) == (Decimal("101.00"), Decimal(10))
    assert read == []


def test_an_unreadable_streamed_state_makes_the_engine_read_the_order() -> None:
    fields = {b"account": b"acc-1", b"order": b"ord-1", b"state": b"[1,", b"begun": b"5", b"clock": b"x"}
    assert change_of(fields) == Change("acc-1", "ord-1")
    assert change_of({b"account": b"acc-1"}) is None


async def test_reconciliation_reads_the_orders_it_was_not_told_of_together_and_leaves_a_told_one_to_its_change(
    orders: _Orders, shard: EngineShard, monkeypatch: pytest.MonkeyPatch
) -> None:
    untold = [(await orders.submit(name)).order_id for name in ("untold-1", "untold-2")]
    told = await orders.submit("told")
    shard.note_changed(told)  # waits for the next step
    read = _count_reads(monkeypatch)
    synced: list[str] = []

    async def counted_sync(self: EngineShard, order_id: str, account_id: str) -> None:
        synced.append(order_id)

    monkeypatch.setattr(EngineShard, "sync", counted_sync)
    await shard.reconcile()
    assert (sorted(read), synced) == (sorted(untold), [])  # one read of both, none one by one
    assert [_terms(shard, order_id) for order_id in untold] == [(Decimal("100.00"), Decimal(10))] * 2
    assert _terms(shard, told.order_id) is None
    await shard.step()
    assert _terms(shard, told.order_id) == (Decimal("100.00"), Decimal(10))
    assert told.order_id not in read
