"""The signals service: train and register alpha models, promote one, serve its signals.

Training reads the stored daily bars through the market-data service, evaluates walk-forward
(`tradestack.signals.alpha`), fits the final model on every labelled day and registers it: files
under the data directory (`artifacts`), metadata in `signal_models`. The API serves the promoted
model's signals; a model is loaded once per process (digest checked) and the signals of a version
for an as-of day are computed once and kept in the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib.metadata import version as package_version
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import orjson

from tradestack.audit.service import AuditService, after_commit
from tradestack.core.errors import ConflictError, NotFoundError, TradestackError, ValidationFailedError
from tradestack.domain.instruments import InstrumentKind
from tradestack.domain.marketdata import Bar
from tradestack.kit.metrics import BATCHED
from tradestack.kit.runtime import Runtime, Slot
from tradestack.marketdata.service import BOOK_KEY, MAX_CANDLES, MarketDataService
from tradestack.models.signals import SignalModelRow
from tradestack.signals import alpha, artifacts, predictor
from tradestack.signals.features.daily import LOOKBACK
from tradestack.signals.metrics import PREDICTION_LATENCY, PREDICTIONS, TRADING_SIGNALS
from tradestack.signals.outcomes import OutcomeService
from tradestack.signals.repository import SignalModelRepository
from tradestack.signals.schemas import BookIn, ModelAccuracy, ModelOut, PredictionOut, SignalList, SignalOut, metadata_metrics

if TYPE_CHECKING:
    import lightgbm as lgb

ALPHA = "alpha"
ORDERBOOK = "orderbook"
KINDS = (ALPHA, ORDERBOOK)
PREDICT_CACHE_TTL_SECONDS = 5.0
DEFAULT_PREDICT_LIMIT = "100/minute"
"""Per API key (or user) on POST /predict; TRADESTACK_RATE_LIMIT_ROUTES='{"POST /predict": "..."}' changes it."""
_PROMOTED_TTL_SECONDS = 5.0
FIRST_TRAINING_RETRY_SECONDS = 5
"""Retry-After of the 409 while the first model is being trained (it takes ~10-20 s on a laptop)."""
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


async def live_accuracy(runtime: Runtime) -> list[ModelAccuracy]:
    """Every served model version's judged calls and those still pending (the figures behind `ml_model_accuracy`)."""
    return [
        ModelAccuracy(
            model_version=model, kind=kind, hits=hits, calls=calls, accuracy=hits / calls if calls else None, pending=pending
        )
        for model, kind, hits, calls, pending in await OutcomeService(runtime).tally()
    ]


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

    async def daily_bars(
        self, symbols: Sequence[str], *, start: date | None = None, end: date | None = None
    ) -> dict[str, list[Bar]]:
        """Daily bars of `symbols` between `start` and `end` (inclusive), per symbol: every one, read a page of
        `MAX_CANDLES` (the candles query's limit) at a time."""
        market = MarketDataService(self.runtime)
        lo = datetime(start.year, start.month, start.day, tzinfo=UTC) if start else _EPOCH
        hi = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1) if end else None
        bars: dict[str, list[Bar]] = {}
        for symbol in symbols:
            series: list[Bar] = []
            page_start = lo
            while True:
                page = (await market.candles(symbol, "1d", start=page_start, end=hi, limit=MAX_CANDLES)).bars
                series.extend(page)
                if len(page) < MAX_CANDLES:
                    break
                page_start = page[-1].ts + timedelta(days=1)  # the next candle's interval starts after the last one's
                if hi is not None and page_start >= hi:
                    break
            bars[symbol] = series
        return bars

    async def panel(self, symbols: Sequence[str], *, start: date | None = None, end: date | None = None) -> alpha.Panel:
        """Daily bars of `symbols` between `start` and `end` (inclusive) as a panel (built off the event loop)."""
        bars = await self.daily_bars(symbols, start=start, end=end)
        return await asyncio.to_thread(alpha.panel_from_bars, bars)

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
        sha = artifacts.save_model(target, booster.model_to_string(), metadata)
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
            artifacts.load_text(self.runtime.settings.data_dir / row.path, row.artifact_sha256)
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
        await after_commit(self.runtime)
        return promoted, previous

    # -- serving ---------------------------------------------------------------------------------

    async def _promoted(self) -> tuple[Served, lgb.Booster]:
        row = await self._promoted_row()
        if row is None:
            raise self._none_promoted()
        loaded = self.runtime.components.get_or_create(BOOSTERS, dict)
        booster = loaded.get(row.version)
        if booster is None:
            # Off the event loop: the first load imports LightGBM (scikit-learn, scipy: 1.6-2.1 s here under load).
            booster = await asyncio.to_thread(artifacts.load_model, self.runtime.settings.data_dir / row.path, row.sha256)
            loaded.clear()
            loaded[row.version] = booster
        return row, booster

    def _none_promoted(self) -> ConflictError:
        """409 when no alpha is promoted: "being trained" (with Retry-After) while `up`'s first start trains one."""
        if artifacts.first_training_in_progress(self.runtime.settings.data_dir):
            return ConflictError(
                "the first alpha model is being trained (tradestack up's first start, in the background): "
                f"retry in a few seconds (Retry-After: {FIRST_TRAINING_RETRY_SECONDS})",
                headers={"Retry-After": str(FIRST_TRAINING_RETRY_SECONDS)},
            )
        return ConflictError(
            "no promoted alpha model: train one with `tradestack signals train`, then `tradestack signals promote VERSION`"
        )

    async def _promoted_row(self) -> Served | None:
        async with self.runtime.database.read_session() as session:
            found = await SignalModelRepository(session).promoted(ALPHA)
            return Served.of(found) if found else None

    async def refresh(self) -> SignalList:
        """Compute the promoted model's signals now and put them in the cache (what `serve signals` runs)."""
        row, booster = await self._promoted()
        return await self._shared(row, booster)

    async def warm(self) -> SignalList | None:
        """Compute the promoted model's signals into the cache unless they are there already (or none is promoted).

        What the API's background warmer runs after a promotion, at start-up and when the cached answer expires,
        so requests find the answer computed. A version whose computation failed is tried again only after
        `SIGNALS_TTL_SECONDS` (requests meanwhile compute, and refuse, themselves)."""
        row = await self._promoted_row()
        if row is None or await self.runtime.cache.get(f"signals:{row.version}:latest") is not None:
            return None
        failed = self.runtime.components.get_or_create(WARM_FAILED, dict)
        now = self.runtime.clock.monotonic()
        if row.version in failed and now - failed[row.version] < SIGNALS_TTL_SECONDS:
            return None
        try:
            row, booster = await self._promoted()
            return await self._shared(row, booster)
        except TradestackError:
            failed.clear()
            failed[row.version] = now
            raise

    async def _shared(self, row: Served, booster: lgb.Booster) -> SignalList:
        """Compute and cache `row`'s signals: one computation per version at a time, awaited by every caller
        that asks meanwhile (the first requests after a promotion, the warmer) instead of one each."""
        running = self.runtime.components.get_or_create(COMPUTING, dict)
        task = running.get(row.version)
        if task is None:
            task = asyncio.create_task(self._store_computed(row, booster), name=f"signals-{row.version}")
            running[row.version] = task

            def finished(done: asyncio.Task[SignalList]) -> None:
                if running.get(row.version) is done:
                    del running[row.version]
                if not done.cancelled():
                    done.exception()  # retrieved: every waiter (if any is left) gets it raised

            task.add_done_callback(finished)
        # Shielded: a caller that goes away (a closed request) does not cancel the others' computation.
        return await asyncio.shield(task)

    async def _store_computed(self, row: Served, booster: lgb.Booster) -> SignalList:
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
        answer = SignalList.model_validate_json(cached) if cached is not None else await self._shared(row, booster)
        await self._judge_alpha(answer)
        if max_age_days is not None:
            age = (self.runtime.clock.now().date() - answer.as_of).days
            if age > max_age_days:
                raise ConflictError(
                    f"the latest daily bar is from {answer.as_of.isoformat()}, {age} days old (max_age_days={max_age_days}): "
                    "import fresher data or allow older signals"
                )
        TRADING_SIGNALS.labels(model=row.version).inc(len(answer.signals))
        return answer

    async def _judge_alpha(self, answer: SignalList) -> None:
        """Record the answer's day of scores once; judge recorded days whose horizon's bars are stored (`outcomes`)."""
        outcomes = OutcomeService(self.runtime)
        scores = {s.symbol: s.score for s in answer.signals}
        await outcomes.record_alpha_day(answer.model_version, answer.as_of, scores, answer.horizon_days)
        market = MarketDataService(self.runtime)

        async def realised_of(as_of: date, symbols: list[str], horizon: int) -> dict[str, float] | None:
            start = datetime.combine(as_of, datetime.min.time(), UTC)
            realised: dict[str, float] = {}
            for symbol in symbols:
                bars = (await market.candles(symbol, "1d", start=start, end=None, limit=horizon + 1)).bars
                if len(bars) == horizon + 1 and bars[0].ts.date() == as_of:
                    realised[symbol] = float(bars[-1].close) / float(bars[0].close) - 1
            return realised if len(realised) >= min(alpha.MIN_SYMBOLS, len(symbols)) else None

        await outcomes.judge_alpha_days(realised_of)

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

    async def score_history(self, bars: Mapping[str, Sequence[Bar]]) -> ScoreHistory:
        """The promoted alpha model's scores of every day of `bars` (daily bars per symbol), for a backtest.

        A day's features use bars up to its close only (trailing windows), so its score is what the
        model would have said that evening. `ConflictError` when no model is promoted or the bars
        do not give the features it was trained on.
        """
        row, booster = await self._promoted()
        metadata = row.metadata
        close_only = list(bars) if metadata.get("close_only") else []
        panel = alpha.panel_from_bars(bars, close_only=close_only)
        names, x = panel.features()
        if names != metadata["features"]:
            raise ConflictError(
                f"model {row.version} was trained on {'close-only' if metadata.get('close_only') else 'OHLCV'} features "
                "that these bars do not give (e.g. a symbol without volumes): use other symbols or retrain"
            )
        scores = np.where(np.isnan(panel.close), np.nan, alpha.predict(booster, x))
        window = metadata.get("training_window") or ["", ""]
        return ScoreHistory(
            row.version, panel.dates, panel.symbols, scores, tuple(metadata.get("universe", [])), (window[0], window[1])
        )

    async def _compute(self, row: Served, booster: lgb.Booster) -> SignalList:
        """Score the universe's latest usable day (`MIN_SYMBOLS` symbols with a bar) from each symbol's last
        `LATEST_BARS` daily bars up to it, or from the whole histories when those do not cover the features'
        look-back on a common calendar (`latest_window`).

        A day's features read only the `daily.LOOKBACK` days up to it, so its scores from those bars equal the
        scores from the whole histories; the whole histories (27k bars of the shipped universe) took 2.4 s to load
        on the event loop and their features 4.6 s in a worker thread here (load ~5), stalling every request of
        the process meanwhile. The panel, features and model run in a worker thread."""
        universe = row.metadata["universe"]
        market = MarketDataService(self.runtime)
        latest = [(await market.candles(s, "1d", start=None, end=None, limit=1)).bars for s in universe]
        last = sorted((bars[-1].ts for bars in latest if bars), reverse=True)
        window = None
        if len(last) >= alpha.MIN_SYMBOLS:
            # No later day has MIN_SYMBOLS symbols: the latest usable day is this one or before.
            until = last[alpha.MIN_SYMBOLS - 1] + timedelta(days=1)
            bars = {s: (await market.candles(s, "1d", start=None, end=until, limit=LATEST_BARS)).bars for s in universe}
            window = await asyncio.to_thread(latest_window, bars, LATEST_BARS)
        if window is None:
            window = await asyncio.to_thread(latest_window, await self.daily_bars(universe), None)
        return await asyncio.to_thread(_rank_latest, row, booster, window)


