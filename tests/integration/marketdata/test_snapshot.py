"""`MarketDataService.snapshot`: the quotes as cached, one snapshot made again only when they change."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import QUOTE_KEY, MarketDataService


async def test_snapshot_of_unchanged_quotes_is_the_same_and_a_changed_quote_is_seen_at_once(runtime: Runtime) -> None:
    market = MarketDataService(runtime)
    catalogue = await market.instruments()
    await runtime.cache.set(QUOTE_KEY + "BTC-USD", orjson.dumps({"symbol": "BTC-USD", "bid": "100", "ask": "102"}))
    await runtime.cache.set(QUOTE_KEY + "EURUSD", orjson.dumps({"symbol": "EURUSD", "bid": "1.1", "ask": "1.1"}))
    first = await market.snapshot(["BTC-USD"], instruments=catalogue)
    again = await MarketDataService(runtime).snapshot(["BTC-USD"], instruments=catalogue)
    assert again is first  # nothing decoded again
    assert first.mark("BTC-USD") == Decimal(101)

    await runtime.cache.set(QUOTE_KEY + "BTC-USD", orjson.dumps({"symbol": "BTC-USD", "bid": "100", "ask": "104", "last": "103"}))
    moved = await market.snapshot(["BTC-USD"], instruments=catalogue)
    assert moved.mark("BTC-USD") == Decimal(103)
    await runtime.cache.set(QUOTE_KEY + "EURUSD", orjson.dumps({"symbol": "EURUSD", "bid": "1.2", "ask": "1.2"}))
    rate = await market.snapshot(["BTC-USD"], instruments=catalogue)
    assert rate.rates.rate("EUR", "USD") == Decimal("1.2")
    assert first.rates.rate("EUR", "USD") == Decimal("1.1")  # a snapshot made earlier is as it was
    await runtime.cache.delete(QUOTE_KEY + "BTC-USD")
    assert (await market.snapshot(["BTC-USD"], instruments=catalogue)).mark("BTC-USD") is None

    others = await market.snapshot(["ETH-USD"], instruments=catalogue)  # other symbols: read and made for them
    assert "BTC-USD" not in others.quotes
    narrower = {symbol: i for symbol, i in catalogue.items() if symbol != "EURUSD"}
    assert ("EUR", "USD") not in (await market.snapshot(["BTC-USD"], instruments=narrower)).rates.quotes  # its own catalogue


async def test_the_catalogue_handed_out_cannot_be_changed_in_place(runtime: Runtime) -> None:
    # The last snapshot is reused while the catalogue is the same object: changed in place, it would go stale.
    catalogue = await MarketDataService(runtime).instruments()
    with pytest.raises(TypeError):
        catalogue["XYZ"] = catalogue["BTC-USD"]  # type: ignore[index]
    assert "XYZ" not in await MarketDataService(runtime).instruments()
