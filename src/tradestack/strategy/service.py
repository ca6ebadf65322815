"""Stored backtest runs: `store` a run's result, `list` and `get` them for the API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import tradestack
from tradestack.backtest.data import BarSeries, utc_of
from tradestack.backtest.engine import BacktestResult
from tradestack.backtest.metrics import Metrics
from tradestack.backtest.report import data_fingerprint, result_document
from tradestack.core.errors import NotFoundError
from tradestack.core.money import plain
from tradestack.kit.runtime import Runtime
from tradestack.models.backtests import BacktestRunRow
from tradestack.strategy.repository import BacktestRepository
from tradestack.strategy.schemas import BacktestDetail, BacktestList, BacktestSummary

MAX_PAGE = 500


def _summary(row: BacktestRunRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_at": row.created_at,
        "strategy": row.strategy,
        "symbols": row.symbols.split(","),
        "first_bar": row.first_bar,
        "last_bar": row.last_bar,
        "bars": row.bars,
        "code_version": row.code_version,
        "data_fingerprint": row.data_fingerprint,
        "final_equity": row.final_equity,
        "metrics": json.loads(row.metrics_json),
    }


class BacktestService:
    """The stored runs of the backtester."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def store(
        self,
        result: BacktestResult,
        metrics: Metrics,
        series: Sequence[BarSeries],
        params: dict[str, str],
        source: dict[str, str | None] | None = None,
    ) -> str:
        """Keep `result` (run over `series` with `params`, read from `source`: data set, timeframe); its new run id."""
        document = result_document(result, metrics)
        spec = {"strategy": result.strategy, "params": params, "symbols": list(result.symbols), **document.pop("config")}
        if source:
            spec["source"] = source
        metrics_part = document.pop("metrics")
        row = BacktestRunRow(
            id=str(uuid.uuid4()),
            created_at=self.runtime.clock.now(),
            strategy=result.strategy,
            symbols=",".join(result.symbols),
            first_bar=utc_of(min(int(s.ts[0]) for s in series)),
            last_bar=utc_of(max(int(s.ts[-1]) for s in series)),
            bars=result.bars,
            code_version=tradestack.__version__,
            data_fingerprint=data_fingerprint(series),
            final_equity=plain(result.final_equity),
            spec_json=json.dumps(spec),
            metrics_json=json.dumps(metrics_part),
            result_json=json.dumps(document),
        )
        async with self.runtime.database.session() as session:
            await BacktestRepository(session).add(row)
        return row.id

    async def list(self, limit: int = 100, offset: int = 0) -> BacktestList:
        """Stored runs, newest first."""
        async with self.runtime.database.read_session() as session:
            rows = await BacktestRepository(session).list(min(limit, MAX_PAGE), offset)
            return BacktestList(backtests=[BacktestSummary(**_summary(row)) for row in rows])

    async def get(self, run_id: str) -> BacktestDetail:
        """One stored run with its spec and result; `NotFoundError` when there is none."""
        async with self.runtime.database.read_session() as session:
            row = await BacktestRepository(session).get(run_id)
            if row is None:
                raise NotFoundError(f"no backtest {run_id!r}; GET /api/backtests lists the stored runs")
            return BacktestDetail(**_summary(row), spec=json.loads(row.spec_json), result=json.loads(row.result_json))
