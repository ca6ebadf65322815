"""Double-entry, multi-currency journal: accounts, postings, entries and the builders that book them.

Sign convention: a posting's `amount` is positive for a debit and negative for a credit. Every
entry sums to zero in each currency it touches, so the whole journal does too. Normal balances:

- ``cash:{CCY}``: cash held in CCY; debit (positive).
- ``position:{SYMBOL}``: an open position at cost, in the instrument's quote currency; debit
  (positive) for a long, credit (negative) for a short.
- ``fees:{CCY}``: fees paid, an expense; debit (positive). A rebate is a credit.
- ``realized_pnl:{CCY}``: realized trading P&L; a gain is a credit (negative), a loss a debit.
- ``deposits:{CCY}``: equity contributed; credit (negative).
- ``fx:{CCY}``: trading account for currency conversions; either sign.
- ``rounding:{CCY}``: what booking a fill's cash in the currency's minor unit left over (the exact
  quantity x price less the cash moved); either sign, and less than half a minor unit per fill.

So in each currency, cash + positions at cost + fees + realized P&L + deposits + fx + rounding = 0.

Position postings also carry the signed `quantity` of units they add or remove, so the position
quantity is the fold of those quantities. Entries are immutable; a correction is a `reversal`,
never an edit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from enum import StrEnum
from functools import lru_cache

from tradestack.core.errors import ValidationFailedError
from tradestack.core.money import D, place_step, plain
from tradestack.domain.frozen import builder, fast_init
from tradestack.domain.marketdata import Side
from tradestack.domain.portfolio import (
    _KNOWN_CURRENCIES,
    FillEffect,
    PositionState,
    _is_currency,
    _is_utc,
    _require_currency,
    _require_symbol,
    _require_utc,
)

_ZERO = Decimal(0)
# Sums and products of finite Decimals are exact at MAX_PREC; nothing here divides.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_TO_MINOR_UNIT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])
"""Rounds cash to a minor unit half-even, whatever the caller's decimal context."""
# `-x` rounds to the caller's context (28 digits by default): a credit must mirror its debit to the last digit.
_negative = _EXACT.minus


class InvalidEntry(ValidationFailedError, ValueError):  # noqa: N818 - the entry is what is invalid
    """A journal entry or posting that the ledger refuses to hold."""


class UnbalancedEntry(InvalidEntry):
    """An entry whose postings do not sum to zero in every currency.

    `imbalances` maps each offending currency to the sum of its postings.
    """

    def __init__(self, entry_id: str, imbalances: Mapping[str, Decimal]) -> None:
        listed = ", ".join(f"{currency} postings sum to {plain(total)}" for currency, total in sorted(imbalances.items()))
        super().__init__(
            f"entry {entry_id!r} does not balance: {listed}; debits must equal credits in each currency",
            entry_id=entry_id,
        )
        self.entry_id = entry_id
        self.imbalances = dict(imbalances)


# -- accounts -----------------------------------------------------------------------------------


class AccountKind(StrEnum):
    """What an account holds; the prefix of its name."""

    CASH = "cash"
    POSITION = "position"
    FEES = "fees"
    REALIZED_PNL = "realized_pnl"
    DEPOSITS = "deposits"
    FX = "fx"
    ROUNDING = "rounding"


