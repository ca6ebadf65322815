"""Last prices and FX rates from the live quote cache, for risk checks and valuation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

import orjson

from tradestack.core.money import D
from tradestack.domain.instruments import Instrument, InstrumentKind
from tradestack.domain.portfolio import FxRates, MissingFxRate
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import QUOTE_KEY


@dataclass(frozen=True)
class Prices:
    """Mark prices by symbol (the last trade, else the mid) and FX rates (mids of the FX pairs)."""

    marks: Mapping[str, Decimal]
    rates: FxRates

    def mark(self, symbol: str) -> Decimal | None:
        return self.marks.get(symbol)


def _mark(raw: bytes | None) -> Decimal | None:
    if raw is None:
        return None
    data = orjson.loads(raw)
    last = D(data["last"]) if data.get("last") else Decimal(0)
    if last > 0:
        return last
    bid, ask = D(data["bid"]), D(data["ask"])
    if bid > 0 and ask > 0:
        return (bid + ask) / 2
    return None


async def current_prices(runtime: Runtime, instruments: Mapping[str, Instrument], symbols: Iterable[str]) -> Prices:
    """Marks of `symbols` and every FX pair's rate, read from the cache in one round trip."""
    fx_pairs = [i for i in instruments.values() if i.kind is InstrumentKind.FX and i.base_currency]
    wanted = list(dict.fromkeys([*symbols, *(i.symbol for i in fx_pairs)]))
    raw = await runtime.cache.get_many([QUOTE_KEY + s for s in wanted]) if wanted else []
    marks = {symbol: mark for symbol, value in zip(wanted, raw, strict=True) if (mark := _mark(value)) is not None}
    return Prices(marks, fx_rates(instruments, marks))


def fx_rates(instruments: Mapping[str, Instrument], prices: Mapping[str, Decimal]) -> FxRates:
    """Rates from the prices of the FX pairs among `prices` (by symbol); other symbols are ignored."""
    quotes: dict[tuple[str, str], Decimal] = {}
    for symbol, price in prices.items():
        pair = instruments.get(symbol)
        if pair is not None and pair.kind is InstrumentKind.FX and pair.base_currency and price > 0:
            quotes[(pair.base_currency, pair.quote_currency)] = price
    return FxRates(quotes)


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