LATEST_BARS = 4 * LOOKBACK
"""Daily bars per symbol read to score the latest day: the look-back with room for symbols missing days."""


@overload
def latest_window(bars: Mapping[str, Sequence[Bar]], limit: int) -> tuple[alpha.Panel, int] | None: ...
@overload
def latest_window(bars: Mapping[str, Sequence[Bar]], limit: None) -> tuple[alpha.Panel, int]: ...
def latest_window(bars: Mapping[str, Sequence[Bar]], limit: int | None) -> tuple[alpha.Panel, int] | None:
    """The panel's rows that the latest usable day's features read (`LOOKBACK` up to it) and that day's row in them.

    `bars` are each symbol's last `limit` bars up to some day no earlier than the latest usable one (None: whole
    histories). None when they may not give the same rows as the whole histories would: a symbol cut at `limit`
    starts after the window's first day (the calendar there may lack its older days), or the cut bars give no day
    with `MIN_SYMBOLS` symbols or lack volumes (the whole histories might have them). With whole histories, a window
    of up to `LOOKBACK` rows (fewer at the start)."""
    panel = alpha.panel_from_bars(bars)
    cut = [s for s, series in bars.items() if limit is not None and len(series) >= limit]
    usable = np.flatnonzero((~np.isnan(panel.close)).sum(axis=1) >= alpha.MIN_SYMBOLS)
    if usable.size == 0:
        if cut:
            return None
        raise ConflictError(f"no day has bars for {alpha.MIN_SYMBOLS} of the model's symbols: import daily bars")
    t = int(usable[-1])
    first = t - LOOKBACK + 1
    if cut and (first < 0 or not panel.has_ohlcv or any(bars[s][0].ts.date() > panel.dates[first] for s in cut)):
        return None
    return alpha.rows(panel, max(first, 0), t + 1), t - max(first, 0)


