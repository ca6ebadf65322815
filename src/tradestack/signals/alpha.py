"""The cross-sectional LightGBM alpha: label, walk-forward folds with a purge gap, training and evaluation.

Pure computation on a `Panel` (days x symbols arrays); no I/O. The label at day t is the forward
`horizon`-day return from t's close, ranked across the symbols of that day into [-0.5, 0.5]. It
uses closes up to t + horizon, so a training day t is only usable for a test period starting
after t + horizon: every fold leaves `purge` (>= horizon) days plus an `embargo` between its last
training day and its first test day. Evaluation compares the model with two baselines on the
same test days: 20-day momentum and a no-skill model (the model's scores shuffled across symbols
each day with a fixed seed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tradestack.signals.features.daily import Array, daily_features, feature_names, forward_return, momentum

if TYPE_CHECKING:
    import lightgbm as lgb

DEFAULT_HORIZON = 5
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "seed": 16,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}
ROUNDS = 150
MIN_SYMBOLS = 4
"""A day enters training and evaluation only when at least this many symbols have a label."""


@dataclass(frozen=True, slots=True)
class Panel:
    """Daily bars of several symbols on one calendar: (days x symbols) arrays, NaN where a symbol has no bar."""

    dates: tuple[date, ...]
    symbols: tuple[str, ...]
    close: Array
    open: Array | None = None
    high: Array | None = None
    low: Array | None = None
    volume: Array | None = None

    def __post_init__(self) -> None:
        shape = (len(self.dates), len(self.symbols))
        for name in ("close", "open", "high", "low", "volume"):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"{name} must be {shape} (days, symbols), got {value.shape}")

    @property
    def has_ohlcv(self) -> bool:
        """Whether open, high, low and volume are all there (else the close-only feature set)."""
        return all(a is not None for a in (self.open, self.high, self.low, self.volume))

    def features(self) -> tuple[list[str], npt.NDArray[np.float64]]:
        """Feature names and a (days, symbols, features) array."""
        if self.has_ohlcv:
            computed = daily_features(self.close, open_=self.open, high=self.high, low=self.low, volume=self.volume)
        else:
            computed = daily_features(self.close)
        names = feature_names(close_only=not self.has_ohlcv)
        return names, np.stack([computed[n] for n in names], axis=-1)

    def fingerprint(self) -> str:
        """SHA-256 of the dates, symbols and values: which data a model saw."""
        import hashlib

        digest = hashlib.sha256()
        digest.update(",".join(d.isoformat() for d in self.dates).encode())
        digest.update(",".join(self.symbols).encode())
        for a in (self.close, self.open, self.high, self.low, self.volume):
            if a is not None:
                digest.update(np.ascontiguousarray(a).tobytes())
        return digest.hexdigest()


def rows(panel: Panel, start: int, stop: int) -> Panel:
    """The panel's days [start, stop) (views of its arrays)."""
    arrays = [None if a is None else a[start:stop] for a in (panel.open, panel.high, panel.low, panel.volume)]
    return Panel(panel.dates[start:stop], panel.symbols, panel.close[start:stop], *arrays)


