"""Shapes of accounts and their books on the wire. Decimals travel as strings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from tradestack.core.money import canonical, decimal_places, plain
from tradestack.kit.currencies import currency_problem, minor_units
from tradestack.kit.fields import AverageText, DecimalText, RequestBody, WireDecimal


def _known_currency(code: str) -> str:
    problem = currency_problem(code)
    if problem is not None:
        raise ValueError(problem)
    return code.upper()


CurrencyCode = Annotated[str, Field(pattern=r"^[A-Za-z]{3}$"), AfterValidator(_known_currency)]
"""A known currency (ISO 4217, or a traded crypto asset), upper-cased."""


class Deposit(RequestBody):
    """Cash put into a new paper account, in whole minor units of its currency (cents for AUD)."""

    currency: CurrencyCode = Field(description="ISO 4217 code, e.g. AUD.")
    amount: WireDecimal = Field(
        gt=0, le=Decimal("1e12"), description="Decimal string (ASCII digits), at most the currency's minor units."
    )

    @model_validator(mode="after")
    def _in_minor_units(self) -> Deposit:
        places = minor_units(self.currency) or 0
        if decimal_places(canonical(self.amount)) > places:
            raise ValueError(
                f"amount {plain(self.amount)} has more than {places} decimal places, the minor unit of {self.currency}"
            )
        return self


class AccountCreate(RequestBody):
    """A new paper account and its initial deposit."""

    name: str = Field(min_length=1, max_length=100)
    base_currency: CurrencyCode = Field(description="Currency the account is valued in (ISO 4217).")
    deposit: Deposit
    allow_short: bool = Field(default=False, description="Whether sells may leave a short position.")
    fx_policy: Literal["auto_convert", "multi_currency"] = Field(
        default="auto_convert",
        description="auto_convert: buying in another currency converts the base currency needed at fill time (its own "
        "journal entry); multi_currency: other currencies may go negative, valued in the base currency.",
    )


class AccountWithCash(BaseModel):
    """A trading account and its cash per currency."""

    id: str
    name: str
    base_currency: str
    kind: str
    allow_short: bool
    fx_policy: str
    created_at: datetime
    cash: dict[str, DecimalText] = Field(description="Cash balance per currency (decimal strings, never exponents).")


# -- books: positions, portfolio, fills and the journal -------------------------------------------


MarkSource = Literal["last", "mid", "cost"]


class PositionOut(BaseModel):
    """One open position: at cost from the ledger, and marked to market from the live quote.

    Money fields are decimal strings in `quote_currency`, except the `_base` ones, which are in the
    account's base currency and null when the quote currency cannot be converted into it (see
    `problems` of the response).
    """

    symbol: str
    quantity: DecimalText = Field(description="Units held, signed: negative is a short.")
    average_cost: AverageText = Field(description="cost_basis / quantity, rounded half-even to 8 decimal places.")
    cost_basis: DecimalText = Field(
        description="Cost of the open units, signed like quantity, rounded half-even to the quote currency's minor unit "
        "(the books keep it exactly)."
    )
    quote_currency: str = Field(description="Currency of the prices and of every non-_base money field.")
    mark_price: DecimalText = Field(description="Price the position is valued at (see mark_source).")
    mark_source: MarkSource = Field(
        description='"last": the live quote\'s last trade; "mid": the live quote\'s bid/ask midpoint (no last trade); '
        '"cost": no live quote, so the position is valued at its average cost (market value = cost basis, '
        "unrealized P&L 0) and a problem says so."
    )
    mark_ts: datetime | None = Field(description="When the quote used as mark was published (UTC); null for cost.")
    market_value: DecimalText = Field(
        description="quantity x mark_price, signed (negative for a short), rounded half-even to the quote currency's minor unit."
    )
    unrealized_pnl: DecimalText = Field(
        description="Exact market value less exact cost, before fees, rounded half-even to the quote currency's minor unit."
    )
    market_value_base: DecimalText | None = Field(
        description="market_value in the base currency, rounded half-even to its minor unit; null without an FX rate."
    )
    unrealized_pnl_base: DecimalText | None = Field(
        description="unrealized_pnl in the base currency, rounded half-even to its minor unit; null without an FX rate."
    )


class PositionList(BaseModel):
    """An account's open positions, by symbol."""

    account_id: str
    base_currency: str
    positions: list[PositionOut]
    problems: list[str] = Field(
        description="What makes a figure approximate or missing: positions without a live quote (valued at cost) "
        "and currencies with no FX rate into the base currency. Empty when everything is marked to market."
    )