def _rank_latest(row: Served, booster: lgb.Booster, window: tuple[alpha.Panel, int]) -> SignalList:
    metadata = row.metadata
    panel, t = window
    names, x = panel.features()
    if names != metadata["features"]:
        raise ConflictError(
            f"model {row.version} was trained on {'close-only' if metadata['close_only'] else 'OHLCV'} features "
            "that the stored bars no longer give: retrain it"
        )
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


@dataclass(frozen=True, slots=True)
class ScoreHistory:
    """The promoted alpha model's score of each symbol on each day (NaN where a symbol has no bar)."""

    model_version: str
    days: tuple[date, ...]
    symbols: tuple[str, ...]
    scores: np.ndarray[Any, np.dtype[np.float64]]
    """(days, symbols)."""
    universe: tuple[str, ...]
    """The symbols the model was trained on."""
    training_window: tuple[str, str]


@dataclass(frozen=True, slots=True)
class TrainedPredictor:
    """A registered order-book predictor and its walk-forward evaluation."""

    model: ModelOut
    evaluation: predictor.PredictorEvaluation
    directory: Path


@dataclass(frozen=True, slots=True)
class _LoadedPredictor:
    version: str
    model: predictor.Model
    horizon: int
    levels: int
    checked_at: float
    counted: Any = field(default=None, compare=False)
    """This version's `predictions_total` series (looked up once, not per prediction)."""

    def __post_init__(self) -> None:
        if self.counted is None:
            object.__setattr__(self, "counted", PREDICTIONS.labels(model=self.version))