def rank_label(returns: Array) -> Array:
    """Per day (row), the returns' percentile rank minus 0.5 (ties averaged); NaN stays NaN, rows of fewer than 2 are NaN."""
    from scipy.stats import rankdata

    ranks = rankdata(returns, axis=1, nan_policy="omit")
    counts = (~np.isnan(returns)).sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (ranks - 1) / (counts - 1) - 0.5
    return np.asarray(np.where((counts >= 2) & ~np.isnan(returns), out, np.nan), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Fold:
    """Training days [train_start, train_end) and test days [test_start, test_end), as row indexes."""

    train_start: int
    train_end: int
    test_start: int
    test_end: int


def walk_forward(days: int, *, horizon: int, test_days: int = 250, min_train_days: int = 500, purge: int | None = None,
                 embargo: int = 2) -> list[Fold]:  # fmt: skip
    """Expanding-window folds over `days` rows: train on everything up to `purge + embargo` days before each test block.

    `purge` defaults to `horizon` and may not be smaller: a training label at day t reads the close
    at t + horizon, which must come before the first test day.
    """
    purge = horizon if purge is None else purge
    if purge < horizon:
        raise ValueError(
            f"purge ({purge}) must be at least the label horizon ({horizon}): shorter leaks test prices into training"
        )
    if embargo < 0 or test_days < 1 or min_train_days < 1:
        raise ValueError("embargo must be >= 0, test_days and min_train_days >= 1")
    gap = purge + embargo
    folds = []
    test_start = min_train_days + gap
    while test_start + horizon < days:
        test_end = min(test_start + test_days, days - horizon)
        folds.append(Fold(0, test_start - gap, test_start, test_end))
        test_start = test_end
    return folds


@dataclass(slots=True)
class Scores:
    """Daily cross-sectional quality of one signal over some test days."""

    ic: list[float] = field(default_factory=list)
    rank_ic: list[float] = field(default_factory=list)
    hits: int = 0
    calls: int = 0
    long_short: list[float] = field(default_factory=list)
    turnover: list[float] = field(default_factory=list)
    days: list[int] = field(default_factory=list)
    """Row of each scored day (relative to the rows scored)."""

    def add(self, other: Scores) -> None:
        """Append another block's days."""
        self.ic += other.ic
        self.rank_ic += other.rank_ic
        self.hits += other.hits
        self.calls += other.calls
        self.long_short += other.long_short
        self.turnover += other.turnover

    def summary(self) -> dict[str, float]:
        """IC, RankIC, ICIR, RankICIR, hit rate, mean daily long-short return, its cumulative sum and turnover."""
        return {
            "ic": _mean(self.ic),
            "rank_ic": _mean(self.rank_ic),
            "icir": _ir(self.ic),
            "rank_icir": _ir(self.rank_ic),
            "hit_rate": self.hits / self.calls if self.calls else math.nan,
            "long_short_daily": _mean(self.long_short),
            "long_short_total": float(np.sum(self.long_short)) if self.long_short else math.nan,
            "turnover": _mean(self.turnover),
            "days": float(len(self.ic)),
        }


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _ir(values: Sequence[float]) -> float:
    if len(values) < 2:
        return math.nan
    std = float(np.std(values, ddof=1))
    return float(np.mean(values)) / std if std > 0 else math.nan


def _rank(x: Array) -> Array:
    return np.asarray(rank_label(x[None, :])[0], dtype=np.float64)


def _corr(a: Array, b: Array) -> float:
    ac, bc = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((ac**2).sum() * (bc**2).sum()))
    return float((ac * bc).sum()) / denom if denom > 0 else math.nan


def score_signal(signal: Array, forward: Array, next_day: Array, *, quantile: float = 0.3) -> Scores:
    """Score `signal` rows against `forward` returns (horizon) and a daily long-short book on `next_day` returns.

    Each day the top and bottom `quantile` of symbols by signal (at least one each) are held long and
    short with equal weights summing to +1 and -1; turnover is half the sum of absolute weight changes.
    """
    scores = Scores()
    previous: dict[int, float] = {}
    for t in range(signal.shape[0]):
        ok = ~np.isnan(signal[t]) & ~np.isnan(forward[t]) & ~np.isnan(next_day[t])
        n = int(ok.sum())
        if n < MIN_SYMBOLS:
            continue
        scores.days.append(t)
        s, f = signal[t, ok], forward[t, ok]
        ic, rank_ic = _corr(s, f), _corr(_rank(s), _rank(f))
        if not math.isnan(ic):
            scores.ic.append(ic)
        if not math.isnan(rank_ic):
            scores.rank_ic.append(rank_ic)
        demeaned_s, demeaned_f = s - np.median(s), f - np.median(f)
        called = (demeaned_s != 0) & (demeaned_f != 0)
        scores.hits += int((np.sign(demeaned_s[called]) == np.sign(demeaned_f[called])).sum())
        scores.calls += int(called.sum())
        k = max(1, int(n * quantile))
        order = np.argsort(s, kind="stable")
        columns = np.flatnonzero(ok)
        weights = dict.fromkeys((int(columns[i]) for i in order[-k:]), 1.0 / k)
        weights.update(dict.fromkeys((int(columns[i]) for i in order[:k]), -1.0 / k))
        scores.long_short.append(sum(w * float(next_day[t, c]) for c, w in weights.items()))
        changed = set(weights) | set(previous)
        scores.turnover.append(sum(abs(weights.get(c, 0.0) - previous.get(c, 0.0)) for c in changed) / 2)
        previous = weights
    return scores


