"""Known currencies and their minor units: ISO 4217 (the `iso4217` package) plus the crypto assets we trade.

The table is built here, outside `domain`, from the package's data; callers pass what they need
(a code's minor units) into the pure code.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType

from tradestack.domain.instruments import CATALOG, InstrumentKind

CRYPTO_MINOR_UNITS = 8
"""Digits after the point booked for crypto assets (a satoshi for BTC)."""


@cache
def minor_units_table() -> Mapping[str, int]:
    """Every known currency code and how many decimal places its amounts have."""
    import iso4217

    table = {c.code: c.exponent for c in iso4217.Currency if c.exponent is not None}  # XAU, XXX ... have none
    for instrument in CATALOG:
        if instrument.kind is InstrumentKind.CRYPTO and instrument.base_currency:
            table.setdefault(instrument.base_currency, CRYPTO_MINOR_UNITS)
    return MappingProxyType(table)


def minor_units(code: str) -> int | None:
    """Decimal places of `code`'s amounts, or None for an unknown currency."""
    return minor_units_table().get(code.upper())


def currency_problem(code: str) -> str | None:
    """Why `code` is not a currency we know, or None."""
    if minor_units(code) is None:
        return (
            f"unknown currency {code!r}: use an ISO 4217 code such as AUD, USD, EUR or INR, or a traded crypto asset (BTC, ETH)"
        )
    return None
