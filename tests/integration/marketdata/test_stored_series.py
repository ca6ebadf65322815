"""The replay's history, loaded as stored text and made into bars when read, is exactly the bars `between` returns."""

from __future__ import annotations

from decimal import Decimal

from tradestack.kit.runtime import Runtime
from tradestack.marketdata.repository import BarRepository

from .conftest import StoreHistory  # type: ignore[import-not-found]


async def test_stored_series_reads_exactly_the_stored_bars(runtime: Runtime, store_history: StoreHistory) -> None:
    await store_history("btc-usd", ["BTC-USD"])  # crypto: small volumes, many decimal places
    await store_history("eurusd-1h", ["EURUSD"])
    async with runtime.database.read_session() as session:
        bars = BarRepository(session)
        for symbol in ("BTC-USD", "EURUSD"):
            resolution = (await bars.resolutions(symbol))[0]  # the finest, as the replay takes
            expected = await bars.between(symbol, resolution, None, None, None)
            lazy = await bars.stored_series(symbol, resolution)
            assert len(lazy) == len(expected) > 100
            read = list(lazy)
            assert read == expected
            # The same digits and exponent, not only equal values (Decimal('1.50') == Decimal('1.5')).
            for mine, theirs in zip(read, expected, strict=True):
                for field in ("open", "high", "low", "close", "volume"):
                    assert isinstance(getattr(mine, field), Decimal)
                    assert str(getattr(mine, field)) == str(getattr(theirs, field))
                assert mine.ts == theirs.ts
                assert mine.ts.utcoffset() == theirs.ts.utcoffset()
            assert list(lazy[10:20]) == expected[10:20]
            assert lazy[-1] == expected[-1]