@dataclass(frozen=True, slots=True, order=True)
class Account:
    """A ledger account, written ``kind:code``: the code is a currency, or a symbol for positions."""

    kind: AccountKind
    code: str

    def __post_init__(self) -> None:
        try:
            kind = self.kind if type(self.kind) is AccountKind else AccountKind(self.kind)
        except ValueError:
            valid = ", ".join(k.value for k in AccountKind)
            raise InvalidEntry(f"unknown account kind {self.kind!r}; use one of {valid}") from None
        object.__setattr__(self, "kind", kind)
        try:
            if kind is _ACCOUNT_KIND_POSITION:
                _require_symbol("position account symbol", self.code)
            else:
                _require_currency(f"{kind.value} account currency", self.code)
        except ValueError as exc:
            raise InvalidEntry(str(exc)) from None

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.code}"

    @classmethod
    def parse(cls, name: str) -> Account:
        """The account named ``kind:code``, such as ``cash:USD`` or ``position:AAPL``."""
        kind, separator, code = name.partition(":")
        if not separator:
            raise InvalidEntry(f"account name must be 'kind:code' such as 'cash:USD', got {name!r}")
        try:
            account_kind = AccountKind(kind)
        except ValueError:
            valid = ", ".join(k.value for k in AccountKind)
            raise InvalidEntry(f"unknown account kind {kind!r} in {name!r}; use one of {valid}") from None
        return cls(account_kind, code)

    @property
    def currency(self) -> str | None:
        """The currency this account is kept in; None for a position (kept in its quote currency)."""
        return None if self.kind is _ACCOUNT_KIND_POSITION else self.code

    @classmethod
    def _of(cls, kind: AccountKind, code: str) -> Account:
        """``kind:code``, shared: accounts are immutable, so one instance serves every posting to it."""
        if cls is not Account or type(code) is not str:  # a subclass, or not a cache key: build it
            return cls(kind, code)
        return _shared_account(kind, code)

    @classmethod
    def cash(cls, currency: str) -> Account:
        """``cash:{currency}``."""
        return cls._of(_ACCOUNT_KIND_CASH, currency)

    @classmethod
    def position(cls, symbol: str) -> Account:
        """``position:{symbol}``."""
        return cls._of(_ACCOUNT_KIND_POSITION, symbol)

    @classmethod
    def fees(cls, currency: str) -> Account:
        """``fees:{currency}``."""
        return cls._of(_ACCOUNT_KIND_FEES, currency)

    @classmethod
    def realized_pnl(cls, currency: str) -> Account:
        """``realized_pnl:{currency}``."""
        return cls._of(_ACCOUNT_KIND_REALIZED_PNL, currency)

    @classmethod
    def deposits(cls, currency: str) -> Account:
        """``deposits:{currency}``."""
        return cls._of(_ACCOUNT_KIND_DEPOSITS, currency)

    @classmethod
    def fx(cls, currency: str) -> Account:
        """``fx:{currency}``."""
        return cls._of(_ACCOUNT_KIND_FX, currency)

    @classmethod
    def rounding(cls, currency: str) -> Account:
        """``rounding:{currency}``."""
        return cls._of(_ACCOUNT_KIND_ROUNDING, currency)


@lru_cache(maxsize=1024)
def _shared_account(kind: AccountKind, code: str) -> Account:
    return Account(kind, code)


# -- postings and entries -----------------------------------------------------------------------


def _is_finite_decimal(value: object) -> bool:
    """Whether `_entry_decimal` would return `value` itself (the check without building its message)."""
    return isinstance(value, Decimal) and value.is_finite()


def _entry_decimal(what: str, value: object) -> Decimal:
    if not isinstance(value, Decimal | int) or isinstance(value, bool):
        raise TypeError(f"{what} must be a Decimal, got {type(value).__name__} {value!r}")
    try:
        return D(value)
    except ValueError:
        raise InvalidEntry(f"{what} must be a finite Decimal, got {value!r}") from None


@fast_init
@dataclass(frozen=True, slots=True)
class Posting:
    """One line of an entry: `amount` of `currency` to `account`, debit positive, credit negative.

    Position postings carry the signed `quantity` of units they add (positive) or remove
    (negative); other postings have none. Non-position accounts only take their own currency.
    """

    account: Account
    currency: str
    amount: Decimal
    quantity: Decimal | None = None

    def __post_init__(self) -> None:
        account, amount, quantity = self.account, self.amount, self.quantity
        if (  # the common case, sound: a shared Account, a known currency, finite Decimals where they belong
            type(account) is Account and type(amount) is Decimal and amount.is_finite()
            and type(self.currency) is str and self.currency in _KNOWN_CURRENCIES
        ):  # fmt: skip
            if account.kind is _ACCOUNT_KIND_POSITION:
                if type(quantity) is Decimal and quantity.is_finite():
                    return
            elif quantity is None and self.currency == account.code:
                return
        if not isinstance(account, Account):
            raise TypeError(f"posting account must be an Account (see Account.parse), got {account!r}")
        if not _is_currency(self.currency):
            try:
                _require_currency(f"posting to {account}: currency", self.currency)
            except ValueError as exc:
                raise InvalidEntry(str(exc)) from None
        if account.currency is not None and self.currency != account.currency:
            raise InvalidEntry(f"posting to {account} must be in {account.currency}, got {self.currency}")
        if not _is_finite_decimal(self.amount):
            object.__setattr__(self, "amount", _entry_decimal(f"posting to {account}: amount", self.amount))
        if account.kind is _ACCOUNT_KIND_POSITION:
            if self.quantity is None:
                raise InvalidEntry(f"posting to {account} must carry the quantity of units it moves")
            if not _is_finite_decimal(self.quantity):
                object.__setattr__(self, "quantity", _entry_decimal(f"posting to {account}: quantity", self.quantity))
        elif self.quantity is not None:
            raise InvalidEntry(f"posting to {self.account} cannot carry a quantity; only position postings do")

    def negated(self) -> Posting:
        """The opposite posting: debit for credit, units removed for units added."""
        quantity = None if self.quantity is None else _negative(self.quantity)
        return Posting(self.account, self.currency, _negative(self.amount), quantity)