class Portfolio(BaseModel):
    """An account's cash, positions, realized P&L, fees and equity, valued now.

    Money on the wire is in minor units: cash and fees are booked in them (ISO 4217 exponent, 8 for
    crypto); valuations and realized P&L are rounded half-even to the minor unit of their currency,
    each from its exact value (so per-position figures may differ from a total by a unit); average
    prices are rounded half-even to 8 decimal places. `equity` is `cash_base + market_value_base` as shown.
    Per-currency figures are always present. Base-currency figures (`cash_base`,
    `market_value_base`, `unrealized_pnl_base`, `equity`) need an FX rate from every currency held
    into `base_currency`; rates are the bid/ask midpoints of the live quotes of the catalogue's
    currency pairs (EURUSD, AUDUSD, BTC-USD ...), directly, inverted, or through USD. When one is
    missing those figures are null and `problems` names the missing rate: the portfolio stays
    viewable rather than failing.
    """

    account_id: str
    base_currency: str
    as_of: datetime = Field(description="When the valuation was made (UTC).")
    cash: dict[str, DecimalText] = Field(description="Cash balance per currency.")
    positions: list[PositionOut]
    realized_pnl: dict[str, DecimalText] = Field(
        description="Realized trading P&L per currency, before fees: positive is a gain, negative a loss; rounded "
        "half-even to the currency's minor unit."
    )
    fees: dict[str, DecimalText] = Field(description="Fees paid per currency (negative: net rebates).")
    fx_rates: dict[str, DecimalText] = Field(
        description='Rates used, "BASE/QUOTE": how many QUOTE one BASE buys (e.g. "AUD/USD": "0.65").'
    )
    cash_base: DecimalText | None = Field(description="All cash in the base currency; null without FX rates.")
    market_value_base: DecimalText | None = Field(description="Positions' market value in the base currency.")
    unrealized_pnl_base: DecimalText | None = Field(description="Positions' unrealized P&L in the base currency.")
    equity: DecimalText | None = Field(description="cash_base + market_value_base; null without FX rates.")
    fx_policy: Literal["auto_convert", "multi_currency"] = Field(
        description="auto_convert: a purchase in another currency spends that currency's cash, then converts the base "
        "currency it still needs at fill time (its own journal entry), so no cash goes negative; multi_currency: cash "
        "in every currency is pooled, valued in the base currency, and one currency may go negative."
    )
    buying_power: dict[str, DecimalText] = Field(
        description="Per currency (the base and every currency held): what a new purchase in it may spend now, in "
        "that currency, rounded down to its minor unit, after what open buys reserve and the FX fee of converting "
        "(auto_convert: that currency's cash plus the base currency's; multi_currency: all cash). A currency "
        "without an FX rate is left out."
    )
    problems: list[str] = Field(description="Why a figure is approximate (valued at cost) or null (missing FX rate).")


class FillOut(BaseModel):
    """One execution of one of the account's orders."""

    id: str
    order_id: str
    symbol: str
    side: str = Field(description="buy or sell.")
    quantity: DecimalText = Field(description="Units filled (positive).")
    price: DecimalText = Field(description="In the instrument's quote currency.")
    fee: DecimalText = Field(description="In fee_currency; negative for a rebate.")
    fee_currency: str
    liquidity: str = Field(description="maker or taker.")
    ts: datetime = Field(description="When the fill happened (UTC).")


class FillPage(BaseModel):
    """Fills, newest first; pass `next` as `before` for the following page (null: this is the last)."""

    items: list[FillOut]
    next: str | None


class PostingOut(BaseModel):
    """One leg of a journal entry."""

    account: str = Field(description='Ledger account, e.g. "cash:USD", "position:AAPL", "realized_pnl:USD".')
    currency: str
    amount: DecimalText = Field(description="Debit positive, credit negative.")
    quantity: DecimalText | None = Field(description="Units added (positive) or removed; position accounts only.")


class JournalEntryOut(BaseModel):
    """One balanced journal entry: per currency its postings sum to zero."""

    id: str
    ts: datetime = Field(description="When it was booked (UTC).")
    kind: str = Field(description="deposit, fill, fee, reversal or fx.")
    reference: str | None = Field(description="What caused it, e.g. a fill id.")
    reverses: str | None = Field(description="For a reversal: the entry it undoes.")
    postings: list[PostingOut]


class LedgerPage(BaseModel):
    """Journal entries, newest first; pass `next` as `before` for the following page (null: this is the last)."""

    items: list[JournalEntryOut]
    next: str | None


class EquityPointOut(BaseModel):
    """An account's equity at one recorded moment."""

    ts: datetime = Field(description="When the books were valued (UTC).")
    equity: DecimalText = Field(description="Equity in the base currency, valued as GET /api/portfolio values it.")


class EquitySeries(BaseModel):
    """An account's recorded equity over a time range, oldest first.

    Points exist only from when recording started (`recorded_since`): nothing is reconstructed for
    earlier times. Every `interval_seconds` the recorder values each account as GET /api/portfolio
    does (cash and positions at their marks, converted at the live FX rates, rounded to the base
    currency's minor unit) and stores the figure; an account whose holdings cannot all be converted
    gets no point then. Longer ranges are downsampled to at most `max_points`: the range is cut into
    that many equal spans and each span keeps its last point, so the last point is always the newest.
    """

    account_id: str
    base_currency: str
    start: datetime = Field(description="Start of the range (UTC, inclusive).")
    end: datetime = Field(description="End of the range (UTC, inclusive).")
    recorded_since: datetime | None = Field(description="The account's first recorded point (null: none yet).")
    interval_seconds: float = Field(description="How often points are recorded.")
    max_points: int = Field(description="Most points one answer holds.")
    downsampled: bool = Field(description="Whether the range held more points than max_points (then thinned).")
    points: list[EquityPointOut]
