"""The risk state the order service builds from the books, driven through `TradingService.submit` on both stacks.

The pure checks are pinned in tests/unit/domain/test_risk.py; these tests pin what the service feeds
them: realized P&L since the start of the UTC day, positions valued at their marks in the account's
base currency, open orders counted against the position and reserved against buying power.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import orjson
import pytest
from sqlalchemy import select

from tradestack.audit.service import AuditService
from tradestack.core.clock import SimClock
from tradestack.domain.instruments import instrument
from tradestack.domain.marketdata import Side
from tradestack.domain.matching import Fill
from tradestack.domain.orders import Liquidity, OrderType, TimeInForce
from tradestack.domain.portfolio import FxRates
from tradestack.identity.permissions import Role, permissions_of
from tradestack.identity.service import Caller, Principal
from tradestack.kit.runtime import Runtime
from tradestack.models.audit import AuditEntry
from tradestack.trading.executions import Recorded, record
from tradestack.trading.schemas import OrderCreate, OrderReplace, RiskLimitsBody
from tradestack.trading.service import OrderDeniedError, TradingService

from ..conftest import MakeUser, TestUser  # type: ignore[import-not-found]
from .conftest import PublishQuote  # type: ignore[import-not-found]
from .test_orders import open_account  # type: ignore[import-not-found]

AAPL = instrument("AAPL")
MONDAY_AFTERNOON = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)


def principal_of(user: TestUser) -> Principal:
    return Principal(user.id, user.email, user.role, permissions_of(user.role))


def limits(**changes: str | int) -> RiskLimitsBody:
    generous: dict[str, str | int] = {
        "max_order_notional": "1000000",
        "max_position_quantity": "1000000",
        "max_gross_exposure": "1000000000",
        "price_collar_pct": "5",
        "max_orders_per_minute": 1000,
        "daily_loss_limit": "1000000",
    }
    return RiskLimitsBody.model_validate(generous | changes)


class Desk:
    """One trader's account, with orders submitted through the service and fills booked as the engine books them."""

    def __init__(self, runtime: Runtime, trader: TestUser, risk: TestUser, account: str) -> None:
        self.runtime, self.trader, self.risk, self.account = runtime, trader, risk, account
        self.service = TradingService(runtime)
        self.fills = 0

    async def set_limits(self, body: RiskLimitsBody) -> None:
        await self.service.put_limits(principal_of(self.risk), self.account, body, Caller())

    async def submit(self, client_order_id: str, side: str, quantity: str, price: str) -> str:
        """Submit a good-till-canceled limit order; its id when accepted, OrderDeniedError when refused."""
        body = OrderCreate(
            account_id=self.account,
            client_order_id=client_order_id,
            symbol="AAPL",
            side=Side(side),
            type=OrderType.LIMIT,
            quantity=Decimal(quantity),
            limit_price=Decimal(price),
            time_in_force=TimeInForce.GTC,
        )
        order, created = await self.service.submit(principal_of(self.trader), body, Caller())
        assert created
        return order.id

    async def denial(self, client_order_id: str, side: str, quantity: str, price: str) -> str:
        """Submit an order that must be refused; the refusal's text."""
        with pytest.raises(OrderDeniedError) as refused:
            await self.submit(client_order_id, side, quantity, price)
        return str(refused.value)

    async def fill(self, order_id: str, quantity: str, price: str, ts: datetime, rates: FxRates | None = None) -> None:
        self.fills += 1
        fill = Fill(order_id, f"{order_id}-{self.fills}", Decimal(quantity), Decimal(price), Decimal(0), Liquidity.TAKER, ts)
        result = await record(self.runtime, self.account, AAPL, fill, rates or FxRates({}))
        assert result.outcome is Recorded.APPLIED, result


async def desk(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, currency: str = "USD", clock: SimClock | None = None
) -> Desk:
    """A trader with a 100,000 account, and a risk manager; from here on the runtime keeps `clock` when given."""
    trader, risk = await make_user(Role.TRADER), await make_user(Role.RISK)
    account = await open_account(client, trader, "100000", currency)
    if clock is not None:
        runtime.clock = clock
    return Desk(runtime, trader, risk, account)