_posting_of_known = builder(Posting, checked=False)
"""`Posting` without its check, for `fill_entry_with_cash`: its postings are sound by construction."""


class EntryKind(StrEnum):
    """Why an entry was booked."""

    DEPOSIT = "deposit"
    FILL = "fill"
    FEE = "fee"
    REVERSAL = "reversal"
    FX = "fx"


def _imbalances(postings: Iterable[Posting]) -> dict[str, Decimal]:
    add = _EXACT.add
    if type(postings) is tuple and postings:  # the common case: one currency, summed without a dict
        currency = postings[0].currency
        total = _ZERO
        for posting in postings:
            if posting.currency != currency:
                break
            total = add(total, posting.amount)
        else:
            return {currency: total} if total != 0 else {}
    totals: dict[str, Decimal] = {}
    for posting in postings:
        currency = posting.currency
        totals[currency] = add(totals.get(currency, _ZERO), posting.amount)
    return {currency: total for currency, total in totals.items() if total != 0}


@fast_init
@dataclass(frozen=True, slots=True)
class JournalEntry:
    """An immutable, balanced set of postings booked at `ts` (UTC).

    The constructor refuses an entry with no postings or whose postings do not sum to zero in
    each currency (`UnbalancedEntry`). `reference` links to what caused it (an order or fill id);
    `reverses` is the id of the entry a reversal undoes and is set on reversals only.
    """

    id: str
    ts: datetime
    kind: EntryKind
    postings: tuple[Posting, ...]
    reference: str | None = None
    reverses: str | None = None

    def __post_init__(self) -> None:
        entry_id, postings, kind = self.id, self.postings, self.kind
        if (  # the common case, sound: an id, a UTC time, a known kind, a tuple of postings that balances
            type(entry_id) is str and entry_id and not entry_id.isspace()
            and type(self.ts) is datetime and self.ts.tzinfo is UTC
            and type(kind) is EntryKind and (kind is _ENTRY_KIND_REVERSAL) == (self.reverses is not None)
            and type(postings) is tuple and postings
        ):  # fmt: skip
            first = postings[0]
            currency: str | None = first.currency if type(first) is Posting else None
            total, add = _ZERO, _EXACT.add
            for posting in postings:  # type-checked and summed in one pass while one currency is in play
                if type(posting) is not Posting:
                    break
                if posting.currency != currency:
                    currency = None
                elif currency is not None:
                    total = add(total, posting.amount)
            else:
                if currency is not None and total == 0:
                    return  # one currency, balanced: what `_imbalances` finds empty
                imbalances = _imbalances(postings)
                if imbalances:
                    raise UnbalancedEntry(entry_id, imbalances)
                return
        if not isinstance(self.id, str) or not self.id.strip():
            raise InvalidEntry(f"entry id must be a non-empty string, got {self.id!r}")
        try:
            if not _is_utc(self.ts):
                _require_utc(f"entry {self.id!r}: ts", self.ts)
            kind = self.kind if type(self.kind) is EntryKind else EntryKind(self.kind)
        except ValueError as exc:
            raise InvalidEntry(str(exc)) from None
        object.__setattr__(self, "kind", kind)
        postings = self.postings if type(self.postings) is tuple else tuple(self.postings)
        if not postings:
            raise InvalidEntry(f"entry {self.id!r} has no postings")
        for posting in postings:
            if not isinstance(posting, Posting):
                raise InvalidEntry(f"entry {self.id!r}: postings must be Posting values")
        object.__setattr__(self, "postings", postings)
        if (kind is _ENTRY_KIND_REVERSAL) != (self.reverses is not None):
            raise InvalidEntry(f"entry {self.id!r}: a reversal, and only a reversal, names the entry it reverses")
        imbalances = _imbalances(postings)
        if imbalances:
            raise UnbalancedEntry(self.id, imbalances)

    @property
    def currencies(self) -> frozenset[str]:
        """The currencies this entry posts in."""
        return frozenset(p.currency for p in self.postings)


