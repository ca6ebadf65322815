"""The engine writing the fills of one quote that crosses many resting orders (issue 12, group commit).

    .venv/bin/python benchmarks/engine_fills.py [--orders 500] [--accounts 20] [--rounds 5]
        [--postgres] [--admin-url postgresql://postgres@127.0.0.1:5432/postgres] [--redis-db 13] [--profile]
        [--count-statements] [--entry-probe [--probe-in-group]] [--group-most N]

The API runs in this process (its lifespan, no engine of its own: ``engine_in_process`` off) on a
fresh SQLite file, or with --postgres on a fresh ``bench_<random>`` database (dropped at the end)
and Redis logical database --redis-db under a key namespace of its own. An `EngineShard` is driven
directly, as tests/integration/trading/test_engine_step.py does. --accounts traders each open a USD
account; then every round:

1. a quote away from the market (ask 101.00) reaches the shard; --orders buy limits at 100.00 for one
   share (spread over the accounts) are placed through the API and handed to the shard, whose step
   takes them in: they rest (checked);
2. timed: a quote that crosses them all (ask 99.90) reaches the shard and one `step` matches it and
   records every fill (order events, fills, journal entries, balances) and publishes the updates;
3. checked outside the timed region: every order of the round is filled, one booked fill each.

Two ways of recording, alternating round by round (who goes first alternates too):

* ``grouped``: the shard as it is, the step's events written together (`executions.record_many`);
* ``per_event``: the same shard told that every group failed, so each event is written in a
  transaction of its own by `executions.record`, as the engine did before the group commit.

Against a tree without the group commit (PYTHONPATH=/work/wt/base/src) both are the per-event path,
which is how to check that ``per_event`` stands for it. On SQLite groups are smaller
(`executions.SQLITE_GROUP_MOST`: order entry shares the process's writer). --group-most sets the group's size
(GROUP_MOST, SQLITE_GROUP_MOST and record_many's bound). The shard's reconciliation, session checks
and gauges are put off during the timed step (not what is measured). Figures: medians over --rounds
of the timed step's wall time, as fills per second; CPU seconds of this process are printed too, and per fill.
--count-statements: one more round of each, untimed, counting the SQL statements its step ran (per fill too).
The last line is ``RESULT name=engine_fills ... ratio=<grouped fills/s / per_event fills/s>``.
Nothing here asserts on time.

--entry-probe: while the timed step runs, one more trader submits an order (a buy limit far below the market,
which rests) every 5 ms and times each answer: what order entry waits behind a quote crossing many resting
orders. On SQLite that is the embedded process as it runs (the engine shares the process's writer with order
entry); on PostgreSQL the engine is a process of its own in production, so there the figure only shows this
process's event loop being shared. The probe's work is inside the timed step of both variants alike; its
answers' median and maximum are printed and added to the RESULT line. --probe-in-group: the probe's orders are of
one of the accounts whose orders the quote fills (not of an account of its own), so on PostgreSQL each waits for the
group holding that account's lock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import math
import pstats
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from quotes_api import delete_keys, throwaway_database
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from tradestack.api.app import create_app
from tradestack.domain.marketdata import Quote
from tradestack.identity.permissions import Role
from tradestack.identity.service import Caller, identity_session
from tradestack.kit import migrations
from tradestack.kit.config import Settings
from tradestack.kit.db import Database
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.runner import Publisher
from tradestack.marketdata.service import MarketDataService
from tradestack.models.books import FillRow
from tradestack.trading import engine, executions
from tradestack.trading.commands import Change
from tradestack.trading.engine import EngineShard
from tradestack.trading.repository import TradingRepository

PASSWORD = secrets.token_urlsafe(16)  # the bench traders'
SYMBOL = "AAPL"
VARIANTS = ("grouped", "per_event")
PLACING = 50  # orders placed at once through the API while setting a round up


class Shard(EngineShard):
    """The engine shard, or (`grouped` off) the shard whose every group fails: each event then in its own transaction."""

    grouped = True

    async def _record_group(self, engine: Any, group: Any) -> Any:
        if not self.grouped:
            return None  # as when the group failed: `_apply` records each event on its own
        return await super()._record_group(engine, group)


class Bench:
    def __init__(self, runtime: Runtime, client: httpx.AsyncClient, orders: int) -> None:
        self.runtime = runtime
        self.client = client
        self.orders = orders
        self.publisher = Publisher(runtime)
        self.shard = Shard(runtime)
        self.traders: list[tuple[str, dict[str, str]]] = []  # (account id, headers)
        self.entry_probe = False
        self.probe_in_group = False  # the probe's orders are of an account of the filled orders (--probe-in-group)
        self.prober: tuple[str, dict[str, str]] = ("", {})  # (account id, headers) of the order entry probe
        self.entries: dict[str, list[float]] = {variant: [] for variant in VARIANTS}  # order entry answers, seconds
        self.statements: dict[str, int] = {}  # SQL statements of a counted round's step, by variant

    async def quote(self, bid: str, ask: str) -> Quote:
        size = Decimal(10 * self.orders)
        quote = Quote(SYMBOL, Decimal(bid), Decimal(ask), size, size, Decimal(bid), Decimal(1), datetime.now(UTC))
        await self.publisher.publish("bench", quote)
        return quote

    async def sign_up(self, accounts: int) -> None:
        for _ in range(accounts + 1):  # the last: the order entry probe's
            email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
            async with identity_session(self.runtime, Caller()) as service:
                await service.create_user(email, PASSWORD, Role.TRADER)
            response = await self.client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            response.raise_for_status()
            headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
            body = {"name": "bench", "base_currency": "USD", "deposit": {"currency": "USD", "amount": "10000000"}}
            response = await self.client.post("/api/accounts", json=body, headers=headers)
            response.raise_for_status()
            self.traders.append((str(response.json()["id"]), headers))
        self.prober = self.traders.pop()
        if self.probe_in_group:
            self.prober = self.traders[0]  # one of the accounts whose orders the quote fills: it waits for their locks
        self.shard.instruments = await MarketDataService(self.runtime).instruments()

    async def _place(self, tag: str, n: int) -> str:
        account, headers = self.traders[n % len(self.traders)]
        body = {
            "account_id": account, "client_order_id": f"{tag}-{n}", "symbol": SYMBOL, "side": "buy", "type": "limit",
            "quantity": "1", "limit_price": "100.00", "time_in_force": "gtc",
        }  # fmt: skip
        response = await self.client.post("/api/orders", json=body, headers=headers)
        if response.status_code != 201 or response.json()["status"] != "accepted":
            raise RuntimeError(f"order {tag}-{n} not accepted: {response.status_code} {response.text}")
        order_id = str(response.json()["id"])
        self.shard.note_changed(Change(account, order_id))
        return order_id

    async def probe(self, tag: str, stopped: asyncio.Event) -> list[float]:
        """Submit an order every 5 ms until `stopped`; each answer's wait in seconds."""
        account, headers = self.prober
        waits: list[float] = []
        while not stopped.is_set():
            body = {
                "account_id": account, "client_order_id": f"{tag}-probe-{len(waits)}", "symbol": SYMBOL, "side": "buy",
                "type": "limit", "quantity": "1", "limit_price": "50.00", "time_in_force": "gtc",
            }  # fmt: skip
            started = time.perf_counter()
            response = await self.client.post("/api/orders", json=body, headers=headers)
            waits.append(time.perf_counter() - started)
            if response.status_code != 201:
                raise RuntimeError(f"probe order not accepted: {response.status_code} {response.text}")
            await asyncio.sleep(0.005)
        return waits

    async def round(
        self, variant: str, tag: str, profiler: cProfile.Profile | None = None, *, count_statements: bool = False
    ) -> tuple[float, float]:
        """Rest the orders, then time the step that fills them all; (wall seconds, CPU seconds). With `count_statements`
        also count the step's SQL statements (`statements`): not a round to time then."""
        self.shard.on_quote(await self.quote("100.50", "101.00"))
        ids: list[str] = []
        for start in range(0, self.orders, PLACING):
            ids += await asyncio.gather(*(self._place(tag, n) for n in range(start, min(start + PLACING, self.orders))))
        await self.shard.step()
        book = self.shard.engines[SYMBOL]
        if any(book.working_order(order_id) is None for order_id in ids):
            raise RuntimeError("an order of the round is not resting in the shard's book")
        crossing = await self.quote("99.50", "99.90")
        self.shard.grouped = variant == "grouped"
        self.shard._reconcile_at = self.shard._session_at = self.shard._gauges_at = math.inf  # not what is measured
        gc.collect()
        if profiler is not None:
            profiler.enable()
        stopped = asyncio.Event()
        probing = asyncio.ensure_future(self.probe(tag, stopped)) if self.entry_probe else None
        started, started_cpu = time.perf_counter(), time.process_time()
        with counted_statements() if count_statements else contextlib.nullcontext([0]) as counted:
            self.shard.on_quote(crossing)
            await self.shard.step()
        if count_statements:
            self.statements[variant] = counted[0]
        wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        stopped.set()
        if probing is not None and not tag.startswith("warm"):
            self.entries[variant] += await probing
        elif probing is not None:
            await probing
        if profiler is not None:
            profiler.disable()
        await self.check(ids)
        return wall, cpu

    async def check(self, ids: list[str]) -> None:
        async with self.runtime.database.read_session() as session:
            orders = await TradingRepository(session).load_many(ids)
            fills = await session.scalar(select(func.count()).select_from(FillRow).where(FillRow.order_id.in_(ids)))
        statuses = {order.status.value for order in orders.values()}
        if len(orders) != len(ids) or statuses != {"filled"} or fills != len(ids):
            raise RuntimeError(f"the round's {len(ids)} orders: {len(orders)} found, statuses {statuses}, {fills} fills")


