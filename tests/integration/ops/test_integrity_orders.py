"""`check integrity` on many orders: the SQL pass proves plain orders on PostgreSQL, and every corruption
of one is still named in the domain's words (the same on both stacks, where SQLite folds every order)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import insert, text

from tradestack.books.service import BooksService
from tradestack.domain.marketdata import Side
from tradestack.domain.orders import (
    Liquidity,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderReplaced,
    OrderRequest,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    TimeInForce,
)
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.models.trading import OrderEventRow, OrderRow
from tradestack.ops import integrity
from tradestack.ops.integrity import check_integrity
from tradestack.ops.integrity_orders import fold_kinds

from ..conftest import MakeUser  # type: ignore[import-not-found]

TS = datetime(2026, 11, 20, 15, 0, 0, 250000, tzinfo=UTC)


async def _new_account(runtime: Runtime, make_user: MakeUser) -> str:
    user = await make_user(Role.TRADER, login=False)
    async with runtime.database.session() as session:
        return (await BooksService(session, runtime.clock).accounts_of(user.id))[0].id


async def _orders(runtime: Runtime, make_user: MakeUser, count: int) -> list[str]:
    """`count` plain orders: resting (submitted, accepted), denied, and accepted then canceled, in turn."""
    account_id = await _new_account(runtime, make_user)
    orders, events = [], []
    for n in range(count):
        order_id, client = f"o-{n:03}-{account_id[:6]}", f"c-{n}"
        request = OrderRequest(
            client_order_id=client, account_id=account_id, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT,
            quantity=Decimal(n + 1), limit_price=Decimal("190.5"), time_in_force=TimeInForce.GTC,
        )  # fmt: skip
        life: list[OrderEvent] = [OrderSubmitted(order_id=order_id, ts=TS, request=request)]
        status = OrderStatus.ACCEPTED
        if n % 3 == 1:
            life.append(OrderDenied(order_id=order_id, ts=TS, reason="over the position limit"))
            status = OrderStatus.DENIED
        else:
            life.append(OrderAccepted(order_id=order_id, ts=TS))
            if n % 3 == 2:
                life.append(OrderCanceled(order_id=order_id, ts=TS, reason="by the trader"))
                status = OrderStatus.CANCELED
        orders.append(
            {"id": order_id, "account_id": account_id, "client_order_id": client, "fingerprint": request.fingerprint(),
             "symbol": "AAPL", "side": "buy", "type": "limit", "time_in_force": "gtc", "quantity": request.quantity,
             "limit_price": request.limit_price, "stop_price": None, "status": status.value, "filled_quantity": Decimal(0),
             "average_fill_price": None, "reason": None, "version": len(life), "created_at": TS, "updated_at": TS}
        )  # fmt: skip
        events += [
            {"order_id": order_id, "seq": seq, "kind": event.kind, "ts": TS, "payload": orjson.dumps(event.to_dict()).decode()}
            for seq, event in enumerate(life, start=1)
        ]
    async with runtime.database.session() as session:
        await session.execute(insert(OrderRow), orders)
        await session.execute(insert(OrderEventRow), events)
    return [order["id"] for order in orders]


async def _sql(runtime: Runtime, statement: str, **values: object) -> None:
    async with runtime.database.engine.begin() as connection:
        await connection.execute(text(statement), values)


async def test_plain_orders_pass_and_on_postgresql_none_is_folded_by_the_domain(runtime: Runtime, make_user: MakeUser) -> None:
    await _orders(runtime, make_user, 30)
    report = await check_integrity(runtime.database)
    assert report.ok, report.problems
    assert report.checked["orders"] == 30
    folded = report.checked["orders folded by the domain"]
    assert folded == (0 if runtime.database.dialect == "postgresql" else 30)


async def test_each_corruption_of_a_plain_order_is_named_in_the_domains_words(runtime: Runtime, make_user: MakeUser) -> None:
    ids = await _orders(runtime, make_user, 30)
    payload = "UPDATE order_events SET payload = :p WHERE order_id = :id AND seq = :seq"
    await _sql(runtime, "UPDATE orders SET status = 'canceled' WHERE id = :id", id=ids[0])
    await _sql(runtime, "UPDATE orders SET version = 3 WHERE id = :id", id=ids[3])
    await _sql(runtime, "UPDATE orders SET filled_quantity = 0.5 WHERE id = :id", id=ids[6])
    await _sql(runtime, "UPDATE order_events SET seq = 3 WHERE order_id = :id AND seq = 2", id=ids[9])
    expired = {"kind": "expired", "order_id": ids[12], "ts": TS.isoformat()}
    await _sql(runtime, payload, p=orjson.dumps(expired).decode(), id=ids[12], seq=1)
    blank = {"kind": "denied", "order_id": ids[4], "ts": TS.isoformat(), "reason": "  "}
    await _sql(runtime, payload, p=orjson.dumps(blank).decode(), id=ids[4], seq=2)
    async with runtime.database.engine.connect() as connection:
        submitted = (await connection.execute(text("SELECT payload FROM order_events WHERE order_id = :id AND seq = 1"),
                                              {"id": ids[15]})).scalar_one()  # fmt: skip
    negative = orjson.loads(submitted)
    negative["request"]["quantity"] = "-16"
    await _sql(runtime, payload, p=orjson.dumps(negative).decode(), id=ids[15], seq=1)
    stranger = orjson.loads(submitted) | {"order_id": "someone-else"}
    await _sql(runtime, payload, p=orjson.dumps(stranger).decode(), id=ids[15], seq=1)
    await _sql(runtime, payload, p=orjson.dumps(negative).decode(), id=ids[18], seq=1)
    report = await check_integrity(runtime.database)
    named = {problem.split(":")[0].removeprefix("order ") for problem in report.problems}
    assert named == {ids[n] for n in (0, 3, 6, 9, 12, 4, 15, 18)}, report.problems
    assert f"order {ids[0]}: stored status/filled/version canceled/0/2 but its events give accepted/0/2" in report.problems
    assert f"order {ids[3]}: stored status/filled/version accepted/0/3 but its events give accepted/0/2" in report.problems
    assert f"order {ids[6]}: stored status/filled/version accepted/0.5/2 but its events give accepted/0/2" in (
        problem.replace("0.500000000000000000", "0.5") for problem in report.problems
    )
    assert f"order {ids[9]}: event sequence [1, 3] has holes or does not start at 1" in report.problems
    for n, why in ((12, "OrderExpired is not allowed"), (4, "reason must not be empty"), (18, "quantity must be positive")):
        assert any(p.startswith(f"order {ids[n]}: its events do not fold") and why in p for p in report.problems), (
            n,
            report.problems,
        )
    # The domain folded only the corrupted orders on PostgreSQL (3 of them fold, to another state), every order on SQLite.
    assert report.checked["orders folded by the domain"] == (3 if runtime.database.dialect == "postgresql" else 30 - 5)


async def test_a_payload_that_is_not_json_is_named(runtime: Runtime, make_user: MakeUser) -> None:
    ids = await _orders(runtime, make_user, 6)
    await _sql(runtime, "UPDATE order_events SET payload = 'not json' WHERE order_id = :id AND seq = 2", id=ids[2])
    report = await check_integrity(runtime.database)
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"order {ids[2]}: its events do not fold:")
    # PostgreSQL's pass proves the five others (the broken one does not fold); SQLite folds them all.
    assert report.checked["orders folded by the domain"] == (0 if runtime.database.dialect == "postgresql" else 5)


@pytest.mark.parametrize(
    ("kinds", "status"),
    [("submitted,accepted", "accepted"), ("submitted,denied", "denied"), ("submitted,accepted,canceled", "canceled"),
     ("submitted,accepted,expired", "expired"), ("accepted", None), ("submitted,submitted", None), ("submitted,bogus", None)],
)  # fmt: skip
def test_kinds_fold_through_the_transition_table(kinds: str, status: str | None) -> None:
    folded, _ = fold_kinds(kinds)
    assert (folded.value if folded else None) == status


_REASONS = ["over the position limit", "by the trader", "venue: insufficient margin", "x"]


def _random_life(rng: random.Random, order_id: str, request: OrderRequest, ts: datetime) -> list[OrderEvent]:
    """A life the order service could have written: mostly plain ones, some with fills, a replace or a trigger."""
    life: list[OrderEvent] = [OrderSubmitted(order_id=order_id, ts=ts, request=request)]
    shape = rng.choice(["resting", "denied", "rejected", "canceled", "cancel-early", "expired", "filled", "partial", "replaced"])
    if shape == "denied":
        return [*life, OrderDenied(order_id=order_id, ts=ts, reason=rng.choice(_REASONS))]
    if shape == "cancel-early":
        return [*life, OrderCanceled(order_id=order_id, ts=ts, reason=rng.choice(_REASONS))]
    life.append(OrderAccepted(order_id=order_id, ts=ts))
    if shape == "rejected":
        life.append(OrderRejected(order_id=order_id, ts=ts, reason=rng.choice(_REASONS)))
    elif shape == "canceled":
        life.append(OrderCanceled(order_id=order_id, ts=ts, reason=rng.choice(_REASONS)))
    elif shape == "expired":
        life.append(OrderExpired(order_id=order_id, ts=ts))
    elif shape == "replaced":
        life.append(OrderReplaced(order_id=order_id, ts=ts, new_quantity=request.quantity * 2))
    elif shape in ("filled", "partial"):
        half = request.quantity / 2
        fill = {"price": Decimal("190.5"), "fee": Decimal("0.1"), "fee_currency": "USD", "liquidity": Liquidity.MAKER}
        life.append(OrderPartiallyFilled(order_id=order_id, ts=ts, fill_id="f1", quantity=half, **fill))
        if shape == "filled":
            life.append(OrderFilled(order_id=order_id, ts=ts, fill_id="f2", quantity=request.quantity - half, **fill))
    return life


def _corrupt(rng: random.Random, order: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """One random corruption of an order row or of its events, in place (some leave it consistent)."""
    payload = orjson.loads(events[0]["payload"]) if events else {}
    match rng.randrange(13):
        case 0:
            order["status"] = rng.choice([status.value for status in OrderStatus])
        case 1:
            order["version"] += rng.choice([-1, 1])
        case 2:
            order["filled_quantity"] = Decimal("0.5")
        case 3:
            events.pop(rng.randrange(len(events)))
        case 4:
            events[-1]["seq"] += 1
        case 5:
            events[-1]["payload"] = "not json"
        case 6:
            events[-1]["kind"] = rng.choice(["accepted", "expired", "canceled", "submitted"])
        case 7:
            payload["request"]["quantity"] = "-1"
            events[0]["payload"] = orjson.dumps(payload).decode()
        case 8:
            payload["order_id"] = "someone-else"
            events[0]["payload"] = orjson.dumps(payload).decode()
        case 9:  # written another way, still the same event: consistent, proven by the domain instead
            events[0]["payload"] = json.dumps(payload, indent=1)
        case 10:  # a payload timestamp that differs from the row's: the domain does not compare them
            payload["ts"] = "2001-02-03T04:05:06+00:00"
            events[0]["payload"] = orjson.dumps(payload).decode()
        case 11:
            last = orjson.loads(events[-1]["payload"])
            if "reason" in last:
                last["reason"] = " "
                events[-1]["payload"] = orjson.dumps(last).decode()
        case _:
            events.append({**events[-1], "seq": events[-1]["seq"] + 1})


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_sql_pass_and_the_domain_fold_agree_on_random_orders(
    runtime: Runtime, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """The reference is the domain folding every order; the SQL pass (plus the domain on what it cannot prove) must
    report exactly the same problems, on random lives, ids, timestamps and terms, a third of them corrupted."""
    if runtime.database.dialect != "postgresql":
        pytest.skip("the SQL pass runs on PostgreSQL (SQLite folds every order through the domain)")
    rng = random.Random(seed)
    account_id = await _new_account(runtime, make_user)
    orders, events = [], []
    for n in range(200):
        order_id = rng.choices([f"o-{seed}-{n}", f"ord.{seed}:{n}@x+y_z", f"o {seed}/{n}", f'o"{seed}-{n}'], [6, 3, 1, 1])[0]
        client = rng.choices([f"c-{n}", f"client {n}", f"c\\{n}"], [8, 1, 1])[0]
        ts = TS.replace(microsecond=rng.choice([0, 1, 250000, 999999]), second=rng.randrange(60))
        order_type = rng.choice([OrderType.LIMIT, OrderType.MARKET])
        request = OrderRequest(
            client_order_id=client, account_id=account_id, symbol="AAPL", side=rng.choice(list(Side)), type=order_type,
            quantity=Decimal(rng.choice(["1", "0.001", "12.5", "300"])), time_in_force=TimeInForce.GTC,
            limit_price=Decimal(rng.choice(["190.5", "1E+2", "0.10"])) if order_type == OrderType.LIMIT else None,
        )  # fmt: skip
        life = _random_life(rng, order_id, request, ts)
        state = Order.from_events(life)
        order = {
            "id": order_id, "account_id": account_id, "client_order_id": client, "fingerprint": request.fingerprint(),
            "symbol": "AAPL", "side": request.side.value, "type": order_type.value, "time_in_force": "gtc",
            "quantity": request.quantity, "limit_price": request.limit_price, "stop_price": None,
            "status": state.status.value, "filled_quantity": state.filled_quantity, "average_fill_price": None,
            "reason": state.reason, "version": state.version, "created_at": ts, "updated_at": ts,
        }  # fmt: skip
        rows = [
            {"order_id": order_id, "seq": seq, "kind": event.kind, "ts": ts, "payload": orjson.dumps(event.to_dict()).decode()}
            for seq, event in enumerate(life, start=1)
        ]
        if rng.random() < 0.35:
            _corrupt(rng, order, rows)
        orders.append(order)
        events += rows
    async with runtime.database.session() as session:
        await session.execute(insert(OrderRow), orders)
        await session.execute(insert(OrderEventRow), events)
    monkeypatch.setattr(integrity, "MAX_PROBLEMS", 10_000)
    found = await check_integrity(runtime.database)

    async def every_order(session: object, helpers: object = ()) -> list[str]:
        return sorted(order["id"] for order in orders)

    monkeypatch.setattr(integrity, "orders_to_fold", every_order)
    reference = await check_integrity(runtime.database)
    assert reference.problems, "the corruptions must show"
    assert sorted(found.problems) == sorted(reference.problems)
    # The SQL pass proved a part of them (the reference folded every order its events let it).
    assert reference.checked["orders folded by the domain"] - found.checked["orders folded by the domain"] >= 15