_entry_of_balanced = builder(JournalEntry, checked=False)
"""`JournalEntry` without its check, for `fill_entry_with_cash`: its entries balance by construction (see there)."""


# -- builders -----------------------------------------------------------------------------------


def deposit(entry_id: str, ts: datetime, currency: str, amount: Decimal, reference: str | None = None) -> JournalEntry:
    """Contributed cash: debit ``cash:{currency}``, credit ``deposits:{currency}`` by `amount` (positive)."""
    amount = _entry_decimal("deposit amount", amount)
    if amount <= 0:
        raise InvalidEntry(f"deposit amount must be positive, got {plain(amount)}")
    return JournalEntry(
        entry_id,
        ts,
        _ENTRY_KIND_DEPOSIT,
        (Posting(Account.cash(currency), currency, amount), Posting(Account.deposits(currency), currency, _negative(amount))),
        reference,
    )


def _fee_postings(fee: Decimal, fee_currency: str) -> tuple[Posting, ...]:
    """Debit ``fees:{currency}``, credit ``cash:{currency}`` (none for a zero fee)."""
    if type(fee) is not Decimal or not fee.is_finite():
        fee = _entry_decimal("fee", fee)
    if fee == 0:
        return ()
    return _fee_pair(Posting, Account.fees(fee_currency), Account.cash(fee_currency), fee_currency, fee)


def _fee_pair(post: Callable[..., Posting], fees: Account, cash: Account, currency: str, fee: Decimal) -> tuple[Posting, Posting]:
    """A fee's two postings to `fees` and `cash` in `currency`, each built by `post` (`Posting`, or an unchecked builder)."""
    return post(fees, currency, fee, None), post(cash, currency, _negative(fee), None)


def fee_entry(entry_id: str, ts: datetime, currency: str, amount: Decimal, reference: str | None = None) -> JournalEntry:
    """A fee charged on its own: debit ``fees:{currency}``, credit ``cash:{currency}`` (negative is a rebate)."""
    postings = _fee_postings(amount, currency)
    if not postings:
        raise InvalidEntry("a fee entry needs a non-zero amount")
    return JournalEntry(entry_id, ts, _ENTRY_KIND_FEE, postings, reference)


def fill_entry(
    entry_id: str,
    ts: datetime,
    symbol: str,
    side: Side | str,
    quantity: Decimal,
    price: Decimal,
    quote_currency: str,
    fee: Decimal,
    fee_currency: str,
    position_before: PositionState,
    reference: str | None = None,
    *,
    cash_places: int | None = None,
) -> JournalEntry:
    """Book a fill of `quantity` units (positive) of `symbol` at `price` against `position_before`.

    In the quote currency: cash is credited by quantity x price on a buy and debited on a sell.
    ``position:{symbol}`` moves at average cost: units that close the position leave at their
    cost basis, with the difference to the fill price credited to ``realized_pnl`` (a gain) or
    debited (a loss); units that open or add to it enter at `price`. A fill through zero posts the
    close and the open as two position postings. A non-zero `fee` debits ``fees:{fee_currency}``
    and credits ``cash:{fee_currency}``.

    With `cash_places` (the quote currency's minor unit) the cash moves quantity x price rounded
    half-even to that many places, and the difference to the exact amount is posted to
    ``rounding:{quote_currency}``: cash is always whole minor units, the position keeps its exact
    cost, and the entry still sums to zero.
    """
    return fill_entry_with_cash(
        entry_id,
        ts,
        symbol,
        side,
        quantity,
        price,
        quote_currency,
        fee,
        fee_currency,
        position_before,
        reference,
        cash_places=cash_places,
    )[0]