@dataclass(frozen=True, slots=True)
class FoldResult:
    """One fold's window and its three signals' scores."""

    fold: Fold
    train_from: str
    train_to: str
    test_from: str
    test_to: str
    model: dict[str, float]
    momentum: dict[str, float]
    shuffled: dict[str, float]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A walk-forward evaluation: per fold and overall, model against both baselines, and the daily long-short series."""

    horizon: int
    purge: int
    embargo: int
    folds: list[FoldResult]
    overall: dict[str, dict[str, float]]
    daily_long_short: dict[str, list[float]]
    test_dates: list[str]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        encoded: dict[str, Any] = _jsonable(asdict(self))
        return encoded


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True, slots=True)
class Dataset:
    """Features, label and returns of a panel, ready for folds."""

    names: list[str]
    x: npt.NDArray[np.float64]
    label: Array
    forward: Array
    next_day: Array
    momentum: Array


def dataset(panel: Panel, horizon: int) -> Dataset:
    """Features, ranked label, raw forward returns, next-day returns and 20-day momentum."""
    names, x = panel.features()
    forward = forward_return(panel.close, horizon)
    label = rank_label(forward)
    few = (~np.isnan(label)).sum(axis=1) < MIN_SYMBOLS
    label[few] = np.nan
    return Dataset(names, x, label, forward, forward_return(panel.close, 1), momentum(panel.close, 20))


def fit(data: Dataset, rows: slice, params: dict[str, Any] | None = None, rounds: int = ROUNDS) -> lgb.Booster:
    """Train LightGBM on the labelled (day, symbol) pairs of `rows`."""
    import lightgbm as lgb  # slow to import (scikit-learn, scipy, pandas): only when training

    x = data.x[rows].reshape(-1, data.x.shape[-1])
    y = data.label[rows].reshape(-1)
    keep = ~np.isnan(y)
    if int(keep.sum()) < 50:
        raise ValueError(f"only {int(keep.sum())} labelled rows to train on: import more daily history")
    train = lgb.Dataset(x[keep], y[keep], feature_name=data.names, free_raw_data=True)
    return lgb.train({**DEFAULT_PARAMS, **(params or {})}, train, num_boost_round=rounds)


def predict(booster: lgb.Booster, x: npt.NDArray[np.float64]) -> Array:
    """Scores for a (days, symbols, features) block: (days, symbols), NaN where the close is missing."""
    flat = x.reshape(-1, x.shape[-1])
    scores = np.asarray(booster.predict(flat), dtype=np.float64).reshape(x.shape[:2])
    return scores


def evaluate(
    panel: Panel,
    *,
    horizon: int = DEFAULT_HORIZON,
    test_days: int = 250,
    min_train_days: int = 500,
    purge: int | None = None,
    embargo: int = 2,
    params: dict[str, Any] | None = None,
    rounds: int = ROUNDS,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Walk-forward evaluation of the alpha and both baselines on the same folds."""
    data = dataset(panel, horizon)
    # Folds cover the span where the cross-section is wide enough (a label exists), shifted to panel rows.
    labelled = np.flatnonzero(~np.isnan(data.label).all(axis=1))
    lo, hi = (int(labelled[0]), min(int(labelled[-1]) + 1 + horizon, len(panel.dates))) if labelled.size else (0, 0)
    folds = [
        Fold(f.train_start + lo, f.train_end + lo, f.test_start + lo, f.test_end + lo)
        for f in walk_forward(hi - lo, horizon=horizon, test_days=test_days, min_train_days=min_train_days,
                              purge=purge, embargo=embargo)
        if not np.isnan(data.label[f.test_start + lo : f.test_end + lo]).all()
    ]  # fmt: skip
    if not folds:
        raise ValueError(
            f"{hi - lo} days with at least {MIN_SYMBOLS} symbols are too few for one fold: "
            f"need {min_train_days} training days, the gap and a test block"
        )
    rng = np.random.default_rng(16)
    results: list[FoldResult] = []
    totals = {"model": Scores(), "momentum": Scores(), "shuffled": Scores()}
    daily: dict[str, list[float]] = {name: [] for name in totals}
    test_dates: list[str] = []
    alive = ~np.isnan(panel.close)
    for index, fold in enumerate(folds):
        booster = fit(data, slice(fold.train_start, fold.train_end), params, rounds)
        test = slice(fold.test_start, fold.test_end)
        model_scores = np.where(alive[test], predict(booster, data.x[test]), np.nan)
        shuffled = model_scores.copy()
        for row in shuffled:
            ok = ~np.isnan(row)
            row[ok] = rng.permutation(row[ok])
        signals = {"model": model_scores, "momentum": data.momentum[test], "shuffled": shuffled}
        per_fold = {}
        for name, signal in signals.items():
            scored = score_signal(signal, data.forward[test], data.next_day[test])
            per_fold[name] = scored.summary()
            totals[name].add(scored)
            daily[name] += scored.long_short
            if name == "model":
                test_dates += [panel.dates[fold.test_start + t].isoformat() for t in scored.days]
        results.append(FoldResult(
            fold, panel.dates[fold.train_start].isoformat(), panel.dates[fold.train_end - 1].isoformat(),
            panel.dates[fold.test_start].isoformat(), panel.dates[fold.test_end - 1].isoformat(),
            per_fold["model"], per_fold["momentum"], per_fold["shuffled"],
        ))  # fmt: skip
        if progress is not None:
            progress(index + 1, len(folds))
    return Evaluation(
        horizon=horizon,
        purge=horizon if purge is None else purge,
        embargo=embargo,
        folds=results,
        overall={name: scores.summary() for name, scores in totals.items()},
        daily_long_short=daily,
        test_dates=test_dates,
    )