async def test_daily_loss_counts_the_losses_booked_since_the_start_of_the_utc_day(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    books = await desk(client, make_user, runtime, clock=SimClock(MONDAY_AFTERNOON))
    await books.set_limits(limits(daily_loss_limit="500"))
    bought = await books.submit("buy-20", "buy", "20", "100.00")
    await books.fill(bought, "20", "100", MIDNIGHT - timedelta(hours=1))
    # Sell 10 of them at 50 a microsecond before midnight: a 500 loss, but yesterday's.
    sold = await books.submit("sell-yesterday", "sell", "10", "50.00")
    await books.fill(sold, "10", "50", MIDNIGHT - timedelta(microseconds=1))
    await books.submit("buy-after-yesterdays-loss", "buy", "1", "50.00")
    # The same loss again at midnight exactly: it is today's, and it reaches the limit.
    sold_again = await books.submit("sell-today", "sell", "10", "50.00")
    await books.fill(sold_again, "10", "50", MIDNIGHT)
    refused = await books.denial("buy-after-todays-loss", "buy", "1", "50.00")
    assert "daily_loss: realized loss today 500.00 USD has reached the daily loss limit 500.00 USD" in refused


async def test_gross_exposure_values_positions_at_their_marks_in_the_base_currency(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    books = await desk(client, make_user, runtime, "EUR")
    await publish_quote("EURUSD", "1.25000", "1.25000")  # 1 EUR = 1.25 USD
    eur_usd = FxRates({("EUR", "USD"): Decimal("1.25")})
    bought = await books.submit("buy-10", "buy", "10", "150.00")
    await books.fill(bought, "10", "150", datetime.now(UTC), eur_usd)
    await publish_quote("AAPL", "200.00", "200.02", last="200.00")
    # 10 AAPL bought for 1,500 USD are now worth 10 x 200 = 2,000 USD = 1,600 EUR; one more adds 160 EUR.
    await books.set_limits(limits(max_gross_exposure="1760"))
    refused = await books.denial("two-more", "buy", "2", "200.00")
    assert "max_gross_exposure: gross exposure would rise from 1,600.00 EUR to 1,920.00 EUR" in refused
    await books.submit("one-more", "buy", "1", "200.00")  # exactly at the limit


async def test_open_buys_count_against_the_position_limit_and_reserve_buying_power(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime, publish_quote: PublishQuote
) -> None:
    books = await desk(client, make_user, runtime)
    await publish_quote("AAPL", "100.00", "100.02", last="100.00")
    bought = await books.submit("buy-10", "buy", "10", "100.00")
    await books.fill(bought, "10", "100", datetime.now(UTC))
    await books.set_limits(limits(max_position_quantity="15"))
    resting = await books.submit("open-4", "buy", "4", "99.00")  # 10 held + 4 open
    refused = await books.denial("two-more", "buy", "2", "99.00")
    assert "max_position: resulting AAPL position 16 exceeds the limit of 15 per instrument" in refused
    await books.submit("one-more", "buy", "1", "99.00")  # 15: exactly at the limit
    await books.service.cancel(principal_of(books.trader), resting, Caller())
    await books.submit("after-cancel", "buy", "4", "99.00")  # 10 held + 1 + 4 open

    # Cash is 100,000 - 1,000 = 99,000 USD; the open buys of 1 and 4 at 99 reserve 99 + 1 and 396 + 1 (fee
    # 0.5 bps, at least 1 USD each), leaving 98,503. A buy of 985 at 100 needs 98,500 + 4.925 in fees.
    await books.set_limits(limits())
    refused = await books.denial("too-much", "buy", "985", "100.00")
    assert (
        "buying_power: order needs 98,504.92 USD (notional plus estimated fee) but only 98,503.00 USD is available "
        "(cash 99,000.00 USD less 497.00 USD reserved by open orders)"
    ) in refused
    await books.submit("fits", "buy", "984", "100.00")  # 98,400 + 4.92


async def test_a_replace_the_checks_refuse_is_audited_as_denied_and_leaves_the_order(
    client: httpx.AsyncClient, make_user: MakeUser, runtime: Runtime
) -> None:
    books = await desk(client, make_user, runtime)
    await books.set_limits(limits(max_order_notional="1000"))
    order_id = await books.submit("small", "buy", "5", "100.00")
    with pytest.raises(OrderDeniedError, match="replace denied: max_order_notional"):
        await books.service.replace(principal_of(books.trader), order_id, OrderReplace(quantity=Decimal(11)), Caller())
    order = await books.service.get(principal_of(books.trader), order_id)
    assert (order.status, order.quantity) == ("accepted", Decimal(5))
    assert await AuditService(runtime.database, runtime.clock).settle()  # chained off the request path
    async with runtime.database.read_session() as session:
        entries = (
            await session.execute(
                select(AuditEntry.action, AuditEntry.outcome, AuditEntry.detail)
                .where(AuditEntry.target == f"order:{order_id}")
                .order_by(AuditEntry.id)
            )
        ).all()
    assert [(action, outcome) for action, outcome, _ in entries] == [("order.submit", "success"), ("order.replace", "denied")]
    assert orjson.loads(entries[1][2]) == {
        "changes": {"quantity": "11"},
        "reason": "max_order_notional: order notional 1,100.00 USD exceeds the limit 1,000.00 USD",
    }