def fill_entry_with_effect(
    entry_id: str,
    ts: datetime,
    symbol: str,
    side: Side | str,
    quantity: Decimal,
    price: Decimal,
    quote_currency: str,
    fee: Decimal,
    fee_currency: str,
    position_before: PositionState,
    reference: str | None = None,
    *,
    cash_places: int | None = None,
) -> tuple[JournalEntry, FillEffect]:
    """`fill_entry`, and the `FillEffect` it booked: `effect.position` is the position after the fill.

    Saves a caller that keeps the position a second `PositionState.apply_fill` of the same fill.
    """
    entry, effect, _ = fill_entry_with_cash(
        entry_id,
        ts,
        symbol,
        side,
        quantity,
        price,
        quote_currency,
        fee,
        fee_currency,
        position_before,
        reference,
        cash_places=cash_places,
    )
    return entry, effect


def fill_entry_with_cash(
    entry_id: str,
    ts: datetime,
    symbol: str,
    side: Side | str,
    quantity: Decimal,
    price: Decimal,
    quote_currency: str,
    fee: Decimal,
    fee_currency: str,
    position_before: PositionState,
    reference: str | None = None,
    *,
    cash_places: int | None = None,
) -> tuple[JournalEntry, FillEffect, Decimal]:
    """`fill_entry_with_effect`, and the cash the fill's units moved: its ``cash:{quote_currency}`` posting (negative on
    a buy; in whole minor units with `cash_places`), the fee's cash posting apart. Saves a caller reading the postings.

    Balanced by construction, so the entry is built without `JournalEntry`'s check (and its postings without
    `Posting`'s) once the inputs it cannot vouch for pass a cheap test: a `PositionState` (not a subclass: its own
    `fill_effect`), shared accounts of codes checked before, an id and a UTC time as the check wants them. In the
    quote currency the postings are closed_cost + opened_cost (position) + cash + left_over (rounding) - realized, with
    cash + left_over = -(closed_quantity + opened_quantity) x price exactly, opened_cost = opened_quantity x price and
    realized = closed_cost - closed_quantity x price (`fill_effect`): the sum is zero, every operation exact (the exact
    context traps what it would round). The fee's two postings cancel in the fee currency. Any other input goes through
    the checking constructors, with their messages.
    """
    if position_before.symbol != symbol:
        raise InvalidEntry(f"fill for {symbol} booked against the position in {position_before.symbol}")
    effect = position_before.fill_effect(side, quantity, price)  # refuses a side, quantity or price it cannot use
    if (
        type(position_before) is PositionState and type(symbol) is str
        and type(quote_currency) is str and quote_currency in _KNOWN_CURRENCIES
        and type(fee_currency) is str and fee_currency in _KNOWN_CURRENCIES
        and type(entry_id) is str and entry_id and not entry_id.isspace() and type(ts) is datetime and ts.tzinfo is UTC
    ):  # fmt: skip
        position, cash, rounding, realized_pnl, fees, fee_cash = _fill_accounts(symbol, quote_currency, fee_currency)
        if type(fee) is not Decimal or not fee.is_finite():
            fee = _entry_decimal("fee", fee)
        fee_postings: tuple[Posting, ...] = _fee_pair(_posting_of_known, fees, fee_cash, fee_currency, fee) if fee else ()
        post: Callable[..., Posting] = _posting_of_known
        entry_of: Callable[..., JournalEntry] = _entry_of_balanced
    else:  # the checking constructors, their errors in the order the postings are built
        position = Account.position(symbol)
        try:
            _require_currency(f"posting to {position}: currency", quote_currency)
        except ValueError as exc:
            raise InvalidEntry(str(exc)) from None
        cash, rounding = Account.cash(quote_currency), Account.rounding(quote_currency)
        realized_pnl = Account.realized_pnl(quote_currency)
        fee_postings = _fee_postings(fee, fee_currency)
        post, entry_of = Posting, JournalEntry
    closed_quantity, opened_quantity, opened_cost = effect.closed_quantity, effect.opened_quantity, effect.opened_cost
    # the exact context's own operations: `localcontext` costs more than these sums
    postings: tuple[Posting, ...]
    if closed_quantity:
        closed = post(position, quote_currency, effect.closed_cost, closed_quantity)
        postings = (closed, post(position, quote_currency, opened_cost, opened_quantity)) if opened_quantity else (closed,)
        price = price if type(price) is Decimal else D(price)  # `fill_effect` took it: finite, or an int it converts
        cash_amount = _EXACT.multiply(_negative(_EXACT.add(closed_quantity, opened_quantity)), price)
    else:  # only opens: the cash is the opened cost (quantity x price) negated, the same Decimal as worked out above
        postings = (post(position, quote_currency, opened_cost, opened_quantity),)
        cash_amount = _negative(opened_cost)
    if cash_places is not None:
        rounded = _TO_MINOR_UNIT.quantize(cash_amount, place_step(cash_places))
        left_over = _EXACT.subtract(cash_amount, rounded)
        if left_over:
            postings += (post(rounding, quote_currency, left_over, None),)
        cash_amount = rounded
    postings += (post(cash, quote_currency, cash_amount, None),)
    realized = effect.realized
    if realized:
        postings += (post(realized_pnl, quote_currency, _negative(realized), None),)
    return entry_of(entry_id, ts, _ENTRY_KIND_FILL, postings + fee_postings, reference, None), effect, cash_amount


