"""A backtest's result as JSON-ready data: the spec, the metrics, every order, fill and journal entry, the equity curve.

Money and quantities are strings (exact Decimals); statistics are numbers (NaN becomes null);
times are ISO 8601 UTC.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import fields
from decimal import Decimal
from typing import Any

from tradestack.backtest.data import BarSeries, utc_of
from tradestack.backtest.engine import BacktestResult
from tradestack.backtest.metrics import Metrics
from tradestack.core.money import plain


def _value(value: object) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def result_document(result: BacktestResult, metrics: Metrics) -> dict[str, Any]:
    """Everything `result` holds, as JSON-ready data."""
    config = result.config
    return {
        "strategy": result.strategy,
        "symbols": list(result.symbols),
        "bars": result.bars,
        "config": {
            "capital": plain(config.capital),
            "currency": config.currency,
            "fee_bps": plain(config.fee.bps),
            "fee_minimum": plain(config.fee.minimum),
            "slippage_bps": plain(config.slippage.bps),
            "latency_seconds": config.latency.seconds,
            "participation_rate": plain(config.participation_rate),
            "fill_rule": "market orders at the next bar's open; limit and stop orders on the open, low/high, close path",
        },
        "metrics": {field.name: _value(getattr(metrics, field.name)) for field in fields(metrics)},
        "final_cash": plain(result.final_cash),
        "final_equity": plain(result.final_equity),
        "orders": [
            {
                "id": order.id,
                "symbol": order.request.symbol,
                "side": order.request.side.value,
                "type": order.request.type.value,
                "quantity": plain(order.request.quantity),
                "status": order.status.value,
                "filled_quantity": plain(order.filled_quantity),
                "reason": order.reason,
                "created_at": order.created_at.isoformat(),
            }
            for order in result.orders
        ],
        "fills": [
            {
                "order_id": trade.order_id,
                "symbol": trade.symbol,
                "side": trade.side.value,
                "quantity": plain(trade.quantity),
                "price": plain(trade.price),
                "fee": plain(trade.fee),
                "realized": plain(trade.realized),
                "ts": trade.ts.isoformat(),
            }
            for trade in result.trades
        ],
        "events": [event.to_dict() for event in result.events],
        "journal": [
            {
                "id": entry.id,
                "ts": entry.ts.isoformat(),
                "kind": entry.kind.value,
                "postings": [
                    {
                        "account": str(posting.account),
                        "currency": posting.currency,
                        "amount": plain(posting.amount),
                        "quantity": None if posting.quantity is None else plain(posting.quantity),
                    }
                    for posting in entry.postings
                ],
            }
            for entry in result.journal
        ],
        "equity": [
            {"ts": utc_of(int(ts)).isoformat(), "equity": float(value)}
            for ts, value in zip(result.equity_ts.tolist(), result.equity.tolist(), strict=True)
        ],
    }


def data_fingerprint(series: Sequence[BarSeries]) -> str:
    """SHA-256 of the bars replayed (symbol, precision, and every column), hex."""
    digest = hashlib.sha256()
    for one in series:
        digest.update(f"{one.symbol}|{one.places}|{one.volume_places}|{len(one)}|".encode())
        for column in (one.ts, one.open, one.high, one.low, one.close, one.volume):
            digest.update(column.tobytes())
    return digest.hexdigest()