def panel_from_bars(bars: Mapping[str, Sequence[Any]], *, close_only: Sequence[str] = ()) -> Panel:
    """A panel on the union of the bars' dates (UTC days); symbols in `close_only` (or any without volume) give closes only.

    `bars` maps each symbol to its daily `Bar`s. When any symbol is close-only, the whole panel
    uses the close-only feature set, so every symbol is described by the same features.
    """
    if not bars:
        raise ValueError("no daily bars: import some with `tradestack data import`")
    dates = sorted({bar.ts.date() for series in bars.values() for bar in series})
    index = {d: i for i, d in enumerate(dates)}
    symbols = sorted(bars)
    shape = (len(dates), len(symbols))
    names = ("open", "high", "low", "close", "volume")
    arrays = {name: np.full(shape, np.nan) for name in names}
    for column, symbol in enumerate(symbols):
        series = bars[symbol]
        if not series:
            continue
        # One conversion of the symbol's values (float() of each Decimal, as before) and one scatter per field.
        at = np.fromiter((index[bar.ts.date()] for bar in series), dtype=np.intp, count=len(series))
        values = np.array([[bar.open, bar.high, bar.low, bar.close, bar.volume] for bar in series], dtype=np.float64)
        for k, name in enumerate(names):
            arrays[name][at, column] = values[:, k]
    ohlcv = not close_only and bool(np.nansum(arrays["volume"] > 0, axis=0).all())
    if not ohlcv:
        return Panel(tuple(dates), tuple(symbols), arrays["close"])
    return Panel(tuple(dates), tuple(symbols), arrays["close"], arrays["open"], arrays["high"], arrays["low"], arrays["volume"])