@lru_cache(maxsize=1024)
def _fill_accounts(symbol: str, quote_currency: str, fee_currency: str) -> tuple[Account, ...]:
    """The shared accounts a fill may post to: ``position:{symbol}``; cash, rounding and realized P&L in the quote
    currency; fees and cash in the fee currency. `InvalidEntry` for a symbol that is no code."""
    return (
        _shared_account(_ACCOUNT_KIND_POSITION, symbol),
        _shared_account(_ACCOUNT_KIND_CASH, quote_currency),
        _shared_account(_ACCOUNT_KIND_ROUNDING, quote_currency),
        _shared_account(_ACCOUNT_KIND_REALIZED_PNL, quote_currency),
        _shared_account(_ACCOUNT_KIND_FEES, fee_currency),
        _shared_account(_ACCOUNT_KIND_CASH, fee_currency),
    )


def currency_fill_entry(
    entry_id: str,
    ts: datetime,
    side: Side | str,
    quantity: Decimal,
    price: Decimal,
    pair: tuple[str, str],
    fee: Decimal,
    fee_currency: str,
    reference: str | None = None,
    *,
    cash_places: int | None = None,
) -> JournalEntry:
    """Book a fill of a currency pair (`pair` = (base, quote), e.g. EUR and USD for EURUSD) as the conversion it is.

    A buy of `quantity` units exchanges quantity x `price` of the quote currency (rounded half-even to
    `cash_places`, the quote currency's minor unit) for `quantity` of the base currency; a sell the
    other way round. No position is opened: cash moves between the two currencies through the ``fx``
    accounts, as `fx_conversion` books it, and the fee is booked as in `fill_entry`.
    """
    base, quote = pair
    with localcontext(_EXACT):
        amount = D(quantity) * D(price)
    if cash_places is not None:
        amount = _TO_MINOR_UNIT.quantize(amount, place_step(cash_places))
    sold, bought = ((quote, amount), (base, quantity)) if Side(side) is _SIDE_BUY else ((base, quantity), (quote, amount))
    conversion = fx_conversion(entry_id, ts, *sold, *bought, reference=reference)
    return JournalEntry(entry_id, ts, _ENTRY_KIND_FILL, conversion.postings + _fee_postings(fee, fee_currency), reference)