BOOSTERS: Slot[dict[str, lgb.Booster]] = Slot("signals.boosters")  # the promoted alpha model, by version
COMPUTING: Slot[dict[str, asyncio.Task[SignalList]]] = Slot("signals.computing")  # signals being computed, by version
WARM_FAILED: Slot[dict[str, float]] = Slot("signals.warm_failed")  # version -> when warming it last failed (monotonic)
PREDICTOR: Slot[_LoadedPredictor] = Slot("signals.predictor")
LAST_BOOKS: Slot[dict[str, tuple[str, list[list[float]]]]] = Slot("signals.last_books")  # per symbol: (book ts, arrays)


_PRICE, _SIZE = itemgetter(0), itemgetter(1)


def _book_arrays(bids: Sequence[Sequence[Any]], asks: Sequence[Sequence[Any]], levels: int, what: str) -> list[list[float]]:
    """[bid prices, bid sizes, ask prices, ask sizes] of the first `levels` levels, checked (422 naming what is wrong)."""
    if len(bids) < levels or len(asks) < levels:
        raise ValidationFailedError(f"{what}: the model needs {levels} levels a side, got {len(bids)} bids and {len(asks)} asks")
    bids, asks = bids[:levels], asks[:levels]
    try:
        bid_price = list(map(float, map(_PRICE, bids)))
        bid_size = list(map(float, map(_SIZE, bids)))
        ask_price = list(map(float, map(_PRICE, asks)))
        ask_size = list(map(float, map(_SIZE, asks)))
    except (TypeError, ValueError, IndexError):
        raise ValidationFailedError(f"{what}: every level must be [price, size] numbers") from None
    columns = [bid_price, bid_size, ask_price, ask_size]
    # A NaN or an infinity makes the sum NaN or infinite; then the smallest value must be positive.
    if not all(math.isfinite(sum(column)) and min(column) > 0 for column in columns):
        raise ValidationFailedError(f"{what}: prices and sizes must be positive finite numbers")
    # Strictly falling bids and rising asks: sorted that way, and no price twice.
    if (
        bid_price != sorted(bid_price, reverse=True)
        or ask_price != sorted(ask_price)
        or len(set(bid_price)) < levels
        or len(set(ask_price)) < levels
    ):
        raise ValidationFailedError(f"{what}: bids must fall and asks rise, best level first")
    if bid_price[0] >= ask_price[0]:
        raise ValidationFailedError(f"{what}: the book is crossed (best bid {bid_price[0]} >= best ask {ask_price[0]})")
    return columns


