"""Strategies deployed with /api/strategy trade on paper through order entry, on both stacks.

The app runs the engine and the strategy runner in process (the trading conftest); the test publishes
quotes as the market-data runner would, one per second of quote time, so each quote closes a 1-second bar.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tradestack.core.errors import AuthenticationError, PermissionDeniedError
from tradestack.domain.marketdata import Bar, Quote, Side
from tradestack.domain.orders import OrderType, TimeInForce
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.runner import Publisher
from tradestack.models.strategies import StrategyDeploymentRow
from tradestack.strategy import examples
from tradestack.strategy import runner as strategy_runner
from tradestack.strategy.api import BarView, Strategy, StrategyContext
from tradestack.strategy.paper import PaperHost
from tradestack.strategy.runner import RUNNER, StrategyRunner, _Port
from tradestack.strategy.service import StrategyService
from tradestack.trading.schemas import OrderCreate

from ...conftest import metric_sample  # type: ignore[import-not-found]
from ..conftest import MakeUser, TestUser  # type: ignore[import-not-found]

RISE_THEN_FALL = ["100", "100", "100", "100", "110", "120", "130", "90", "80", "70", "70"]
"""Closes that make sma_cross(fast=2, slow=3) buy at the close of bar 4 and sell at the close of bar 7 (each bar
closes when the next quote arrives)."""


class Quotes:
    """Publishes quotes of one symbol at whole seconds of quote time, ahead of the clock, one per call."""

    def __init__(self, runtime: Runtime, symbol: str = "BTC-USD") -> None:
        self.publisher = Publisher(runtime)
        self.symbol = symbol
        now = datetime.now(UTC)
        self.next_ts = now.replace(microsecond=0) + timedelta(seconds=2)

    async def publish(self, price: str) -> Quote:
        value = Decimal(price)
        quote = Quote(self.symbol, value - 1, value + 1, Decimal(5), Decimal(5), value, Decimal(1), self.next_ts)
        self.next_ts += timedelta(seconds=1)
        await self.publisher.publish("test", quote)
        return quote

    async def walk(self, prices: Sequence[str], pause: float = 0.3) -> None:
        for price in prices:
            await self.publish(price)
            await asyncio.sleep(pause)


async def _account(client: httpx.AsyncClient, user: TestUser, deposit: str = "100000") -> str:
    body = {"name": "strategy", "base_currency": "USD", "deposit": {"currency": "USD", "amount": deposit}}
    opened = await client.post("/api/accounts", json=body, headers=user.headers)
    assert opened.status_code == 201, opened.text
    return str(opened.json()["id"])


async def _deploy(client: httpx.AsyncClient, user: TestUser, account: str, **extra: Any) -> dict[str, Any]:
    body = {
        "strategy": "sma_cross",
        "account_id": account,
        "symbols": ["BTC-USD"],
        "params": {"fast": 2, "slow": 3, "quantity": "0.01"},
        "bar_seconds": 1,
    } | extra
    response = await client.post("/api/strategy", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    deployed: dict[str, Any] = response.json()
    return deployed


async def _until(
    client: httpx.AsyncClient, user: TestUser, deployment: str, done: Callable[[dict[str, Any]], bool], seconds: float = 15
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for _ in range(int(seconds / 0.1)):
        status = (await client.get(f"/api/strategy/{deployment}", headers=user.headers)).json()
        if done(status):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"strategy {deployment} did not get there: {status}")


async def _started(runtime: Runtime, deployment: str) -> None:
    runner = runtime.components.get(RUNNER)
    assert runner is not None
    assert isinstance(runner, StrategyRunner)
    for _ in range(100):
        found = runner.deployments.get(deployment)
        if found is not None and found.host.started:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the runner did not start {deployment}")


async def _orders(client: httpx.AsyncClient, user: TestUser, account: str) -> list[dict[str, Any]]:
    response = await client.get("/api/orders", params={"account_id": account, "limit": 500}, headers=user.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return sorted(items, key=lambda o: o["created_at"])


async def test_a_deployed_strategy_trades_on_paper_and_reports_its_pnl(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    user = await make_user(Role.TRADER)
    account = await _account(client, user)
    deployed = await _deploy(client, user, account)
    assert deployed["state"] == "running"
    assert deployed["orders"] == 0
    await _started(runtime, deployed["id"])

    quotes = Quotes(runtime)
    await quotes.walk(RISE_THEN_FALL[:6])  # the 6th quote (120) closes bar 4: the fast SMA crosses above
    await _until(client, user, deployed["id"], lambda s: s["fills"] == 1)
    await quotes.walk(RISE_THEN_FALL[6:9])  # the 9th (80) closes bar 7: it crosses back below
    status = await _until(client, user, deployed["id"], lambda s: s["fills"] >= 2 and s["open_orders"] == 0)
    await quotes.walk(RISE_THEN_FALL[9:])

    orders = await _orders(client, user, account)
    assert [(o["side"], o["status"], o["quantity"]) for o in orders] == [("buy", "filled", "0.01"), ("sell", "filled", "0.01")]
    prefix = deployed["order_prefix"]
    assert all(o["client_order_id"].startswith(prefix) for o in orders)
    bought, sold = (Decimal(o["average_fill_price"]) for o in orders)
    # market orders decided when the quote after the bar closed it (120, then 80): filled at its ask, then its bid
    assert bought == Decimal(121)
    assert sold == Decimal(79)
    fees = Decimal(status["pnl"]["fees"])
    assert Decimal(status["pnl"]["realized"]) == (sold - bought) * Decimal("0.01")
    assert Decimal(status["pnl"]["total"]) == (sold - bought) * Decimal("0.01") - fees
    assert status["positions"] == []
    assert status["orders"] == 2
    assert status["state"] == "running"
    assert status["trading_state"] == "active"
    assert status["last_error"] is None

    listed = (await client.get("/api/strategy", headers=user.headers)).json()["strategies"]
    assert [s["id"] for s in listed] == [deployed["id"]]
    other = await make_user(Role.TRADER)
    assert (await client.get("/api/strategy", headers=other.headers)).json()["strategies"] == []
    assert (await client.get(f"/api/strategy/{deployed['id']}", headers=other.headers)).status_code == 404


async def test_deploy_refuses_what_it_cannot_run_naming_the_field(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user(Role.TRADER)
    account = await _account(client, user)
    body = {"strategy": "sma_cross", "account_id": account, "symbols": ["BTC-USD"], "params": {"fast": 5, "slow": 3}}
    cases = {
        "strategy: unknown strategy 'nope'": body | {"strategy": "nope"},
        "params.fast:": body | {"params": {"fast": "ten"}},
        "params.speed:": body | {"params": {"speed": 1}},
        "params: sma_cross needs 0 < fast < slow": body,
        "symbols: unknown symbol 'NOPE'": body | {"symbols": ["NOPE"], "params": {}},
    }
    for expected, sent in cases.items():
        response = await client.post("/api/strategy", json=sent, headers=user.headers)
        assert response.status_code == 422, (expected, response.text)
        assert response.json()["detail"].startswith(expected), (expected, response.json())
        assert response.json()["fields"][0].startswith(expected.split(":")[0])
    other = await make_user(Role.TRADER)
    response = await client.post("/api/strategy", json=body | {"params": {}}, headers=other.headers)
    assert response.status_code == 404  # not their account
    assert (await client.get("/api/strategy", headers=user.headers)).json()["strategies"] == []


async def test_halt_stops_a_strategy_submitting_and_resume_lets_it_trade(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    user = await make_user(Role.TRADER)
    risk = await make_user(Role.RISK)
    account = await _account(client, user)
    deployed = await _deploy(client, user, account)
    await _started(runtime, deployed["id"])
    quotes = Quotes(runtime)
    halted = await client.post("/api/risk/halt", json={"scope": "global", "reason": "test"}, headers=risk.headers)
    assert halted.status_code == 200, halted.text

    await quotes.walk(RISE_THEN_FALL)  # would buy and sell
    await asyncio.sleep(0.5)
    response = await client.get(f"/api/strategy/{deployed['id']}", headers=user.headers)
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["orders"] == 0
    assert status["trading_state"] == "halted"
    assert status["state"] == "running"
    assert await _orders(client, user, account) == []  # not even a denied one: it did not submit

    resumed = await client.post("/api/risk/resume", json={"scope": "global"}, headers=risk.headers)
    assert resumed.status_code == 200, resumed.text
    await quotes.walk(["70", "70", "90", "110", "130"])  # the bars seen while halted are its history: it buys
    status = await _until(client, user, deployed["id"], lambda s: s["fills"] >= 1)
    assert status["orders"] == 1
    assert status["positions"][0]["quantity"] == "0.01"


class Exploding(Strategy):
    """Raises on every bar."""

    name = "exploding"

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        raise RuntimeError(f"boom at bar {bar.index}")


async def test_a_strategy_that_keeps_failing_stops_itself_with_its_last_error(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(examples.STRATEGIES, "exploding", Exploding)  # type: ignore[index]
    user = await make_user(Role.TRADER)
    account = await _account(client, user)
    deployed = await _deploy(client, user, account, strategy="exploding", params={}, max_errors=3)
    await _started(runtime, deployed["id"])

    await Quotes(runtime).walk(["100"] * 6)
    status = await _until(client, user, deployed["id"], lambda s: s["state"] == "failed")
    assert status["consecutive_errors"] == 3
    assert status["errors"] == 3
    assert status["last_error"] == "RuntimeError: boom at bar 2"
    assert "3 errors in a row" in status["stop_reason"]
    runner = runtime.components.get(RUNNER)
    assert runner is not None
    assert isinstance(runner, StrategyRunner)
    for _ in range(50):
        if deployed["id"] not in runner.deployments:
            break
        await asyncio.sleep(0.05)
    assert deployed["id"] not in runner.deployments


async def test_stop_is_audited_and_the_runner_lets_go(client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime) -> None:
    user = await make_user(Role.TRADER)
    account = await _account(client, user)
    deployed = await _deploy(client, user, account)
    await _started(runtime, deployed["id"])
    stopped = await client.post(f"/api/strategy/{deployed['id']}/stop", headers=user.headers)
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "stopped"
    assert stopped.json()["stop_reason"] == f"stopped by {user.email}"
    again = await client.post(f"/api/strategy/{deployed['id']}/stop", headers=user.headers)
    assert again.status_code == 409
    runner = runtime.components.get(RUNNER)
    assert runner is not None
    assert isinstance(runner, StrategyRunner)
    for _ in range(50):
        if deployed["id"] not in runner.deployments:
            break
        await asyncio.sleep(0.1)
    assert deployed["id"] not in runner.deployments
    await Quotes(runtime).walk(RISE_THEN_FALL, pause=0.05)
    await asyncio.sleep(0.3)
    assert await _orders(client, user, account) == []

    admin = await make_user(Role.ADMIN)
    actions: list[str] = []
    for _ in range(50):  # chained just after the commit
        audit = await client.get("/api/audit", params={"actor_user_id": user.id}, headers=admin.headers)
        assert audit.status_code == 200, audit.text
        actions = sorted(e["action"] for e in audit.json() if e["target"] == f"strategy:{deployed['id']}")
        if len(actions) == 2:
            break
        await asyncio.sleep(0.1)
    assert actions == ["strategy.deploy", "strategy.stop"]


async def test_disabling_the_owner_stops_their_strategy_and_its_orders_at_once(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A strategy trades as its owner is *now*: disabled, its very next order is refused (not sent as a trader),
    and the runner stops the deployment with the reason; a demoted owner's orders are refused likewise."""
    monkeypatch.setitem(examples.STRATEGIES, "buy_every_bar", BuyEveryBar)  # type: ignore[index]
    admin = await make_user(Role.ADMIN)
    user = await make_user(Role.TRADER)
    account = await _account(client, user)
    deployed = await _deploy(client, user, account, strategy="buy_every_bar", params={})
    stopped = await client.post(f"/api/strategy/{deployed['id']}/stop", headers=user.headers)  # drive a port by hand
    assert stopped.status_code == 200
    await Quotes(runtime).publish("100")
    row = await _row(runtime, deployed["id"])
    port = _Port(asyncio.get_running_loop(), StrategyService(runtime).trading, row)

    async def submit(client_order_id: str) -> Any:
        return await port._submit(
            OrderCreate(
                account_id=account,
                client_order_id=client_order_id,
                symbol="BTC-USD",
                side=Side.BUY,
                type=OrderType.MARKET,
                quantity=Decimal("0.01"),
                time_in_force=TimeInForce.IOC,
            )
        )

    assert (await submit(f"{row.order_prefix}a")).request.client_order_id == f"{row.order_prefix}a"
    demoted = await client.patch(f"/api/users/{user.id}", json={"role": "viewer"}, headers=admin.headers)
    assert demoted.status_code == 200, demoted.text
    with pytest.raises(PermissionDeniedError):
        await submit(f"{row.order_prefix}b")
    disabled = await client.patch(f"/api/users/{user.id}", json={"role": "trader", "is_active": False}, headers=admin.headers)
    assert disabled.status_code == 200, disabled.text
    with pytest.raises(AuthenticationError, match="disabled"):
        await submit(f"{row.order_prefix}c")
    stored = await StrategyService(runtime).trading.orders_with_prefix(account, row.order_prefix)
    assert [order.request.client_order_id for order, _ in stored] == [f"{row.order_prefix}a"]

    # A running deployment of a disabled owner: the runner's next read of the table stops it, with the reason.
    other = await make_user(Role.TRADER)
    other_account = await _account(client, other)
    running = await _deploy(client, other, other_account, strategy="buy_every_bar", params={})
    await _started(runtime, running["id"])
    assert (await client.patch(f"/api/users/{other.id}", json={"is_active": False}, headers=admin.headers)).status_code == 200
    runner = runtime.components.get(RUNNER)
    assert isinstance(runner, StrategyRunner)
    runner.changed()
    status = await _until(client, admin, running["id"], lambda s: s["state"] == "failed")
    assert "disabled" in status["stop_reason"]
    for _ in range(50):
        if running["id"] not in runner.deployments:
            break
        await asyncio.sleep(0.05)
    assert running["id"] not in runner.deployments


