"""Booking fills, one or many in a transaction: the engine's executions (`BooksService.fill_booking`).

Every fill is decided in memory, one after the other, against the running balances of its account as the fills
booked before it left them (read once, when the booking starts, under the account's lock): its journal entry
(`fill_entry`, against the position as it stands), under the auto-convert policy the FX entry covering a negative
quote-currency balance, and the books after it. `FillBooking.write` then stores what they all wrote, one statement a
table (fills, journal entries, postings, balances: each balance once, at the net of the group's movements), where
each fill used to cost a dozen ORM statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import ROUND_CEILING, Decimal, localcontext

from tradestack.books.repository import JournalRepository
from tradestack.core.money import UNROUNDED
from tradestack.domain.books import AccountBooks, AccountProfile, BalanceLine, FxPolicy, books_of
from tradestack.domain.ledger import JournalEntry, currency_fill_entry, fill_entry, fx_conversion
from tradestack.domain.marketdata import Side
from tradestack.domain.orders import FillEvent
from tradestack.domain.portfolio import FxRates, MissingFxRate, PositionState
from tradestack.kit.currencies import minor_units

# Column values have at most 38 digits: their sums are exact in `UNROUNDED`, and an inexact one raises.
_ZERO = Decimal(0)


class FillBooking:
    """Fills of locked accounts booked in the caller's transaction: each decided by `book` against the balances the
    earlier ones left, all stored by `write` (see the module docstring). Made by `BooksService.fill_booking`."""

    def __init__(
        self, journal: JournalRepository, accounts: Sequence[AccountProfile], lines: Iterable[tuple[str, BalanceLine]]
    ) -> None:
        self._journal = journal
        self._accounts = {account.id: account for account in accounts}
        self._lines: dict[str, dict[str, BalanceLine]] = {account.id: {} for account in accounts}
        for account_id, line in lines:
            self._lines[account_id][line.ledger_account] = line
        self._books: dict[str, AccountBooks] = {}  # of the accounts not moved since they were last asked for
        self._fills: list[tuple[str, str, str, FillEvent]] = []
        self._entries: list[tuple[str, JournalEntry]] = []
        self._moved: dict[tuple[str, str], None] = {}  # (account id, ledger account) of the balances moved, in order

    def books(self, account_id: str) -> AccountBooks:
        """The account's books as the fills booked so far left them."""
        books = self._books.get(account_id)
        if books is None:
            profile = self._accounts[account_id]
            books = self._books[account_id] = books_of(
                profile.id,
                profile.base_currency,
                self._lines[account_id].values(),
                allow_short=profile.allow_short,
                fx_policy=profile.fx_policy,
            )
        return books

    def book(
        self,
        account_id: str,
        symbol: str,
        side: Side | str,
        fill: FillEvent,
        quote_currency: str,
        *,
        rates: FxRates,
        fx_fee_bps: Decimal,
        pair: tuple[str, str] | None = None,
    ) -> AccountBooks:
        """Book one execution of the account (one of the booking's): the fill, its journal entry (position at cost, cash,
        fee, realized P&L) and the balances it moves; under the auto-convert policy also the FX entry covering a
        negative quote-currency balance. Returns the books after it; nothing is stored before `write`.

        A currency pair (`pair`: its base and quote currencies, e.g. EURUSD) is not a position: its fill
        is booked as the conversion it is, cash moving between the two currencies (`currency_fill_entry`).
        """
        account = self._accounts[account_id]
        side_value = Side(side).value
        if pair is not None:
            entry = currency_fill_entry(
                f"fill-{fill.fill_id}",
                fill.ts,
                side_value,
                fill.quantity,
                fill.price,
                pair,
                fill.fee,
                fill.fee_currency,
                reference=fill.fill_id,
                cash_places=minor_units(pair[1]),
            )
        else:
            entry = fill_entry(
                f"fill-{fill.fill_id}",
                fill.ts,
                symbol,
                side_value,
                fill.quantity,
                fill.price,
                quote_currency,
                fill.fee,
                fill.fee_currency,
                self._position(account_id, symbol),
                reference=fill.fill_id,
                cash_places=minor_units(quote_currency),
            )
        self._fills.append((account_id, symbol, side_value, fill))
        self._post(account_id, entry)
        if account.fx_policy is FxPolicy.AUTO_CONVERT:
            self._convert_shortfall(account, quote_currency, fill, rates, fx_fee_bps)
        return self.books(account_id)

    async def write(self) -> None:
        """Store every fill booked, its entries and the balances they moved (each once, where they ended up)."""
        if not self._entries:
            return
        moved = [(account_id, self._lines[account_id][name]) for account_id, name in self._moved]
        await self._journal.add_booked(self._fills, self._entries, moved)
        self._fills, self._entries, self._moved = [], [], {}

    def _position(self, account_id: str, symbol: str) -> PositionState:
        """The account's position in `symbol` at cost (flat when it has none)."""
        line = self._lines[account_id].get(f"position:{symbol}")
        if line is None or not line.quantity:
            return PositionState(symbol)
        return PositionState(symbol, line.quantity, line.amount)

    def _post(self, account_id: str, entry: JournalEntry) -> None:
        """Keep `entry` for `write`, and move the account's balances by its postings."""
        self._entries.append((account_id, entry))
        lines = self._lines[account_id]
        with localcontext(UNROUNDED):
            for posting in entry.postings:
                name = str(posting.account)
                line = lines.get(name)
                amount, quantity = (line.amount, line.quantity) if line is not None else (_ZERO, None)
                if posting.quantity is not None:
                    quantity = (quantity or _ZERO) + posting.quantity
                currency = line.currency if line is not None else posting.currency
                lines[name] = BalanceLine(name, currency, amount + posting.amount, quantity)
                self._moved[account_id, name] = None
        self._books.pop(account_id, None)

    def _convert_shortfall(
        self, account: AccountProfile, quote: str, fill: FillEvent, rates: FxRates, fx_fee_bps: Decimal
    ) -> None:
        """When a buy leaves the quote currency's cash negative, buy what is missing with the base currency at the
        rate plus the FX fee (rounded up to the base's minor unit), as its own balanced FX entry next to the fill's.
        Without a rate the balance stays negative until one arrives."""
        base = account.base_currency
        if quote == base:
            return
        line = self._lines[account.id].get(f"cash:{quote}")
        balance = line.amount if line is not None else _ZERO
        if balance >= 0:
            return
        needed = -balance
        try:
            rate = rates.rate(quote, base)
        except MissingFxRate:
            return
        places = minor_units(base)
        sold = needed * rate * (1 + fx_fee_bps / 10_000)
        if places is not None:
            sold = sold.quantize(Decimal(1).scaleb(-places), rounding=ROUND_CEILING)
        self._post(account.id, fx_conversion(f"fx-{fill.fill_id}", fill.ts, base, sold, quote, needed, reference=fill.fill_id))