class PredictorService:
    """Training and serving of the order-book predictor (`/predict`)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def train(
        self,
        *,
        snapshots: int = 30_000,
        horizon: int = predictor.DEFAULT_HORIZON,
        seed: int = 16,
        folds: int = 5,
        lob: str | None = None,
    ) -> TrainedPredictor:
        """Evaluate logistic regression and LightGBM walk-forward, register the better one fitted on all.

        The books are the synthetic simulator's (`snapshots`, `seed`), or those `data import-lob` saved as `lob`.
        """
        if not 1 <= horizon <= 1_000:
            raise ValidationFailedError(f"horizon must be between 1 and 1,000 snapshots, got {horizon}")
        if lob is not None:
            from tradestack.signals import lob_import

            path = self.runtime.settings.data_dir / "lob" / f"{lob}.npz"
            if not path.is_file():
                raise ValidationFailedError(f"no imported order book {lob!r}: import one with `tradestack data import-lob FILE`")
            books = lob_import.load(path)
            source = f"imported order book {lob} ({len(books)} snapshots)"
        else:
            if not 2_000 <= snapshots <= 2_000_000:
                raise ValidationFailedError(f"snapshots must be between 2,000 and 2,000,000, got {snapshots}")
            books = predictor.simulate(snapshots, seed=seed)
            source = f"synthetic order-book simulator, seed {seed}, {snapshots} snapshots"
        if len(books) < (folds + 1) * (horizon + 10):
            raise ValidationFailedError(f"{len(books)} snapshots are too few for {folds} walk-forward folds")
        evaluation, model = predictor.evaluate(books, horizon=horizon, folds=folds)
        digest = hashlib.sha256()
        for values in (books.bid_price, books.bid_size, books.ask_price, books.ask_size):
            digest.update(values.tobytes())
        fingerprint = digest.hexdigest()
        now = self.runtime.clock.now()
        version = f"{ORDERBOOK}-{now:%Y%m%dT%H%M%S}-{fingerprint[:8]}"
        target = artifacts.directory(self.runtime.settings.data_dir, ORDERBOOK, version)
        metadata: dict[str, Any] = {
            "kind": ORDERBOOK,
            "model_type": evaluation.chosen,
            "horizon": horizon,
            "levels": books.levels,
            "features": list(predictor.FEATURES),
            "source": source,
            "data_fingerprint": fingerprint,
            "libraries": {name: package_version(name) for name in ("lightgbm", "numpy", "scikit-learn")},
            "evaluation": {**evaluation.to_json(), "overall": evaluation.overall},
        }
        sha = artifacts.save_model(target, model.to_text(), metadata)
        row = SignalModelRow(
            version=version, kind=ORDERBOOK, created_at=now, promoted=False, promoted_at=None, artifact_sha256=sha,
            data_fingerprint=fingerprint, path=str(target.relative_to(self.runtime.settings.data_dir)),
            metadata_json=json.dumps(metadata, default=str),
        )  # fmt: skip
        async with self.runtime.database.session() as session:
            await SignalModelRepository(session).add(row)
        return TrainedPredictor(model_out(row), evaluation, target)

    async def _loaded(self) -> _LoadedPredictor:
        """The promoted predictor, loaded once per version; the promotion is re-read at most every few seconds."""
        loaded = self.runtime.components.get(PREDICTOR)
        now = self.runtime.clock.monotonic()
        if loaded is not None and now - loaded.checked_at < _PROMOTED_TTL_SECONDS:
            return loaded
        async with self.runtime.database.read_session() as session:
            found = await SignalModelRepository(session).promoted(ORDERBOOK)
            row = Served.of(found) if found else None
        if row is None:
            raise ConflictError("no promoted order-book model: train one with `tradestack signals train-lob --promote`")
        if loaded is not None and loaded.version == row.version:
            fresh = _LoadedPredictor(loaded.version, loaded.model, loaded.horizon, loaded.levels, now, loaded.counted)
        else:
            text = artifacts.load_text(self.runtime.settings.data_dir / row.path, row.sha256)
            fresh = _LoadedPredictor(
                row.version, predictor.model_from_text(text), int(row.metadata["horizon"]), int(row.metadata["levels"]), now
            )
        return self.runtime.components.put(PREDICTOR, fresh)

    async def _live_mid(self, symbol: str) -> Decimal | None:
        raw = await self.runtime.cache.get(BOOK_KEY + symbol)
        if raw is None:
            return None
        book = orjson.loads(raw)
        return (Decimal(str(book["bids"][0][0])) + Decimal(str(book["asks"][0][0]))) / 2

    async def predict(self, symbol: str, book: BookIn | None = None, previous: BookIn | None = None) -> PredictionOut:
        """P(mid up after the model's horizon) from the live book of `symbol` or from `book` (and `previous`).

        Predictions on the live book are recorded; those whose horizon has passed are judged first.
        """
        return PredictionOut.model_validate(await self._predict(symbol, book, previous))

    async def predict_json(self, symbol: str, book: BookIn | None = None, previous: BookIn | None = None) -> bytes:
        """`predict`, as the JSON of a `PredictionOut` (what /predict answers, without building the model object)."""
        return orjson.dumps(await self._predict(symbol, book, previous))

    async def _predict(self, symbol: str, book: BookIn | None, previous: BookIn | None) -> dict[str, Any]:
        started = time.perf_counter()
        served = await self._loaded()
        outcomes = OutcomeService(self.runtime)
        await outcomes.judge_predictions(self._live_mid)
        book_ts: str | None = None
        if book is None:
            if previous is not None:
                raise ValidationFailedError("previous: give it only together with book")
            live = await MarketDataService(self.runtime).orderbook(symbol, depth=served.levels)
            book_ts = str(live["ts"])
            cache_key = f"predict:{served.version}:{live['symbol']}:{book_ts}"
            cached = await self.runtime.cache.get(cache_key)
            if cached is not None:
                answer: dict[str, Any] = orjson.loads(cached)
                answer["cached"] = True
                return self._answered(answer, served, started)
            current = _book_arrays(live["bids"], live["asks"], served.levels, "live book")  # type: ignore[arg-type]
            symbol = str(live["symbol"])
            history = self.runtime.components.get_or_create(LAST_BOOKS, dict)
            before = history.get(symbol)
            history[symbol] = (book_ts, current)
            prior = before[1] if before is not None and before[0] != book_ts else None
        else:
            current = _book_arrays(book.bids, book.asks, served.levels, "book")
            prior = _book_arrays(previous.bids, previous.asks, served.levels, "previous") if previous else None
            cache_key = None
        features = predictor.features_of_snapshot(current, prior)
        p_up = served.model.probability_up_one(features)
        # The fields of PredictionOut, in its order.
        answer = {
            "symbol": symbol.upper(),
            "probability_up": p_up,
            "probability_down": 1.0 - p_up,
            "direction": "up" if p_up >= 0.5 else "down",
            "features": dict(zip(predictor.FEATURES, features, strict=True)),
            "model_version": served.version,
            "model_type": type(served.model).__name__,
            "horizon_snapshots": served.horizon,
            "book_ts": book_ts,
            "cached": False,
            "latency_ms": 0.0,
        }
        if cache_key is not None:
            await self.runtime.cache.set(cache_key, orjson.dumps(answer), PREDICT_CACHE_TTL_SECONDS)
            horizon = timedelta(seconds=served.horizon * self.runtime.settings.replay_tick_seconds)
            mid = (Decimal(str(live["bids"][0][0])) + Decimal(str(live["asks"][0][0]))) / 2  # type: ignore[index]
            due = self.runtime.clock.now() + horizon
            await outcomes.record_prediction(served.version, answer["symbol"], str(book_ts), mid, p_up >= 0.5, due)
        return self._answered(answer, served, started)

    def _answered(self, answer: dict[str, Any], served: _LoadedPredictor, started: float) -> dict[str, Any]:
        elapsed = time.perf_counter() - started
        BATCHED.inc(served.counted)
        BATCHED.observe(PREDICTION_LATENCY, elapsed)
        answer["latency_ms"] = elapsed * 1000
        return answer
