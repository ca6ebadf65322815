"""The signals service: train and register alpha models, promote one, serve its signals.

Training reads the stored daily bars through the market-data service, evaluates walk-forward
(`tradestack.signals.alpha`), fits the final model on every labelled day and registers it: files
under the data directory (`artifacts`), metadata in `signal_models`. The API serves the promoted
model's signals; a model is loaded once per process (digest checked) and the signals of a version
for an as-of day are computed once and kept in the cache.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from tradestack.audit.service import AuditService
from tradestack.core.errors import ConflictError, NotFoundError, ValidationFailedError
from tradestack.domain.instruments import InstrumentKind
from tradestack.domain.marketdata import Bar
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import MAX_CANDLES, MarketDataService
from tradestack.models.signals import SignalModelRow
from tradestack.signals import alpha, artifacts
from tradestack.signals.metrics import TRADING_SIGNALS
from tradestack.signals.repository import SignalModelRepository
from tradestack.signals.schemas import ModelOut, SignalList, SignalOut, metadata_metrics

ALPHA = "alpha"
KINDS = (ALPHA,)
SIGNALS_TTL_SECONDS = 300.0
LONG_SHORT_QUANTILE = 0.3
_EPOCH = datetime(1900, 1, 1, tzinfo=UTC)


def model_out(row: SignalModelRow) -> ModelOut:
    """The API view of a registered version."""
    metadata = json.loads(row.metadata_json)
    return ModelOut(
        version=row.version,
        kind=row.kind,
        created_at=row.created_at,
        promoted=row.promoted,
        promoted_at=row.promoted_at,
        data_fingerprint=row.data_fingerprint,
        horizon=metadata.get("horizon"),
        universe=metadata.get("universe", []),
        training_window=metadata.get("training_window", []),
        metrics=metadata_metrics(metadata),
    )


@dataclass(frozen=True, slots=True)
class Served:
    """What serving needs of the promoted version, read while its session is open."""

    version: str
    path: str
    sha256: str
    metadata: dict[str, Any]

    @classmethod
    def of(cls, row: SignalModelRow) -> Served:
        """Copy from a row."""
        return cls(row.version, row.path, row.artifact_sha256, json.loads(row.metadata_json))


@dataclass(frozen=True, slots=True)
class Trained:
    """A registered model and, when evaluated, its walk-forward evaluation."""

    model: ModelOut
    evaluation: alpha.Evaluation | None
    directory: Path


class SignalService:
    """Training, registry and serving of the cross-sectional alpha."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    # -- data ------------------------------------------------------------------------------------

    async def universe(self, symbols: Sequence[str] | None = None) -> list[str]:
        """`symbols` checked, or every equity with stored daily bars."""
        market = MarketDataService(self.runtime)
        if symbols:
            return await market.parse_symbols(",".join(symbols))
        instruments = await market.instruments()
        daily = {s.symbol for s in await market.series() if s.resolution.value == "1d"}
        found = sorted(s for s in daily if s in instruments and instruments[s].kind is InstrumentKind.EQUITY)
        if len(found) < alpha.MIN_SYMBOLS:
            raise ValidationFailedError(
                f"the universe needs at least {alpha.MIN_SYMBOLS} equities with daily bars, {len(found)} are stored: "
                "import some with `tradestack data import us-equities-daily`"
            )
        return found

    async def panel(self, symbols: Sequence[str], *, start: date | None = None, end: date | None = None) -> alpha.Panel:
        """Daily bars of `symbols` between `start` and `end` (inclusive) as a panel."""
        market = MarketDataService(self.runtime)
        lo = datetime(start.year, start.month, start.day, tzinfo=UTC) if start else _EPOCH
        hi = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1) if end else None
        bars: dict[str, list[Bar]] = {}
        for symbol in symbols:
            candles = await market.candles(symbol, "1d", start=lo, end=hi, limit=MAX_CANDLES)
            bars[symbol] = candles.bars
        return alpha.panel_from_bars(bars)

    # -- training and the registry ---------------------------------------------------------------

    async def train(
        self,
        *,
        symbols: Sequence[str] | None = None,
        horizon: int = alpha.DEFAULT_HORIZON,
        start: date | None = None,
        end: date | None = None,
        evaluate: bool = True,
        rounds: int = alpha.ROUNDS,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> Trained:
        """Evaluate walk-forward (unless `evaluate` is False), fit on all labelled days and register the model."""
        if not 1 <= horizon <= 60:
            raise ValidationFailedError(f"horizon must be between 1 and 60 days, got {horizon}")
        universe = await self.universe(symbols)
        panel = await self.panel(universe, start=start, end=end)
        evaluation = None
        if evaluate:
            evaluation = alpha.evaluate(
                panel, horizon=horizon, rounds=rounds, progress=(lambda i, n: progress("fold", i, n)) if progress else None
            )
        data = alpha.dataset(panel, horizon)
        labelled = np.flatnonzero(~np.isnan(data.label).all(axis=1))
        if labelled.size == 0:
            raise ValidationFailedError(f"no day has {alpha.MIN_SYMBOLS} symbols with a {horizon}-day forward return")
        booster = alpha.fit(data, slice(0, len(panel.dates)), rounds=rounds)
        if progress:
            progress("final model", 1, 1)
        return await self._register(panel, data.names, horizon, rounds, booster, evaluation, labelled)

    async def _register(
        self,
        panel: alpha.Panel,
        names: list[str],
        horizon: int,
        rounds: int,
        booster: lgb.Booster,
        evaluation: alpha.Evaluation | None,
        labelled: np.ndarray[Any, Any],
    ) -> Trained:
        now = self.runtime.clock.now()
        fingerprint = panel.fingerprint()
        version = f"{ALPHA}-{now:%Y%m%dT%H%M%S}-{fingerprint[:8]}"
        target = artifacts.directory(self.runtime.settings.data_dir, ALPHA, version)
        metadata: dict[str, Any] = {
            "kind": ALPHA,
            "horizon": horizon,
            "universe": list(panel.symbols),
            "close_only": not panel.has_ohlcv,
            "features": names,
            "params": {**alpha.DEFAULT_PARAMS, "num_boost_round": rounds},
            "training_window": [panel.dates[int(labelled[0])].isoformat(), panel.dates[int(labelled[-1])].isoformat()],
            "data_fingerprint": fingerprint,
            "libraries": {
                "python": platform.python_version(),
                **{name: package_version(name) for name in ("lightgbm", "numpy", "scikit-learn")},
            },
            "evaluation": evaluation.to_json() if evaluation else None,
        }
        sha = artifacts.save_model(target, booster, metadata)
        if evaluation is not None:
            from tradestack.signals import report

            report.write_json(evaluation, target / "report.json")
            report.write_png(evaluation, target / "report.png")
        row = SignalModelRow(
            version=version,
            kind=ALPHA,
            created_at=now,
            promoted=False,
            promoted_at=None,
            artifact_sha256=sha,
            data_fingerprint=fingerprint,
            path=str(target.relative_to(self.runtime.settings.data_dir)),
            metadata_json=json.dumps(metadata, default=str),
        )
        async with self.runtime.database.session() as session:
            await SignalModelRepository(session).add(row)
        return Trained(model_out(row), evaluation, target)

    async def models(self, kind: str | None = None) -> list[ModelOut]:
        """Registered versions, newest first."""
        async with self.runtime.database.read_session() as session:
            return [model_out(row) for row in await SignalModelRepository(session).list(kind)]

    async def model(self, version: str) -> tuple[ModelOut, dict[str, Any], Path]:
        """One version: its view, full metadata and directory; 404 when unknown."""
        async with self.runtime.database.read_session() as session:
            row = await SignalModelRepository(session).get(version)
        if row is None:
            raise NotFoundError(f"no model version {version!r}: `tradestack signals list` shows them")
        return model_out(row), json.loads(row.metadata_json), self.runtime.settings.data_dir / row.path

    async def promote(self, version: str, *, actor_email: str | None = None, via: str = "cli") -> tuple[ModelOut, str | None]:
        """Make `version` the served model of its kind (also how to roll back); audited. Returns it and the previous one."""
        async with self.runtime.database.session() as session:
            repository = SignalModelRepository(session)
            row = await repository.get(version)
            if row is None:
                raise NotFoundError(f"no model version {version!r}: `tradestack signals list` shows them")
            # Refuse to promote an artifact that no longer matches its digest.
            artifacts.load_model(self.runtime.settings.data_dir / row.path, row.artifact_sha256)
            current = await repository.promoted(row.kind)
            previous = current.version if current else None
            await repository.promote(row, self.runtime.clock.now())
            promoted = model_out(row)
            kind = row.kind
        await AuditService(self.runtime.database, self.runtime.clock).record(
            action="signals.model.promote",
            outcome="success",
            actor_email=actor_email,
            target=version,
            detail={"kind": kind, "previous": previous, "via": via},
        )
        return promoted, previous

    # -- serving ---------------------------------------------------------------------------------

    async def _promoted(self) -> tuple[Served, lgb.Booster]:
        async with self.runtime.database.read_session() as session:
            found = await SignalModelRepository(session).promoted(ALPHA)
            row = Served.of(found) if found else None
        if row is None:
            raise ConflictError(
                "no promoted alpha model: train one with `tradestack signals train`, then `signals promote VERSION`"
            )
        loaded = self.runtime.components.setdefault("signals.boosters", {})
        assert isinstance(loaded, dict)  # noqa: S101 - set only here
        booster = loaded.get(row.version)
        if booster is None:
            booster = artifacts.load_model(self.runtime.settings.data_dir / row.path, row.sha256)
            loaded.clear()
            loaded[row.version] = booster
        return row, booster

    async def refresh(self) -> SignalList:
        """Compute the promoted model's signals now and put them in the cache (what `serve signals` runs)."""
        row, booster = await self._promoted()
        return await self._store(row, await self._compute(row, booster))

    async def _store(self, row: Served, answer: SignalList) -> SignalList:
        encoded = answer.model_dump_json().encode()
        await self.runtime.cache.set(f"signals:{row.version}:latest", encoded, SIGNALS_TTL_SECONDS)
        await self.runtime.cache.set(f"signals:{row.version}:{answer.as_of.isoformat()}", encoded, SIGNALS_TTL_SECONDS)
        return answer

    async def ranked(self, *, max_age_days: int | None = None) -> SignalList:
        """The promoted model's signals for its whole universe on the latest stored day (cached per version and day)."""
        row, booster = await self._promoted()
        cached = await self.runtime.cache.get(f"signals:{row.version}:latest")
        if cached is not None:
            answer = SignalList.model_validate_json(cached)
        else:
            answer = await self._store(row, await self._compute(row, booster))
        if max_age_days is not None:
            age = (self.runtime.clock.now().date() - answer.as_of).days
            if age > max_age_days:
                raise ConflictError(
                    f"the latest daily bar is from {answer.as_of.isoformat()}, {age} days old (max_age_days={max_age_days}): "
                    "import fresher data or allow older signals"
                )
        TRADING_SIGNALS.labels(model=row.version).inc(len(answer.signals))
        return answer

    async def signal(self, symbol: str, *, max_age_days: int | None = None) -> SignalOut:
        """One symbol's signal; 422 when the symbol is unknown or outside the model's universe on the as-of day."""
        instrument = await MarketDataService(self.runtime).instrument(symbol)
        answer = await self.ranked(max_age_days=max_age_days)
        for found in answer.signals:
            if found.symbol == instrument.symbol:
                return found
        listed = ", ".join(s.symbol for s in answer.signals)
        raise ValidationFailedError(
            f"{instrument.symbol} is not in model {answer.model_version}'s universe on {answer.as_of.isoformat()}: "
            f"it scores {listed}"
        )

    async def _compute(self, row: Served, booster: lgb.Booster) -> SignalList:
        metadata = row.metadata
        panel = await self.panel(metadata["universe"])
        names, x = panel.features()
        if names != metadata["features"]:
            raise ConflictError(
                f"model {row.version} was trained on {'close-only' if metadata['close_only'] else 'OHLCV'} features "
                "that the stored bars no longer give: retrain it"
            )
        counts = (~np.isnan(panel.close)).sum(axis=1)
        usable = np.flatnonzero(counts >= alpha.MIN_SYMBOLS)
        if usable.size == 0:
            raise ConflictError(f"no day has bars for {alpha.MIN_SYMBOLS} of the model's symbols: import daily bars")
        t = int(usable[-1])
        present = np.flatnonzero(~np.isnan(panel.close[t]))
        scores = alpha.predict(booster, x[t : t + 1, present])[0]
        order = np.argsort(-scores, kind="stable")
        n = len(present)
        k = max(1, int(n * LONG_SHORT_QUANTILE))
        signals = []
        for position, i in enumerate(order):
            percentile = 1.0 - position / (n - 1) if n > 1 else 0.5
            direction = "long" if position < k else "short" if position >= n - k else "flat"
            signals.append(
                SignalOut(
                    symbol=panel.symbols[int(present[i])],
                    score=float(scores[i]),
                    rank=position + 1,
                    universe_size=n,
                    percentile=percentile,
                    direction=direction,
                    model_version=row.version,
                    as_of=panel.dates[t],
                    horizon_days=int(metadata["horizon"]),
                )
            )
        return SignalList(model_version=row.version, as_of=panel.dates[t], horizon_days=int(metadata["horizon"]), signals=signals)
