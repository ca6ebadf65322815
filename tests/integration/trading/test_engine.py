"""The engine's guarantees, driven directly: no fill booked twice, a rebuilt book continues, day orders and sessions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx

from tradestack.domain.instruments import instrument
from tradestack.domain.matching import Fill
from tradestack.domain.orders import Liquidity
from tradestack.domain.portfolio import FxRates
from tradestack.identity.permissions import Role
from tradestack.kit.runtime import Runtime
from tradestack.ops.integrity import check_integrity
from tradestack.trading.engine import EngineShard
from tradestack.trading.executions import Recorded, record
from tradestack.trading.repository import TradingRepository

from ..conftest import MakeUser  # type: ignore[import-not-found]
from .conftest import PublishQuote  # type: ignore[import-not-found]
from .test_orders import limit_buy, open_account  # type: ignore[import-not-found]

BTC = instrument("BTC-USD")


def _fill(order_id: str, n: int, quantity: str, price: str) -> Fill:
    return Fill(order_id, f"{order_id}-{n}", Decimal(quantity), Decimal(price), Decimal(0), Liquidity.TAKER, datetime.now(UTC))


async def test_a_fill_is_never_booked_twice_and_a_rebuilt_book_continues(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader)
    await publish_quote("BTC-USD", "30000.00", "30001.00", size="1")
    body = {**limit_buy(account, "rest", price="20000.00", quantity="1"), "symbol": "BTC-USD"}
    order_id = (await client.post("/api/orders", json=body, headers=trader.headers)).json()["id"]

    first = await record(runtime, account, BTC, _fill(order_id, 1, "0.25", "20000"), FxRates({}))
    assert first.outcome is Recorded.APPLIED
    again = await record(runtime, account, BTC, _fill(order_id, 1, "0.25", "20000"), FxRates({}))
    assert again.outcome is Recorded.DUPLICATE

    shard = EngineShard(runtime)
    shard.instruments = {"BTC-USD": BTC}
    await shard.rebuild()
    working = shard.engines["BTC-USD"].working_order(order_id)
    assert working is not None
    assert (working.remaining, working.fills, working.filled_notional) == (Decimal("0.75"), 1, Decimal(5000))

    async with runtime.database.read_session() as session:
        order = await TradingRepository(session).load(order_id)
    assert order is not None
    assert (order.status.value, order.filled_quantity) == ("partially_filled", Decimal("0.25"))
    assert sorted(order.fill_ids) == [f"{order_id}-1"]
    report = await check_integrity(runtime.database)
    assert report.ok, report.problems


async def test_a_fill_the_account_cannot_pay_for_cancels_the_order(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    trader = await make_user(Role.TRADER)
    account = await open_account(client, trader, "1000")
    await publish_quote("BTC-USD", "30000.00", "30001.00", size="1")
    body = {**limit_buy(account, "small", price="20000.00", quantity="0.04"), "symbol": "BTC-USD"}
    order_id = (await client.post("/api/orders", json=body, headers=trader.headers)).json()["id"]
    # A price far beyond what was reserved (as if the market had gapped): the cash guard refuses it.
    result = await record(runtime, account, BTC, _fill(order_id, 1, "0.04", "40000"), FxRates({}))
    assert result.outcome is Recorded.CANCELED
    assert result.order is not None
    assert result.order.status == "canceled"
    assert "not enough cash" in (result.order.reason or "")
    accounts = {a["id"]: a for a in (await client.get("/api/accounts", headers=trader.headers)).json()}
    assert accounts[account]["cash"] == {"USD": "1000"}
