"""Order entry and the paper engine as real processes: concurrent orders against one account's buying power, and
orders that survive `kill -9` of the API and the engine (production) or of the single process (embedded)."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tradestack.core.money import to_places
from tradestack.kit.config import Settings
from tradestack.trading.commands import shard_of

from .processes import (  # type: ignore[import-not-found]
    FINAL_STATUSES,
    PASSWORD,
    Books,
    Processes,
    QuotePump,
    Trader,
    cli_ok,
    fill_problems,
    free_port,
    log_tail,
    process_env,
    read_books,
    run_cli,
    trader_session,
    wait_logged,
    wait_ready,
)

pytestmark = pytest.mark.slow
ENGINE_STARTED = "paper matching engine started"


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.close()


@pytest.fixture
def redis_namespace(redis_server: str) -> Iterator[str]:
    """A namespace of the test's own in the shared Redis, emptied afterwards."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    yield namespace
    with redis.Redis.from_url(redis_server) as client:
        keys = list(client.scan_iter(f"{namespace}:*"))
        if keys:
            client.delete(*keys)


def _production_env(tmp_path: Path, postgres_url: str, redis_url: str, namespace: str) -> dict[str, str]:
    return process_env(
        tmp_path,
        TRADESTACK_DATABASE_URL=postgres_url,
        TRADESTACK_REDIS_URL=redis_url,
        TRADESTACK_REDIS_NAMESPACE=namespace,
        TRADESTACK_MARKETDATA_FEEDS="[]",  # the test publishes the quotes itself
    )


def _pump_settings(tmp_path: Path, postgres_url: str, redis_url: str, namespace: str) -> Settings:
    return Settings(database_url=postgres_url, redis_url=redis_url, redis_namespace=namespace, data_dir=tmp_path / "pump")


async def _open_orders(http: httpx.AsyncClient, account_id: str) -> list[dict[str, Any]]:
    response = await http.get("/api/orders", params={"account_id": account_id, "status": "open", "limit": 500})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _integrity(env: dict[str, str], cwd: Path) -> None:
    done = run_cli(env, cwd, "check", "integrity")
    assert done.returncode == 0, f"tradestack check integrity exited {done.returncode}:\n{done.stdout}{done.stderr}"


def _stopped_cleanly(process: subprocess.Popen[bytes]) -> None:
    code = Processes.stop(process)
    assert code == 0, f"{process.args} exited {code} after SIGTERM:\n{log_tail(process)}"


# -- 1. concurrency: 200 orders at once, two API workers (two order desks), one or two engine shards ----------


def _burst(account_id: str, count: int) -> list[dict[str, Any]]:
    """Marketable BTC-USD buys: market ioc and limit gtc (limit 40,100 with the ask at most 40,041) of 0.01 or 0.02."""
    bodies = []
    for n in range(count):
        body: dict[str, Any] = {
            "account_id": account_id,
            "client_order_id": f"burst-{n}",
            "symbol": "BTC-USD",
            "side": "buy",
            "quantity": "0.01" if n % 4 < 2 else "0.02",
        }
        if n % 2:
            body |= {"type": "limit", "limit_price": "40100.00", "time_in_force": "gtc"}
        else:
            body |= {"type": "market", "time_in_force": "ioc"}
        bodies.append(body)
    return bodies


async def _account_on_shard(base: str, headers: dict[str, str], deposit: Decimal, shard: int, shards: int) -> str:
    """Open paper accounts of the signed-in trader until one falls on engine `shard`; its id."""
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
        for _ in range(64):
            body = {"name": "stress", "base_currency": "USD", "deposit": {"currency": "USD", "amount": str(deposit)}}
            opened = await http.post("/api/accounts", json=body)
            assert opened.status_code == 201, opened.text
            if shard_of(account := str(opened.json()["id"]), shards) == shard:
                return account
    raise AssertionError(f"no account fell on shard {shard} of {shards}")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("shards", [1, 2], ids=["one-shard", "two-shards"])
