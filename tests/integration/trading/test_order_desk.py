"""The order desk (`trading.desk`) on both stacks: what it keeps of an account is dropped as soon as another
writer changed the account's books, and a lock held too long answers 503 with Retry-After, never a 500."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import make_url

from tradestack.books.service import BooksService
from tradestack.domain.marketdata import Side
from tradestack.domain.order_kinds import OrderType, TimeInForce
from tradestack.domain.orders import Order, OrderAccepted, OrderRequest, OrderSubmitted
from tradestack.identity.permissions import Role
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.models.trading import OrderRow
from tradestack.trading.desk import DESK
from tradestack.trading.repository import DeskReads, TradingRepository

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote, engine_listeners  # type: ignore[import-not-found]
from .test_orders import limit_buy, open_account  # type: ignore[import-not-found]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The equity recorder (on the request loop, reading every account's balances) records at start, then not in a test.
    return settings.model_copy(update={"database_lock_timeout_seconds": 0.5, "equity_record_seconds": 86_400})


def buyer(client: httpx.AsyncClient, trader: Any, account: str, prefix: str) -> Callable[[int], Awaitable[httpx.Response]]:
    """Resting AAPL limit buys `prefix-n` of 40 at 99.00: each reserves 40 x 99 = 3,960 USD (plus fees)."""

    async def buy(n: int) -> httpx.Response:
        body = limit_buy(account, f"{prefix}-{n}", price="99.00", quantity="40")
        return await client.post("/api/orders", json=body, headers=trader.headers)

    return buy


async def on_two_desks(runtime: Runtime, buy: Callable[[int], Awaitable[httpx.Response]]) -> None:
    """Order 1 accepted by desk A (which then keeps the account), order 2 by desk B (the next request makes a new
    desk, which reads the account fresh), as two API workers would; desk A is then this process's desk again."""
    assert (await buy(1)).status_code == 201
    desk_a = runtime.components.pop(DESK)
    assert desk_a is not None
    assert (await buy(2)).status_code == 201
    runtime.components.put(DESK, desk_a)


