"""An account's books as one frozen value: what it holds, per ledger account, at one moment.

`AccountBooks` is what the `books` module answers for an account (from its running balances) and
what the risk checks, the valuation and the backtester read. It is a plain value: building it
costs no I/O and comparing two of them compares the books.

Signs follow the journal: cash and positions are debits (positive when held), realized P&L and
fees are kept as the ledger keeps them; `realized_today` turns gains positive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

from tradestack.domain.frozen import fast_init
from tradestack.domain.ledger import Account, AccountKind
from tradestack.domain.portfolio import PositionState

_ZERO = Decimal(0)


class FxPolicy(StrEnum):
    """What a purchase in another currency does to the account's cash."""

    AUTO_CONVERT = "auto_convert"  # buy what the fill needs with the base currency at fill time
    MULTI_CURRENCY = "multi_currency"  # balances in other currencies may go negative, valued in the base


@dataclass(frozen=True, slots=True)
class AccountProfile:
    """A trading account's identity and terms (not its balances)."""

    id: str
    owner_id: str
    name: str
    base_currency: str
    kind: str
    allow_short: bool
    fx_policy: FxPolicy
    created_at: datetime


@fast_init
@dataclass(frozen=True, slots=True)
class Holding:
    """An open position at cost, and the currency its cost and prices are in."""

    position: PositionState
    currency: str

    @property
    def quantity(self) -> Decimal:
        """Signed units held (short below zero)."""
        return self.position.quantity


@fast_init
@dataclass(frozen=True, slots=True)
class AccountBooks:
    """Balances of one trading account by ledger account kind and code, and its open positions."""

    account_id: str
    base_currency: str
    allow_short: bool = False
    fx_policy: FxPolicy = FxPolicy.AUTO_CONVERT
    balances: Mapping[AccountKind, Mapping[str, Decimal]] = field(default_factory=dict)
    holdings: Mapping[str, Holding] = field(default_factory=dict)
    realized_today: Mapping[str, Decimal] = field(default_factory=dict)
    """Realized P&L per currency booked since the start of the day, gains positive."""

    @property
    def cash(self) -> Mapping[str, Decimal]:
        """Cash per currency (a currency never held is absent)."""
        return self.balances.get(_ACCOUNT_KIND_CASH, _NO_CASH)

    def cash_in(self, currency: str) -> Decimal:
        """Cash held in `currency` (zero when none)."""
        return self.cash.get(currency, _ZERO)

    def position(self, symbol: str) -> PositionState:
        """The position in `symbol` at cost (flat when none)."""
        holding = self.holdings.get(symbol)
        return holding.position if holding is not None else PositionState(symbol)


@dataclass(frozen=True, slots=True)
class BalanceLine:
    """One running balance as stored: a ledger account's name, currency, amount and (positions) quantity."""

    ledger_account: str
    currency: str
    amount: Decimal
    quantity: Decimal | None = None


def books_of(
    account_id: str,
    base_currency: str,
    lines: Iterable[BalanceLine],
    *,
    allow_short: bool = False,
    fx_policy: FxPolicy | str = FxPolicy.AUTO_CONVERT,
    realized_today: Mapping[str, Decimal] | None = None,
) -> AccountBooks:
    """The books from an account's running balances; a position with no units left is not a holding."""
    by_kind: dict[AccountKind, dict[str, Decimal]] = {}
    holdings: dict[str, Holding] = {}
    for line in lines:
        account = Account.parse(line.ledger_account)
        if account.kind is AccountKind.POSITION:
            if line.quantity:
                holdings[account.code] = Holding(PositionState(account.code, line.quantity, line.amount), line.currency)
            continue
        by_kind.setdefault(account.kind, {})[account.code] = line.amount
    return AccountBooks(
        account_id=account_id,
        base_currency=base_currency,
        allow_short=allow_short,
        fx_policy=FxPolicy(fx_policy),
        balances={kind: dict(sorted(codes.items())) for kind, codes in by_kind.items()},
        holdings=dict(sorted(holdings.items())),
        realized_today=dict(realized_today or {}),
    )


_NO_CASH: Mapping[str, Decimal] = MappingProxyType({})
"""`AccountBooks.cash` of books without cash: one shared read-only empty mapping."""
# An enum member as a module constant: a member looked up on its class goes through EnumType's attribute
# hook on every use (about 80 ns in 3.11), a module global does not; `cash` is read for every risk state.
_ACCOUNT_KIND_CASH = AccountKind.CASH