async def test_concurrent_orders_on_two_workers_never_spend_more_than_the_buying_power(
    tmp_path: Path, processes: Processes, postgres_url: str, redis_server: str, redis_namespace: str, shards: int
) -> None:
    """200 marketable buys at once, ~12x what the accounts can pay, over two API workers (each its own order desk)
    and `shards` engines (with two, one account on each, 100 orders each): no account ever spends more than it has."""
    env = _production_env(tmp_path, postgres_url, redis_server, redis_namespace) | {"TRADESTACK_ENGINE_SHARDS": str(shards)}
    deposit = Decimal(10_000) / shards
    cli_ok(env, tmp_path, "db", "upgrade")
    base = f"http://127.0.0.1:{free_port()}"
    api = processes.start("api", ["serve", "api", "--workers", "2", "--port", base.rsplit(":", 1)[1]], env)
    await wait_ready(base, api)  # the API seeds the instruments first (see the startup-order test below)
    engines = [processes.start(f"engine{n}", ["serve", "engine", "--shard", str(n)], env) for n in range(shards)]
    for engine in engines:
        await wait_logged(engine, ENGINE_STARTED)
    headers, first = await trader_session(base, env, tmp_path, str(deposit))
    accounts = [first] if shards == 1 else [await _account_on_shard(base, headers, deposit, n, shards) for n in range(shards)]
    per_account = {account: _burst(account, 200 // shards) for account in accounts}
    bodies = [body for burst in zip(*per_account.values(), strict=True) for body in burst]  # interleaved
    for burst in per_account.values():
        demand = sum(Decimal(b["quantity"]) * 40_000 for b in burst)
        assert demand > 8 * deposit  # the orders ask for many times what the account can pay

    pump_settings = _pump_settings(tmp_path, postgres_url, redis_server, redis_namespace)
    # Idle connections expire on our side before the server's 5 s keep-alive ends them, so a poll never races
    # the server closing the connection it picked ("Server disconnected without sending a response").
    limits = httpx.Limits(max_connections=len(bodies), keepalive_expiry=2)
    async with (
        QuotePump(pump_settings, "BTC-USD", low=39_990, high=40_040),
        httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as http,
    ):
        responses = await asyncio.gather(*(http.post("/api/orders", json=body) for body in bodies))
        deadline = time.monotonic() + 20
        for account in accounts:
            while (still_open := await _open_orders(http, account)) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert not still_open, f"accepted orders did not finish on a marketable quote: {still_open[:5]}"
        accepted = {
            (body["account_id"], body["client_order_id"]): r.json()
            for body, r in zip(bodies, responses, strict=True)
            if r.is_success
        }
        stored = {}
        for order in accepted.values():
            answer = await http.get(f"/api/orders/{order['id']}")
            assert answer.status_code == 200, answer.text
            stored[order["id"]] = answer.json()
    _stopped_cleanly(api)
    for engine in engines:
        _stopped_cleanly(engine)
    assert processes.errors() == []

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 422}, [(r.status_code, r.text) for r in responses if r.status_code not in (201, 422)][:5]
    denials = {
        (body["account_id"], body["client_order_id"]): r.json()
        for body, r in zip(bodies, responses, strict=True)
        if r.status_code == 422
    }
    # Every accepted order filled completely: none was accepted without the cash to pay for it (the engine
    # cancels a buy whose fill the cash cannot cover, which only happens after an over-generous check).
    unfilled = {oid: (o["status"], o["reason"]) for oid, o in stored.items() if o["status"] != "filled"}
    assert not unfilled, unfilled

    books = await read_books(postgres_url, tmp_path)
    for account, burst in per_account.items():
        denied = [d for (of, _), d in denials.items() if of == account]
        assert denied, f"no order of {account} was denied although they asked for several times the buying power"
        assert {d.get("check") for d in denied} == {"buying_power"}, denied[:5]
        assert sum(1 for of, _ in accepted if of == account) >= 10 // shards, statuses
        mine = {oid: o for oid, o in books.orders.items() if o.account_id == account}
        assert len(mine) == len(burst)  # one order per request, the denied ones included
        assert {o.client_order_id for o in mine.values()} == {b["client_order_id"] for b in burst}
        assert {oid for oid, o in mine.items() if o.status != "denied"} == {
            o["id"] for (of, _), o in accepted.items() if of == account
        }
        assert {oid for oid, o in mine.items() if o.status == "denied"} == {d["order_id"] for d in denied}
        # Cash moves in whole cents: each fill's quantity x price rounded half-even (the rest is booked to rounding:USD).
        fills = [f for f in books.fills if f.account_id == account]
        spent = sum((to_places(f.quantity * f.price, 2) + f.fee for f in fills), Decimal(0))
        assert spent <= deposit, f"fills of {account} cost {spent} USD with fees, the account had {deposit} USD"
        assert spent >= deposit / 2, f"only {spent} of {deposit} USD was used: the burst did not test the limit"
        cash = books.balances[(account, "cash:USD")].amount
        assert cash == deposit - spent
        assert cash >= 0
    assert fill_problems(books) == []
    _integrity(env, tmp_path)


# -- 2. crashes: kill -9 while a client trades without pause -----------------------------------------


async def _settle(base: str, headers: dict[str, str], account_id: str, seconds: float = 15) -> list[dict[str, Any]]:
    """Wait until no immediate-or-cancel order is open (they get one attempt at the next quote); the open orders."""
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
        deadline = time.monotonic() + seconds
        while True:
            still_open = await _open_orders(http, account_id)
            if not any(o["time_in_force"] == "ioc" for o in still_open) or time.monotonic() > deadline:
                return still_open
            await asyncio.sleep(0.2)


async def _check_answers_against_api(trader: Trader) -> None:
    """Every acknowledged order can be read back, the same order for the same client_order_id; every acknowledged
    cancel holds."""
    problems: list[str] = []
    limits = httpx.Limits(max_connections=10)
    async with httpx.AsyncClient(base_url=trader.base, headers=trader.headers, timeout=30, limits=limits) as http:

        async def acknowledged(client_order_id: str, order_id: str) -> None:
            read = await http.get(f"/api/orders/{order_id}")
            if read.status_code != 200 or read.json()["client_order_id"] != client_order_id:
                problems.append(f"acknowledged order {client_order_id} -> {order_id}: {read.status_code} {read.text}")

        async def canceled(order_id: str) -> None:
            read = await http.get(f"/api/orders/{order_id}")
            if read.status_code != 200 or read.json()["status"] != "canceled":
                problems.append(f"order {order_id} was canceled (200) but now reads {read.status_code} {read.text}")

        await asyncio.gather(
            *(acknowledged(c, a.body["id"]) for c, a in trader.answers.items() if a.status in (200, 201)),
            *(canceled(order_id) for order_id, a in trader.canceled.items() if a.status == 200),
        )
    assert problems == []


def _check_crash_books(trader: Trader, books: Books, restarted_at: datetime, still_open: list[dict[str, Any]]) -> None:
    answers = trader.answers
    assert set(answers) == set(trader.sent), "some orders never got an answer"
    odd = {c: (a.status, a.body) for c, a in answers.items() if a.status not in (200, 201, 422)}
    assert not odd, list(odd.items())[:5]
    not_denials = {c: a.body for c, a in answers.items() if a.status == 422 and a.body.get("error") != "OrderDeniedError"}
    assert not not_denials, list(not_denials.items())[:5]  # the client only sends valid orders
    bad_cancels = {o: (a.status, a.body) for o, a in trader.canceled.items() if a.status not in (200, 409)}
    assert not bad_cancels, bad_cancels
    acknowledged = {a.body["id"]: c for c, a in answers.items() if a.status in (200, 201)}
    denied = {a.body["order_id"] for a in answers.values() if a.status == 422}
    mine = {oid: o for oid, o in books.orders.items() if o.account_id == trader.account_id}

    missing = set(acknowledged) - set(mine)
    assert not missing, f"acknowledged orders not in the database: {sorted(missing)[:10]}"
    assert {oid for oid, o in mine.items() if o.status != "denied"} == set(acknowledged)
    assert {oid for oid, o in mine.items() if o.status == "denied"} == denied
    assert {o.client_order_id for o in mine.values()} <= set(trader.sent)
    assert all(mine[oid].client_order_id == c for oid, c in acknowledged.items())
    canceled = [oid for oid, a in trader.canceled.items() if a.status == 200 and mine[oid].status != "canceled"]
    assert not canceled, canceled
    assert not [o for o in still_open if o["time_in_force"] == "ioc"], "ioc orders still open after the restarts"
    assert all(o.status in FINAL_STATUSES or o.time_in_force == "gtc" for o in mine.values())
    assert fill_problems(books) == []
    fills = [f for f in books.fills if f.account_id == trader.account_id]
    assert len(fills) >= 10, f"only {len(fills)} fills: the test traded too little to show anything"
    assert any(f.ts > restarted_at for f in fills), "nothing filled after the last restart"
    assert sum(1 for a in answers.values() if a.at > restarted_at and a.status == 201) >= 5, "few orders after the restart"


@pytest.mark.postgres
@pytest.mark.redis
async def test_acknowledged_orders_and_fills_survive_kill_9_of_the_api_and_the_engine(
    tmp_path: Path, processes: Processes, postgres_url: str, redis_server: str, redis_namespace: str
) -> None:
    env = _production_env(tmp_path, postgres_url, redis_server, redis_namespace)
    cli_ok(env, tmp_path, "db", "upgrade")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api_args = ["serve", "api", "--workers", "2", "--port", str(port)]
    engine_args = ["serve", "engine", "--shard", "0"]
    api = processes.start("api", api_args, env)
    await wait_ready(base, api)  # the API seeds the instruments first (see the startup-order test)
    engine = processes.start("engine", engine_args, env)
    await wait_logged(engine, ENGINE_STARTED)
    headers, account = await trader_session(base, env, tmp_path, "1000000")

    async with QuotePump(_pump_settings(tmp_path, postgres_url, redis_server, redis_namespace), "BTC-USD", 39_900, 40_100):
        trader = Trader(base, headers, account)
        async with trader.trading():
            await asyncio.sleep(2.5)
            processes.kill(engine)  # the API goes on accepting orders nobody matches
            await asyncio.sleep(1.5)
            processes.kill(api)
            await asyncio.sleep(0.5)
            api = processes.start("api", api_args, env)
            engine = processes.start("engine", engine_args, env)
            await wait_ready(base, api)
            await asyncio.sleep(2.5)
            processes.kill(api)  # both at once
            processes.kill(engine)
            api = processes.start("api", api_args, env)
            engine = processes.start("engine", engine_args, env)
            await wait_ready(base, api)
            await wait_logged(engine, ENGINE_STARTED)
            restarted_at = datetime.now(UTC)
            await asyncio.sleep(2.5)
        still_open = await _settle(base, headers, account)
        await _check_answers_against_api(trader)
    _stopped_cleanly(api)
    _stopped_cleanly(engine)

    assert processes.errors() == []
    assert trader.transport_errors > 0  # the kills did interrupt the client
    _check_crash_books(trader, await read_books(postgres_url, tmp_path), restarted_at, still_open)
    _integrity(env, tmp_path)


async def test_acknowledged_orders_and_fills_survive_kill_9_of_the_embedded_process(tmp_path: Path, processes: Processes) -> None:
    data_dir = tmp_path / "data"
    env = process_env(
        tmp_path,
        TRADESTACK_DATA_DIR=str(data_dir),
        TRADESTACK_ADMIN_PASSWORD=PASSWORD,
        TRADESTACK_MARKETDATA_FEEDS='["synthetic"]',
        TRADESTACK_MARKETDATA_SYMBOLS='["BTC-USD"]',
        TRADESTACK_REPLAY_TICK_SECONDS="0.1",
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    up_args = ["up", "--no-demo-data", "--port", str(port), "--data-dir", str(data_dir)]
    up = processes.start("up", up_args, env)
    await wait_ready(base, up)
    headers, account = await trader_session(base, env, tmp_path, "1000000")

    trader = Trader(base, headers, account)
    async with trader.trading():
        await asyncio.sleep(3)
        for _ in range(2):
            processes.kill(up)
            up = processes.start("up", up_args, env)
            await wait_ready(base, up)
            restarted_at = datetime.now(UTC)
            await asyncio.sleep(3)
    still_open = await _settle(base, headers, account)
    await _check_answers_against_api(trader)
    _stopped_cleanly(up)

    assert processes.errors() == []
    assert trader.transport_errors > 0
    database_url = f"sqlite+aiosqlite:///{(data_dir / 'tradestack.db').as_posix()}"
    _check_crash_books(trader, await read_books(database_url, tmp_path), restarted_at, still_open)
    _integrity(env, tmp_path)


# -- 3. start-up order -------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
async def test_an_engine_started_before_the_api_matches_orders_at_once(
    tmp_path: Path, processes: Processes, postgres_url: str, redis_server: str, redis_namespace: str
) -> None:
    """A fresh deployment may start everything at once: the engine comes up before any API process has seeded
    the instruments, and must still match an order for an instrument seeded since."""
    env = _production_env(tmp_path, postgres_url, redis_server, redis_namespace)
    cli_ok(env, tmp_path, "db", "upgrade")
    engine = processes.start("engine", ["serve", "engine", "--shard", "0"], env)
    await wait_logged(engine, ENGINE_STARTED)
    base = f"http://127.0.0.1:{free_port()}"
    api = processes.start("api", ["serve", "api", "--port", base.rsplit(":", 1)[1]], env)
    await wait_ready(base, api)
    headers, account = await trader_session(base, env, tmp_path, "100000")
    body = {
        "account_id": account,
        "client_order_id": "first",
        "symbol": "BTC-USD",
        "side": "buy",
        "type": "market",
        "quantity": "0.01",
        "time_in_force": "ioc",
    }
    async with (
        QuotePump(_pump_settings(tmp_path, postgres_url, redis_server, redis_namespace), "BTC-USD", 39_990, 40_010),
        httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http,
    ):
        created = await http.post("/api/orders", json=body)
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 5
        while (order := (await http.get(f"/api/orders/{created.json()['id']}")).json())["status"] == "accepted":
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    assert order["status"] == "filled", f"{order}\nengine:\n{log_tail(engine)}"