def settings_for(database_url: str, redis_url: str | None, namespace: str, data_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_namespace=namespace,
        data_dir=data_dir,
        log_level="warning",
        engine_in_process=False,  # the benchmark's shard is the only one matching
        engine_reconcile_seconds=3600,
        paper_slippage_bps=Decimal(0),
        market_hours_always_open=True,
        marketdata_feeds=[],
        risk_max_orders_per_minute=1_000_000,
        argon2_time_cost=1,
        argon2_memory_kib=8192,
        rate_limit_auth="100000/minute",
        login_ip_limits="100000/minute",
        rate_limit_per_ip="100000/minute",
        rate_limit_per_principal="100000/minute",
    )  # type: ignore[arg-type]


async def run(
    args: argparse.Namespace, settings: Settings
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[float]], dict[str, int]]:
    database = Database(settings)
    await migrations.upgrade(database.engine)
    await database.dispose()
    app = create_app(settings)
    timed: dict[str, list[tuple[float, float]]] = {variant: [] for variant in VARIANTS}
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        bench = Bench(app.state.runtime, client, args.orders)
        bench.entry_probe = args.entry_probe
        bench.probe_in_group = args.probe_in_group
        await bench.sign_up(args.accounts)
        await bench.round("grouped", "warm-grouped")  # warm-up of both, not counted
        await bench.round("per_event", "warm-per-event")
        for n in range(args.rounds):
            for variant in VARIANTS if n % 2 == 0 else reversed(VARIANTS):
                timed[variant].append(await bench.round(variant, f"r{n}-{variant}"))
        if args.count_statements:
            for variant in VARIANTS:
                await bench.round(variant, f"counted-{variant}", count_statements=True)
        if args.profile:
            for variant in VARIANTS:
                profiler = cProfile.Profile()
                await bench.round(variant, f"profiled-{variant}", profiler)
                print(f"-- {variant}, one more round under cProfile:")
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    return timed, bench.entries, bench.statements


