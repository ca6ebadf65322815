"""Explaining a missing FX rate: which pair of the catalogue is not quoted yet, or that none exists."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from tradestack.domain.instruments import Instrument, InstrumentKind
from tradestack.domain.portfolio import FxRates, MissingFxRate


def missing_fx(instruments: Mapping[str, Instrument], rates: FxRates, source: str, target: str) -> str:
    """What is missing to convert `source` into `target`, leg by leg through the pivot: an unquoted pair
    of the catalogue (market data not running yet), or no pair at all."""
    direct = rates.pivot in (source, target)
    legs = [(source, target)] if direct else [(source, rates.pivot), (rates.pivot, target)]
    missing: list[str] = []
    for first, second in legs:
        try:
            rates.convert(Decimal(1), first, second)
        except MissingFxRate:
            pairs = [
                i.symbol
                for i in instruments.values()
                if i.kind is InstrumentKind.FX and {i.base_currency, i.quote_currency} == {first, second}
            ]
            if pairs:
                missing.append(f"no quote for {' or '.join(pairs)} yet ({first}/{second}); is market data running?")
            else:
                missing.append(f"no {first}/{second} FX pair in the instrument catalogue")
    return "; ".join(missing) or f"no route from {source} to {target}"
