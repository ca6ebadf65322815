"""The order desk's fee models: built once per venue and quote currency, the same as built afresh."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import cast

from tradestack.domain.instruments import instrument
from tradestack.kit.config import Settings
from tradestack.kit.runtime import Runtime
from tradestack.trading.service import fee_model_for, fee_models


def test_each_venue_and_quote_currency_gets_one_model_equal_to_a_fresh_one() -> None:
    settings = Settings(_env_file=None, paper_fees={"NASDAQ": (Decimal(1), Decimal("0.01")), "CRYPTO": (Decimal(10), Decimal(0))})
    runtime = cast(Runtime, SimpleNamespace(settings=settings))
    fee_model = fee_models(runtime)
    aapl, msft, btc = instrument("AAPL"), instrument("MSFT"), instrument("BTC-USD")
    first = fee_model(aapl)
    assert first == fee_model_for(runtime, aapl)
    assert fee_model(aapl) is first
    assert fee_model(msft) is first  # same venue, same quote currency
    crypto = fee_model(btc)
    assert crypto == fee_model_for(runtime, btc)
    assert crypto.bps == Decimal(10)
    assert crypto != first
    assert fee_models(runtime)(aapl) is not first  # each desk its own