@contextmanager
def counted_statements() -> Iterator[list[int]]:
    """The statements every connection of the process runs while in the block (a ``before_cursor_execute`` listener:
    an executemany counts once), in the list's one item. Listening makes the order desk's statements go through
    SQLAlchemy (`kit.db.execute_core`), so a counted round is not a timed one."""
    counted = [0]

    def before_cursor_execute(*_: Any) -> None:
        counted[0] += 1

    event.listen(Engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield counted
    finally:
        event.remove(Engine, "before_cursor_execute", before_cursor_execute)


@contextmanager
def store(args: argparse.Namespace) -> Iterator[tuple[str, str | None]]:
    """(database URL, Redis URL) of the run: a fresh database, dropped (or deleted) at the end."""
    if args.postgres:
        with throwaway_database(args.admin_url) as database_url:
            yield database_url, f"redis://127.0.0.1:6379/{args.redis_db}"
    else:
        with tempfile.TemporaryDirectory(prefix="engine-fills-") as directory:
            yield f"sqlite+aiosqlite:///{directory}/bench.db", None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL and Redis instead of SQLite, embedded")
    parser.add_argument("--orders", type=int, default=500, help="resting orders one quote crosses")
    parser.add_argument("--accounts", type=int, default=20, help="accounts the orders are spread over")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each variant, alternating")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--profile", action="store_true", help="one more round of each under cProfile, its top functions")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis logical database on 127.0.0.1:6379")
    parser.add_argument(
        "--count-statements", action="store_true", help="one more round of each, untimed, counting its SQL statements"
    )
    parser.add_argument("--entry-probe", action="store_true", help="time order entry during the timed step (see above)")
    parser.add_argument(
        "--probe-in-group", action="store_true", help="--entry-probe with an account whose orders the quote fills"
    )
    parser.add_argument(
        "--group-most", type=int, help="events a group writes at most (GROUP_MOST, SQLITE_GROUP_MOST and record_many's bound)"
    )
    args = parser.parse_args()
    if args.orders < 1 or args.accounts < 1 or args.rounds < 1:
        parser.error("--orders, --accounts and --rounds must be at least 1")
    if args.group_most is not None:
        if args.group_most < 1:
            parser.error("--group-most must be at least 1")
        executions.GROUP_MOST = engine.GROUP_MOST = engine.SQLITE_GROUP_MOST = args.group_most  # record_many's bound too

    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="engine-fills-data-") as data_dir, store(args) as (database_url, redis_url):
        try:
            timed, entries, statements = asyncio.run(run(args, settings_for(database_url, redis_url, namespace, Path(data_dir))))
        finally:
            if redis_url is not None:
                delete_keys(redis_url, namespace)

    backend = "postgresql" if args.postgres else "sqlite"
    rates: dict[str, float] = {}
    cpu_per_fill: dict[str, float] = {}
    for variant in VARIANTS:
        walls = [wall for wall, _ in timed[variant]]
        cpus = [cpu for _, cpu in timed[variant]]
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        rates[variant] = args.orders / wall
        rounds = " ".join(f"{w * 1000:.0f}" for w in walls)
        cpu_per_fill[variant] = cpu * 1000 / args.orders
        print(
            f"{variant:>9}: {args.orders} fills in {wall * 1000:.1f} ms median ({rates[variant]:.0f} fills/s), "
            f"CPU {cpu * 1000:.1f} ms ({cpu_per_fill[variant]:.2f} ms a fill); rounds (ms): {rounds}"
        )
        if variant in statements:
            counted = statements[variant]
            print(f"{variant:>9}: {counted} SQL statements in a counted step ({counted / args.orders:.2f} a fill)")
    probed = ""
    for variant in VARIANTS if args.entry_probe else ():
        waits = entries[variant]
        p50, most = 1000 * statistics.median(waits), 1000 * max(waits)
        print(f"{variant:>9}: order entry during the step, {len(waits)} orders: median {p50:.1f} ms, max {most:.1f} ms")
        probed += f"{variant}_entry_p50_ms={p50:.1f} {variant}_entry_max_ms={most:.1f} "
    print(
        f"RESULT name=engine_fills backend={backend} orders={args.orders} accounts={args.accounts} rounds={args.rounds} "
        f"group_most={engine.GROUP_MOST if args.postgres else engine.SQLITE_GROUP_MOST} "
        f"grouped_fills_per_s={rates['grouped']:.0f} per_event_fills_per_s={rates['per_event']:.0f} "
        f"grouped_cpu_ms_per_fill={cpu_per_fill['grouped']:.2f} per_event_cpu_ms_per_fill={cpu_per_fill['per_event']:.2f} "
        + "".join(f"{variant}_statements_per_fill={n / args.orders:.2f} " for variant, n in statements.items())
        + f"{probed}"
        f"ratio={rates['grouped'] / rates['per_event']:.2f}"
    )


if __name__ == "__main__":
    main()