def fx_conversion(
    entry_id: str,
    ts: datetime,
    sold_currency: str,
    sold_amount: Decimal,
    bought_currency: str,
    bought_amount: Decimal,
    reference: str | None = None,
) -> JournalEntry:
    """Exchange `sold_amount` of one currency for `bought_amount` of another, through the ``fx`` accounts.

    Credits ``cash:{sold}`` and debits ``fx:{sold}``; credits ``fx:{bought}`` and debits
    ``cash:{bought}``. Each currency balances on its own; the fx accounts keep the exchange.
    """
    sold = _entry_decimal("sold amount", sold_amount)
    bought = _entry_decimal("bought amount", bought_amount)
    if sold <= 0 or bought <= 0:
        raise InvalidEntry(f"an FX conversion needs positive amounts, got {plain(sold)} and {plain(bought)}")
    if sold_currency == bought_currency:
        raise InvalidEntry(f"an FX conversion needs two currencies, got {sold_currency} twice")
    postings = (
        Posting(Account.cash(sold_currency), sold_currency, _negative(sold)),
        Posting(Account.fx(sold_currency), sold_currency, sold),
        Posting(Account.fx(bought_currency), bought_currency, _negative(bought)),
        Posting(Account.cash(bought_currency), bought_currency, bought),
    )
    return JournalEntry(entry_id, ts, _ENTRY_KIND_FX, postings, reference)


def reversal(entry_id: str, ts: datetime, original: JournalEntry, reference: str | None = None) -> JournalEntry:
    """An entry that undoes `original`: every posting negated, `reverses` set to its id."""
    if ts < original.ts:
        raise InvalidEntry(f"reversal {entry_id!r} at {ts.isoformat()} predates entry {original.id!r} it reverses")
    return JournalEntry(entry_id, ts, _ENTRY_KIND_REVERSAL, tuple(p.negated() for p in original.postings), reference, original.id)


# -- folds --------------------------------------------------------------------------------------


def balances(entries: Iterable[JournalEntry]) -> dict[tuple[Account, str], Decimal]:
    """Balance of every (account, currency) the entries touch, debit positive."""
    totals: dict[tuple[Account, str], Decimal] = defaultdict(lambda: _ZERO)
    with localcontext(_EXACT):
        for entry in entries:
            for posting in entry.postings:
                totals[(posting.account, posting.currency)] += posting.amount
    return dict(totals)


def cash_balances(entries: Iterable[JournalEntry]) -> dict[str, Decimal]:
    """Cash held per currency: the balance of each ``cash:{CCY}`` account."""
    return {account.code: amount for (account, _), amount in balances(entries).items() if account.kind is _ACCOUNT_KIND_CASH}


def position_quantities(entries: Iterable[JournalEntry]) -> dict[str, Decimal]:
    """Units held per symbol: the sum of the quantities posted to each ``position:{SYMBOL}``."""
    totals: dict[str, Decimal] = defaultdict(lambda: _ZERO)
    with localcontext(_EXACT):
        for entry in entries:
            for posting in entry.postings:
                if posting.quantity is not None:
                    totals[posting.account.code] += posting.quantity
    return dict(totals)


def check_zero_sum(entries: Iterable[JournalEntry]) -> None:
    """Raise `UnbalancedEntry` unless each entry, and so the journal, sums to zero per currency.

    Entries are checked again from their postings, as the database does for stored rows, so an
    entry that bypassed its constructor is caught too. Each entry is summed exactly, so the
    journal, their sum, balances when every entry does: there is no separate journal total.
    """
    for entry in entries:
        imbalances = _imbalances(entry.postings)
        if imbalances:
            raise UnbalancedEntry(entry.id, imbalances)


# Enum members as module constants: a member looked up on its class goes through EnumType's attribute
# hook on every use (about 80 ns in 3.11), a module global does not; the hot paths above use these.
_ACCOUNT_KIND_CASH = AccountKind.CASH
_ACCOUNT_KIND_DEPOSITS = AccountKind.DEPOSITS
_ACCOUNT_KIND_FEES = AccountKind.FEES
_ACCOUNT_KIND_FX = AccountKind.FX
_ACCOUNT_KIND_POSITION = AccountKind.POSITION
_ACCOUNT_KIND_REALIZED_PNL = AccountKind.REALIZED_PNL
_ACCOUNT_KIND_ROUNDING = AccountKind.ROUNDING
_ENTRY_KIND_DEPOSIT = EntryKind.DEPOSIT
_ENTRY_KIND_FEE = EntryKind.FEE
_ENTRY_KIND_FILL = EntryKind.FILL
_ENTRY_KIND_FX = EntryKind.FX
_ENTRY_KIND_REVERSAL = EntryKind.REVERSAL
_SIDE_BUY = Side.BUY