async def test_a_desk_does_not_decide_on_books_another_desk_changed(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    """Two desks (two API workers) on one account: each sees the orders the other accepted, so together they never
    reserve more than the cash. Desk A accepts one buy, desk B a second; A must then refuse a third. Desk B only
    added an order (its lock bumps the books version and the desk version, every other writer's the books version
    alone), so desk A reads the account's orders again, not its balances, limits or realized P&L - in the one read
    of its group after the lock."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "10000")
    await publish_quote("AAPL", "100.00", "100.01", last="100.00")
    # Each resting buy reserves 40 x 99 = 3,960 USD (plus fees) of the 10,000: two fit, three do not.

    buy = buyer(client, trader, account, "desk")

    await on_two_desks(runtime, buy)  # order 1 on desk A, order 2 on desk B; desk A is this process's desk again
    by_connection: dict[tuple[int, int], list[str]] = {}
    request_thread = threading.get_ident()

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # This loop's statements only: the engine works on its own thread meanwhile (its gauges read every account's
        # balances, its reconciliation the orders), more often on a loaded machine. Keyed by connection and task, so
        # another task of this loop (the audit chainer) taking the desk's pooled connection is not counted in its group.
        if threading.get_ident() == request_thread:
            key = (id(conn.connection.driver_connection), id(asyncio.current_task()))
            by_connection.setdefault(key, []).append(" ".join(statement.split()))

    with engine_listeners(("before_cursor_execute", seen)):
        third = await buy(3)  # desk A again: the books version tells it desk B wrote since
    assert third.status_code == 422, third.text
    assert third.json()["check"] == "buying_power", third.text
    read = " ".join(statement for statements in by_connection.values() for statement in statements)
    assert "FROM orders" in read
    assert all(f"FROM {table}" not in read for table in ("balances", "risk_limits", "postings"))
    # The group's statements on the desk's connection after its lock: one read (the stored orders of its client order
    # ids, the account's orders and the trading states together, `TradingRepository.desk_reads`), then the writes
    # (the denied order is stored too): on PostgreSQL one statement writes the order, its events and its audit entry
    # (the audit outbox's rows alongside the orders', `kit.db.Alongside`); elsewhere an executemany each.
    [group] = [statements for statements in by_connection.values() if any("trading_accounts" in s for s in statements)]
    lock = next(n for n, statement in enumerate(group) if "trading_accounts" in statement)
    reads = [statement for statement in group[lock + 1 :] if statement.startswith("SELECT")]
    writes = [statement for statement in group[lock + 1 :] if not statement.startswith("SELECT")]
    assert len(reads) == 1, group
    if runtime.database.dialect == "postgresql":
        [write] = writes
        assert all(f"INSERT INTO {table}" in write for table in ("orders", "order_events", "audit_outbox")), write
    else:
        assert len(writes) == 3, group


@pytest.mark.parametrize("stack", ["production"], indirect=True)
async def test_a_reused_client_order_id_in_a_group_is_answered_as_stored_and_the_others_written_once(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    """On PostgreSQL the desk does not read the stored orders of a group's client order ids first: the unique
    (account, client order id) refuses the reused one, and the group is decided again with them read. The repeat is
    answered 200 with the stored order (409 with other terms), the group's new orders are written once."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "100000")
    await publish_quote("AAPL", "100.00", "100.01", last="100.00")

    def post(client_order_id: str, price: str = "99.00") -> Awaitable[httpx.Response]:
        body = limit_buy(account, client_order_id, price=price, quantity="1")
        return client.post("/api/orders", json=body, headers=trader.headers)

    first = await post("reused-1")
    assert first.status_code == 201, first.text
    answers = await asyncio.gather(post("reused-2"), post("reused-1"), post("reused-3"), post("reused-1", price="98.00"))
    assert [a.status_code for a in answers] == [201, 200, 201, 409], [a.text for a in answers]
    assert answers[1].json()["id"] == first.json()["id"]
    async with runtime.database.session() as session:
        stored = (await session.execute(select(OrderRow.client_order_id).where(OrderRow.account_id == account))).scalars()
        assert sorted(stored) == ["reused-1", "reused-2", "reused-3"]


async def test_a_desk_sees_the_orders_another_desk_added_and_the_ones_another_writer_ended(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    """A desk whose account another desk wrote meanwhile counts the account's open orders as stored: the other
    desk's new buy reserves, the buy a cancel ended no longer does (the desk keeps what it counted and syncs it)."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "10000")
    await publish_quote("AAPL", "100.00", "100.01", last="100.00")

    buy = buyer(client, trader, account, "sync")  # two fit in the 10,000, three do not

    first = await buy(1)
    assert first.status_code == 201  # desk A keeps the account
    desk_a = runtime.components.pop(DESK)
    assert desk_a is not None
    assert (await buy(2)).status_code == 201  # desk B
    runtime.components.put(DESK, desk_a)
    canceled = await client.delete(f"/api/orders/{first.json()['id']}", headers=trader.headers)
    assert canceled.status_code == 200, canceled.text
    assert (await buy(3)).status_code == 201  # desk A: order 1 ended, order 2 counted: 2 and 3 fit
    fourth = await buy(4)  # 2 and 3 rest: a third buy does not fit
    assert fourth.status_code == 422, fourth.text
    assert fourth.json()["check"] == "buying_power", fourth.text


async def test_a_desk_reads_only_the_orders_another_desk_added_since(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    publish_quote: PublishQuote,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Desk A keeps an account with an open order; desk B adds one. Desk A's next group reads only desk B's order (the
    one tagged with a desk version above the one desk A knows), not the account's open orders again, and still
    counts both: together they never reserve more than the cash."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "10000")
    await publish_quote("AAPL", "100.00", "100.01", last="100.00")

    buy = buyer(client, trader, account, "added")  # two fit in the 10,000, three do not

    await on_two_desks(runtime, buy)  # order 1 on desk A, order 2 on desk B; desk A is this process's desk again
    read: list[DeskReads] = []
    desk_reads = TradingRepository.desk_reads

    async def spied(self: TradingRepository, *args: Any, **kwargs: Any) -> DeskReads:
        read.append(await desk_reads(self, *args, **kwargs))
        return read[-1]

    monkeypatch.setattr(TradingRepository, "desk_reads", spied)
    third = await buy(3)
    assert third.status_code == 422, third.text
    assert third.json()["check"] == "buying_power", third.text
    [reads] = read  # one read: what desk B added covers every desk version desk A did not write
    assert reads.open_rows.get(account, []) == []
    page = await client.get("/api/orders", params={"account_id": account}, headers=trader.headers)
    ids = {order["client_order_id"]: order["id"] for order in page.json()["items"]}
    assert [row.id for row in reads.added[account]] == [ids["added-2"]]


async def test_a_desk_reads_all_the_orders_again_when_another_desk_left_one_untagged(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    """Desk B's order carries no desk version, as a desk of the release before them writes it: desk A finds no order
    for desk B's version, so it reads the account's open orders again and still counts desk B's."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "10000")
    await publish_quote("AAPL", "100.00", "100.01", last="100.00")

    buy = buyer(client, trader, account, "untagged")  # two fit in the 10,000, three do not

    await on_two_desks(runtime, buy)  # order 1 on desk A, order 2 on desk B; desk A is this process's desk again
    async with runtime.database.session() as session:
        untag = update(OrderRow).where(OrderRow.account_id == account, OrderRow.client_order_id == "untagged-2")
        await session.execute(untag.values(desk_version=None))
    third = await buy(3)
    assert third.status_code == 422, third.text
    assert third.json()["check"] == "buying_power", third.text
    if runtime.database.dialect == "postgresql":
        # Its reads of the account's orders (the two desks' first, then this one's, after a read that handed the rest
        # of the transaction to kept plans) were planned at each run, never with a generic plan.
        async with runtime.database.writer_session() as session:
            plans = (await session.execute(_PLANS)).all()
        reloads = [(generic, custom) for statement, generic, custom in plans if "orders.status IN" in statement]
        assert reloads, plans
        assert all(generic == 0 < custom for generic, custom in reloads), plans


async def test_a_desk_reloads_an_account_another_desk_and_another_writer_both_wrote(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    """Desk B adds an order and a deposit is booked (another writer, as every writer of the release before the desk
    version also counts): desk A must reload the balances, not only the orders, and accept a buy that only the
    deposited cash pays for. A lock bump of the books version by another writer is not taken for a desk's."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "5000")
    await publish_quote("AAPL", "100.00", "100.01", last="100.00")

    buy = buyer(client, trader, account, "mixed")

    assert (await buy(1)).status_code == 201  # desk A keeps the account: 3,960 of the 5,000 reserved
    desk_a = runtime.components.pop(DESK)
    assert desk_a is not None
    async with runtime.database.session() as session:
        await BooksService(session, runtime.clock).deposit(account, "USD", Decimal(10_000))
    assert (await buy(2)).status_code == 201  # desk B, fresh: 15,000 of cash, 7,920 reserved
    runtime.components.put(DESK, desk_a)
    third = await buy(3)  # desk A: 11,880 of 15,000 - only with the deposit
    assert third.status_code == 201, third.text


async def test_a_changed_limit_reaches_the_desk_at_once(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote
) -> None:
    trader, risk = await make_user(Role.TRADER), await make_user(Role.RISK)
    account = await open_account(client, trader, "100000")
    await publish_quote("AAPL", "100.00", "100.01", last="100.00")
    body = limit_buy(account, "before", price="99.00", quantity="10")
    assert (await client.post("/api/orders", json=body, headers=trader.headers)).status_code == 201
    limits = await client.patch(f"/api/risk/limits/{account}", json={"max_order_notional": "500"}, headers=risk.headers)
    assert limits.status_code == 200, limits.text
    body = limit_buy(account, "after", price="99.00", quantity="10")
    after = await client.post("/api/orders", json=body, headers=trader.headers)
    assert after.status_code == 422, after.text
    assert after.json()["check"] == "max_order_notional", after.text


async def test_a_deposit_reaches_a_desk_that_keeps_the_account(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    """A deposit booked in its own unit of work (not through the desk) bumps the account's books version, so the
    desk that kept the account reloads it and accepts an order only the deposited cash pays for."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "5000")
    await publish_quote("AAPL", "100.00", "100.01", last="100.00")
    first = limit_buy(account, "before-deposit", price="99.00", quantity="40")  # 3,960 USD of the 5,000
    assert (await client.post("/api/orders", json=first, headers=trader.headers)).status_code == 201
    assert runtime.components.get(DESK) is not None  # the desk now keeps the account
    async with runtime.database.session() as session:
        await BooksService(session, runtime.clock).deposit(account, "USD", Decimal(10_000))
    second = limit_buy(account, "after-deposit", price="99.00", quantity="40")  # needs the deposited cash
    response = await client.post("/api/orders", json=second, headers=trader.headers)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("stack", ["production"], indirect=True)
async def test_an_account_locked_longer_than_lock_timeout_answers_503_with_retry_after(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, settings: Settings
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "100000")
    await publish_quote("AAPL", "100.00", "100.01", last="100.00")
    body = limit_buy(account, "busy", price="99.00", quantity="1")
    url = make_url(settings.effective_database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    holder = await asyncpg.connect(url)
    try:
        async with holder.transaction():  # another transaction holds the account's books (a stalled writer)
            await holder.execute("SELECT id FROM trading_accounts WHERE id = $1 FOR UPDATE", account)
            busy = await client.post("/api/orders", json=body, headers=trader.headers)
    finally:
        await holder.close()
    assert busy.status_code == 503, busy.text
    assert busy.headers["Retry-After"].isdigit()
    assert busy.json()["error"] == "ServiceUnavailableError"
    assert "busy" in busy.json()["detail"]
    assert "lock_timeout" in busy.json()["detail"]
    retried = await client.post("/api/orders", json=body, headers=trader.headers)  # the lock is gone: the retry passes
    assert retried.status_code == 201, retried.text
    page = await client.get("/api/orders", params={"account_id": account}, headers=trader.headers)
    assert [o["client_order_id"] for o in page.json()["items"]] == ["busy"]  # the refused attempt left nothing


@pytest.mark.parametrize("stack", ["production"], indirect=True)
async def test_the_desk_reconnects_when_the_server_dropped_its_connection(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, settings: Settings
) -> None:
    """The desk's connection is not pinged before each group: when the server has dropped it, the group that finds
    out fails, its orders are decided again on a new connection, and the client gets its 201 all the same."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "100000")
    await publish_quote("AAPL", "100.00", "100.01", last="100.00")
    first = limit_buy(account, "before-drop", price="99.00", quantity="1")
    assert (await client.post("/api/orders", json=first, headers=trader.headers)).status_code == 201
    url = make_url(settings.effective_database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(url)
    try:  # every other connection to the database goes, the desk's among them (as in a database restart)
        dropped = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
    finally:
        await admin.close()
    assert dropped >= 1
    second = limit_buy(account, "after-drop", price="99.00", quantity="1")
    response = await client.post("/api/orders", json=second, headers=trader.headers)
    assert response.status_code == 201, response.text
    page = await client.get("/api/orders", params={"account_id": account}, headers=trader.headers)
    assert sorted(o["client_order_id"] for o in page.json()["items"]) == ["after-drop", "before-drop"]


_SCANS = text(
    "SELECT relname, seq_scan, idx_scan FROM pg_stat_xact_user_tables "
    "WHERE relname IN ('orders', 'trading_accounts', 'instruments')"
)


def accepted_orders(account: str, now: datetime, prefix: str, numbers: range) -> list[tuple[Order, list[Any], str]]:
    """Accepted AAPL limit buys of 1 at 99.00, `prefix-n` for each n of `numbers`, as the desk hands them to
    `TradingRepository.create_many` (the order, its events, its fingerprint)."""
    made = []
    for n in numbers:
        order_id = str(uuid.uuid4())
        request = OrderRequest(
            client_order_id=f"{prefix}-{n}", account_id=account, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT,
            quantity=Decimal(1), limit_price=Decimal("99.00"), time_in_force=TimeInForce.GTC,
        )  # fmt: skip
        events: list[Any] = [OrderSubmitted(order_id=order_id, ts=now, request=request), OrderAccepted(order_id=order_id, ts=now)]
        made.append((Order.from_events(events), events, f"fingerprint-{n}"))
    return made


@pytest.mark.parametrize("stack", ["production"], indirect=True)
async def test_the_groups_insert_checks_its_keys_by_index_probes_whatever_the_statistics_say(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    """The statement that writes a group's orders, events and audit rows checks their keys (account, instrument, each
    event's order) by probes of the referenced tables' unique indexes, made once per connection, even when the
    statistics were taken while those tables were nearly empty: a plan of such a check kept for the connection's
    life must not be a scan of the table as it grows (`kit.db.unnest_insert`'s `probes_after`)."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    orders = accepted_orders(account, runtime.clock.now(), "probe", range(3))
    async with runtime.database.session() as session:
        await session.execute(text("ANALYZE orders, order_events, trading_accounts, instruments"))
    async with runtime.database.session() as session:
        before = {name: (seq, idx) for name, seq, idx in await session.execute(_SCANS)}  # this backend's, not yet reported
        await TradingRepository(session).create_many(orders, {account: 1})
        after = {name: (seq, idx) for name, seq, idx in await session.execute(_SCANS)}
    scans = {name: (seq - before.get(name, (0, 0))[0], idx - before.get(name, (0, 0))[1]) for name, (seq, idx) in after.items()}
    # orders: two events' each; trading accounts and instruments: one an order
    assert scans == {"orders": (0, 6), "trading_accounts": (0, 3), "instruments": (0, 3)}, scans
    page = await client.get("/api/orders", params={"account_id": account}, headers=trader.headers)
    assert sorted(o["client_order_id"] for o in page.json()["items"]) == ["probe-0", "probe-1", "probe-2"]


_FETCHED = text("SELECT seq_scan, idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relname = 'orders'")


@pytest.mark.parametrize("stack", ["production"], indirect=True)
async def test_the_desks_kept_read_of_other_desks_orders_probes_their_index_whatever_the_statistics_say(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    """The desk's read of a kept account (the orders other desks added since, by desk version) runs a plan kept for
    its connection (`kit.db.probes_from_here`), made here while the statistics called `orders` nearly empty. As the
    account's history grows, it must still probe the (account, desk version) index for the few orders above the
    version it knows, not read the account's every order through another index of `orders`."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    now = runtime.clock.now()
    async with runtime.database.session() as session:
        await session.execute(text("ANALYZE orders"))
    since = now - timedelta(minutes=1)
    for _ in range(2):  # the plan is made, then kept (the desk's connection keeps its prepared statements)
        async with runtime.database.writer_session() as session:
            reads = await TradingRepository(session).desk_reads([], [], since, [], {account: 0})
            assert reads.added[account] == []
    for first in range(0, 2_000, 500):  # a long history, tagged with desk versions 1 to 4, then five tagged above 1,995
        async with runtime.database.session() as session:
            batch = accepted_orders(account, now, "history", range(first, first + 500))
            await TradingRepository(session).create_many(batch, {account: first // 500 + 1})
    async with runtime.database.session() as session:
        rows = (await session.execute(select(OrderRow.id).where(OrderRow.account_id == account))).scalars().all()
        for version, order_id in enumerate(rows, start=1):
            if version > 1_995:
                await session.execute(update(OrderRow).where(OrderRow.id == order_id).values(desk_version=version))
    async with runtime.database.writer_session() as session:
        seq, fetched = (await session.execute(_FETCHED)).one()
        reads = await TradingRepository(session).desk_reads([], [], since, [], {account: 1_995})
        after = (await session.execute(_FETCHED)).one()
    assert len(reads.added[account]) == 5
    assert (after[0] - seq, after[1] - fetched) == (0, 5), (seq, fetched, after)


_PLANS = text(
    "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements "
    "WHERE (statement LIKE '%FOR UPDATE%' OR statement LIKE '%INSERT INTO orders%' OR statement LIKE '%AS part%') "
    "AND statement NOT LIKE '%pg_prepared_statements%'"
)


@pytest.mark.parametrize("stack", ["production"], indirect=True)
async def test_the_desk_plans_its_lock_insert_and_kept_reads_once_and_a_reload_at_each_run(
    client: httpx.AsyncClient, make_user: MakeUser, publish_quote: PublishQuote, runtime: Runtime
) -> None:
    """On PostgreSQL the desk's lock (keys of ``trading_accounts`` by its primary key) runs a plan made once for its
    connection, and so do the group's read of an account it keeps (the trading states; other desks' orders by a row
    comparison only their index serves) and the group's INSERT (rows from arrays). A read of an account's orders
    (a reload) is planned at each run (`TradingRepository.desk_reads`: a generic plan of it can read every order of
    an account, or probe through the wrong index). The first group reloads the account: its INSERT is planned anew."""
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "100000")
    await publish_quote("AAPL", "100.00", "100.01", last="100.00")
    for n in range(4):  # one at a time: four groups
        response = await client.post(
            "/api/orders", json=limit_buy(account, f"plans-{n}", price="99.00", quantity="1"), headers=trader.headers
        )
        assert response.status_code == 201, response.text
    async with runtime.database.writer_session() as session:  # the desk's connection, kept between its groups
        plans = (await session.execute(_PLANS)).all()
    lock = [(generic, custom) for statement, generic, custom in plans if "FOR UPDATE" in statement]
    insert = [(generic, custom) for statement, generic, custom in plans if "INSERT INTO orders" in statement]
    reads = [(generic, custom) for statement, generic, custom in plans if "AS part" in statement]
    assert [sum(column) for column in zip(*lock, strict=True)] == [4, 0], plans
    assert [sum(column) for column in zip(*insert, strict=True)] == [3, 1], plans
    assert [sum(column) for column in zip(*reads, strict=True)] == [3, 1], plans