async def test_orders_changed_since_are_only_those_updated_at_or_after_it(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    """What the runner reads before each event once it has read everything: the orders updated since."""
    user = await make_user(Role.TRADER)
    account = await _account(client, user)
    await Quotes(runtime).publish("100")
    trading = StrategyService(runtime).trading
    for n in range(3):
        body = {
            "account_id": account,
            "client_order_id": f"pfx-{n}",
            "symbol": "BTC-USD",
            "side": "buy",
            "type": "limit",
            "quantity": "0.01",
            "limit_price": "50",
            "time_in_force": "gtc",
        }
        assert (await client.post("/api/orders", json=body, headers=user.headers)).status_code == 201
    everything = await trading.orders_with_prefix(account, "pfx-")
    assert [o.request.client_order_id for o, _ in everything] == ["pfx-0", "pfx-1", "pfx-2"]
    cancelled_at = runtime.clock.now()
    first = everything[0][0]
    canceled = await client.delete(f"/api/orders/{first.id}", headers=user.headers)
    assert canceled.status_code == 200, canceled.text
    changed = await trading.orders_with_prefix(account, "pfx-", changed_since=cancelled_at)
    assert [o.request.client_order_id for o, _ in changed] == ["pfx-0"]
    assert await trading.orders_with_prefix(account, "pfx-", changed_since=runtime.clock.now() + timedelta(seconds=1)) == []


class BuyEveryBar(Strategy):
    """Buys `quantity` on every bar (to show that a bar handled twice does not buy twice)."""

    name = "buy_every_bar"

    def on_bar(self, ctx: StrategyContext, bar: BarView) -> None:
        ctx.submit(bar.symbol, Side.BUY, Decimal("0.01"))


async def test_a_restarted_host_handling_the_same_bar_again_sends_no_second_order(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst crash: the order was committed, then the process died before anything else happened. A new host
    with no memory of it handles the same bar again: the same client order id comes back as the stored order."""
    monkeypatch.setitem(examples.STRATEGIES, "buy_every_bar", BuyEveryBar)  # type: ignore[index]
    user = await make_user(Role.TRADER)
    account = await _account(client, user)
    deployed = await _deploy(client, user, account, strategy="buy_every_bar", params={})
    stopped = await client.post(f"/api/strategy/{deployed['id']}/stop", headers=user.headers)  # drive it by hand
    assert stopped.status_code == 200
    await Quotes(runtime).publish("100")  # a price for the risk checks and the engine
    rows = [row for row in await StrategyService(runtime).running() if row.id == deployed["id"]]
    assert rows == []
    row = await _row(runtime, deployed["id"])
    bar = Bar("BTC-USD", datetime.now(UTC).replace(microsecond=0), *(Decimal(100),) * 4, Decimal(1))

    async def handle_once() -> list[str]:
        host = PaperHost(
            BuyEveryBar(["BTC-USD"]),
            prefix=row.order_prefix,
            port=_Port(asyncio.get_running_loop(), StrategyService(runtime).trading, row),
            clock=runtime.clock,
            base_currency="USD",
            account_id=account,
        )
        await asyncio.to_thread(host.start)
        await asyncio.to_thread(host.on_bar, bar)
        return [o.request.client_order_id for o in host.orders]

    first = await handle_once()
    second = await handle_once()  # the restarted host
    assert first == second == [f"{row.order_prefix}b{int(bar.ts.timestamp())}.1"]
    orders = await _orders(client, user, account)
    assert [o["client_order_id"] for o in orders] == first


async def _row(runtime: Runtime, deployment_id: str) -> Any:
    from tradestack.strategy.repository import DeploymentRepository

    async with runtime.database.read_session() as session:
        row = await DeploymentRepository(session).get(deployment_id)
        assert row is not None
        session.expunge(row)
        return row


async def test_the_runner_reads_the_deployments_only_when_told_or_rarely(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    """No deployment: the table is not read every second; a deploy and a stop are heard at once (on the bus)."""
    runner = runtime.components.get(RUNNER)
    assert runner is not None
    for _ in range(100):  # the first read happens as the runner starts
        if runner.reads:
            break
        await asyncio.sleep(0.05)
    reads = runner.reads
    await asyncio.sleep(2.5)
    assert runner.reads == reads  # was one read a second
    user = await make_user(Role.TRADER)
    account = await _account(client, user)
    deployed = await _deploy(client, user, account)
    await _started(runtime, deployed["id"])  # within 5 s, long before the slow poll
    assert runner.reads == reads + 1
    stopped = await client.post(f"/api/strategy/{deployed['id']}/stop", headers=user.headers)
    assert stopped.status_code == 200, stopped.text
    for _ in range(50):
        if deployed["id"] not in runner.deployments:
            break
        await asyncio.sleep(0.1)
    assert deployed["id"] not in runner.deployments
    assert runner.reads == reads + 2


async def test_a_read_of_the_deployments_that_fails_on_a_bug_is_counted_and_the_next_read_starts_the_deployment(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in reading the deployments is counted in background_task_failures_total{task="strategy_deployments"},
    a database outage there as an outage (not a bug); the runner reads again a poll later and starts the deployment."""
    monkeypatch.setattr(strategy_runner, "POLL_SECONDS", 0.05)  # how soon a failed read is tried again
    runner = runtime.components.get(RUNNER)
    assert isinstance(runner, StrategyRunner)
    for _ in range(100):  # the first read happens as the runner starts
        if runner.reads:
            break
        await asyncio.sleep(0.05)
    running = runner.service.running
    outcomes: list[Exception] = [KeyError("a bug in the read"), ConnectionRefusedError("database away")]

    async def failing_twice() -> list[StrategyDeploymentRow]:
        if outcomes:
            raise outcomes.pop(0)
        return await running()

    monkeypatch.setattr(runner.service, "running", failing_twice)
    failures = metric_sample("background_task_failures_total", task="strategy_deployments")
    outages = metric_sample("backend_unavailable_total", backend="database", operation="strategy_deployments")
    user = await make_user(Role.TRADER)
    account = await _account(client, user)
    deployed = await _deploy(client, user, account)  # announced: the runner's read fails on the bug, then the outage
    await _started(runtime, deployed["id"])
    assert outcomes == []
    assert metric_sample("background_task_failures_total", task="strategy_deployments") == failures + 1
    assert metric_sample("backend_unavailable_total", backend="database", operation="strategy_deployments") == outages + 1
