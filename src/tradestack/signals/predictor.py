"""The short-horizon order-book predictor: does the mid price go up or down over the next h snapshots?

Features come from the current L2 snapshot and the one before it only (so `/predict` can answer
from the live book and its predecessor): order-book imbalance over 1, 3, 5 and all levels, the
microprice's lean inside the spread, the relative spread, the depth-slope imbalance and the
one-step order-flow imbalance (OFI) scaled by touch depth. Labels are the sign of the mid move
from t to t + h; snapshots whose mid does not move are left out (reported as `flat_fraction`).

Two models are trained walk-forward (expanding window, `h` snapshots purged before each test
block): logistic regression (scikit-learn, standardised features) and LightGBM. Each fold reports
accuracy, balanced accuracy and the majority-class baseline of the test block; the model with the
better mean balanced accuracy is kept. The OFI check of Cont, Kukanov and Stoikov is reported as
the R² of the mid change over non-overlapping intervals of `h` snapshots regressed on their OFI.
"""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tradestack.signals.features import orderbook
from tradestack.signals.features.orderbook import Array, Books

if TYPE_CHECKING:
    import lightgbm as lgb

FEATURES = ("obi1", "obi3", "obi5", "obi_all", "micro_dev", "spread_rel", "slope_imb", "ofi1")
DEFAULT_HORIZON = 10
LGB_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 200,
    "seed": 16,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}
LGB_ROUNDS = 100


def features(books: Books) -> npt.NDArray[np.float64]:
    """(snapshots, len(FEATURES)); the first snapshot's OFI is 0 (no predecessor)."""
    m = orderbook.mid(books)
    spread = orderbook.spread(books)
    bid_slope, ask_slope = orderbook.depth_slope(books)
    columns = [
        orderbook.obi(books, 1),
        orderbook.obi(books, min(3, books.levels)),
        orderbook.obi(books, min(5, books.levels)),
        orderbook.obi(books, books.levels),
        (orderbook.microprice(books) - m) / spread,
        spread / m,
        (bid_slope - ask_slope) / (bid_slope + ask_slope),
        orderbook.ofi_events(books) / (books.bid_size[0] + books.ask_size[0]),
    ]
    return np.stack(columns, axis=1)


Side = list[float]
Snapshot = list[Side]
"""One book as [bid prices, bid sizes, ask prices, ask sizes], best level first."""


def features_of_snapshot(current: Snapshot, previous: Snapshot | None = None) -> list[float]:
    """`features` of one snapshot (after `previous`, if any) in plain Python: the same values, bit for bit.

    One prediction on the API path is faster this way than through NumPy's per-call overhead.
    """
    bp, bs, ap, asz = current
    # Depths to each level: running sums, added level by level as the vectorised features add them.
    bid_depth, ask_depth = list(accumulate(bs)), list(accumulate(asz))

    def imbalance(k: int) -> float:
        bid, ask = bid_depth[k - 1], ask_depth[k - 1]
        return (bid - ask) / (bid + ask)

    levels = len(bp)
    mid = (bp[0] + ap[0]) / 2
    spread = ap[0] - bp[0]
    micro = (ap[0] * bs[0] + bp[0] * asz[0]) / (bs[0] + asz[0])
    bid_slope = bid_depth[-1] / (bp[0] - bp[-1])
    ask_slope = ask_depth[-1] / (ap[-1] - ap[0])
    flow = 0.0
    if previous is not None:
        pbp, pbs, pap, pas = (side[0] for side in previous)
        bid_in = bs[0] if bp[0] >= pbp else 0.0
        bid_out = pbs if bp[0] <= pbp else 0.0
        ask_in = asz[0] if ap[0] <= pap else 0.0
        ask_out = pas if ap[0] >= pap else 0.0
        flow = bid_in - bid_out - ask_in + ask_out
    return [
        imbalance(1), imbalance(min(3, levels)), imbalance(min(5, levels)), imbalance(levels),
        (micro - mid) / spread, spread / mid, (bid_slope - ask_slope) / (bid_slope + ask_slope), flow / (bs[0] + asz[0]),
    ]  # fmt: skip


def labels(books: Books, horizon: int) -> Array:
    """1.0 when the mid is higher `horizon` snapshots later, 0.0 when lower, NaN when unchanged or unknown."""
    m = orderbook.mid(books)
    out = np.full(len(books), np.nan)
    if horizon < len(books):
        move = m[horizon:] - m[:-horizon]
        out[:-horizon] = np.where(move > 0, 1.0, np.where(move < 0, 0.0, np.nan))
    return out


def simulate(snapshots: int, *, seed: int = 16, depth: int = 10, symbol: str = "SIM-LOB") -> Books:
    """`snapshots` L2 books from the seeded synthetic order-book simulator (`tradestack.domain.synthetic`)."""
    from tradestack.domain.synthetic import OrderBookSimulator

    simulator = OrderBookSimulator(symbol, Decimal(100), Decimal("0.01"), seed, depth=depth)
    shape = (depth, snapshots)
    arrays = [np.empty(shape) for _ in range(4)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for t in range(snapshots):
        book = simulator.step(start + timedelta(milliseconds=100 * t))
        for level in range(depth):
            arrays[0][level, t] = float(book.bids[level].price)
            arrays[1][level, t] = float(book.bids[level].size)
            arrays[2][level, t] = float(book.asks[level].price)
            arrays[3][level, t] = float(book.asks[level].size)
    return Books(*arrays)


@dataclass(frozen=True, slots=True)
class LogisticModel:
    """Standardised logistic regression, applied with NumPy alone (no scikit-learn needed to predict)."""

    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float

    def probability_up(self, x: npt.NDArray[np.float64]) -> Array:
        """P(up) for rows of features."""
        z = ((x - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef) + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)

    def to_text(self) -> str:
        """JSON text, as stored in the registry."""
        return json.dumps({"type": "logistic", **asdict(self)})

    def probability_up_one(self, row: list[float]) -> float:
        """P(up) of one row of features: `probability_up` of a one-row matrix."""
        return float(self.probability_up(np.array([row]))[0])


class _SingleRowPredictor:
    """LightGBM's single-row prediction API (``LGBM_BoosterPredictForMatSingleRowFast``) on one booster.

    `lgb.Booster.predict` checks and converts its input and builds a predictor on every call (~40 µs
    for one row); the C API's "fast" single-row path is set up once (iterations, output type, one
    thread) and then only evaluates the trees. Same trees, same transformation (the sigmoid of a
    binary objective): the same value. Its input and output buffers are reused, so one instance
    serves one thread (each API worker's event loop).
    """

    def __init__(self, booster: lgb.Booster, columns: int) -> None:
        from lightgbm.basic import _LIB, _c_str, _safe_call  # type: ignore[attr-defined]  # the C API, as lightgbm calls it

        self._lib, self._safe_call = _LIB, _safe_call
        self._booster = booster  # keeps the booster's handle alive
        self._config = ctypes.c_void_p()
        iterations = booster.best_iteration if booster.best_iteration > 0 else -1
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(0),  # C_API_PREDICT_NORMAL: probabilities, as Booster.predict
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(iterations),
                ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
                ctypes.c_int32(columns),
                _c_str("num_threads=1"),
                ctypes.byref(self._config),
            )
        )
        self._row = np.zeros(columns, dtype=np.float64)
        self._out = np.zeros(1, dtype=np.float64)
        self._out_length = ctypes.c_int64(0)
        self._out_length_pointer = ctypes.byref(self._out_length)
        self._row_pointer = self._row.ctypes.data_as(ctypes.c_void_p)
        self._out_pointer = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._predict = _LIB.LGBM_BoosterPredictForMatSingleRowFast

    def __call__(self, row: list[float]) -> float:
        self._row[:] = row
        code = self._predict(self._config, self._row_pointer, self._out_length_pointer, self._out_pointer)
        if code:
            self._safe_call(code)  # raises LightGBM's error with its last message
        return float(self._out[0])

    def __del__(self) -> None:
        config = getattr(self, "_config", None)
        if config is not None and config.value is not None:
            self._lib.LGBM_FastConfigFree(config)


class BoosterModel:
    """LightGBM binary classifier."""

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster
        self._single_row: _SingleRowPredictor | None = None

    def probability_up(self, x: npt.NDArray[np.float64]) -> Array:
        """P(up) for rows of features."""
        # One thread: API workers share the cores, and OpenMP's spinning threads cost more than they give on a row.
        return np.asarray(self.booster.predict(x, num_threads=1), dtype=np.float64)

    def probability_up_one(self, row: list[float]) -> float:
        """P(up) of one row of features (the value `probability_up` gives it), through LightGBM's single-row API."""
        if self._single_row is None:
            self._single_row = _SingleRowPredictor(self.booster, self.booster.num_feature())
        return self._single_row(row)

    def to_text(self) -> str:
        """LightGBM's text format."""
        return str(self.booster.model_to_string())


Model = LogisticModel | BoosterModel


def model_from_text(text: str) -> Model:
    """A stored predictor: JSON coefficients (logistic) or LightGBM text."""
    if text.startswith("{"):
        fields = json.loads(text)
        fields.pop("type")
        return LogisticModel(**fields)
    import lightgbm as lgb  # slow to import (scikit-learn, scipy, pandas): only for a LightGBM predictor

    return BoosterModel(lgb.Booster(model_str=text))


def fit_logistic(x: npt.NDArray[np.float64], y: Array) -> LogisticModel:
    """Logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    fitted = LogisticRegression(C=1.0, max_iter=500).fit((x - mean) / scale, y)
    return LogisticModel(mean.tolist(), scale.tolist(), fitted.coef_[0].tolist(), float(fitted.intercept_[0]))


def fit_booster(x: npt.NDArray[np.float64], y: Array) -> BoosterModel:
    """LightGBM binary classifier."""
    import lightgbm as lgb

    return BoosterModel(lgb.train(LGB_PARAMS, lgb.Dataset(x, y, feature_name=list(FEATURES)), num_boost_round=LGB_ROUNDS))


FITTERS: dict[str, Callable[[npt.NDArray[np.float64], Array], Model]] = {"logistic": fit_logistic, "lightgbm": fit_booster}


def _scores(p: Array, y: Array) -> dict[str, float]:
    predicted = p >= 0.5
    actual = y == 1.0
    up_recall = float((predicted & actual).sum() / actual.sum()) if actual.any() else math.nan
    down_recall = float((~predicted & ~actual).sum() / (~actual).sum()) if (~actual).any() else math.nan
    majority = max(float(actual.mean()), 1.0 - float(actual.mean()))
    return {
        "accuracy": float((predicted == actual).mean()),
        "balanced_accuracy": (up_recall + down_recall) / 2,
        "majority_baseline": majority,
        "samples": float(len(y)),
    }


@dataclass
class PredictorEvaluation:
    """Walk-forward figures per fold and model, the kept model and the OFI R² check."""

    horizon: int
    snapshots: int
    flat_fraction: float
    folds: list[dict[str, dict[str, float]]] = field(default_factory=list)
    overall: dict[str, dict[str, float]] = field(default_factory=dict)
    chosen: str = ""
    ofi_r2: float = math.nan

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def ofi_r_squared(books: Books, interval: int) -> float:
    """R² of mid changes over non-overlapping `interval`-snapshot windows regressed on the windows' summed OFI."""
    events = orderbook.ofi_events(books)
    m = orderbook.mid(books)
    ends = np.arange(interval, len(books), interval)
    ofi = np.array([events[e - interval + 1 : e + 1].sum() for e in ends])
    change = m[ends] - m[ends - interval]
    if len(ends) < 3 or ofi.std() == 0 or change.std() == 0:
        return math.nan
    return float(np.corrcoef(ofi, change)[0, 1] ** 2)


def evaluate(books: Books, *, horizon: int = DEFAULT_HORIZON, folds: int = 5) -> tuple[PredictorEvaluation, Model]:
    """Walk-forward over `folds` test blocks after a first training block; the figures, and the better model fitted on all."""
    x, y = features(books), labels(books, horizon)
    known = ~np.isnan(y)
    evaluation = PredictorEvaluation(horizon, len(books), float(1.0 - known[: len(books) - horizon].mean()))
    block = len(books) // (folds + 1)
    pooled: dict[str, list[tuple[Array, Array]]] = {name: [] for name in FITTERS}
    for k in range(1, folds + 1):
        train = np.arange(0, k * block - horizon)  # the last `horizon` labels would read the test block
        test = np.arange(k * block, min((k + 1) * block, len(books)))
        train, test = train[known[train]], test[known[test]]
        fold: dict[str, dict[str, float]] = {}
        for name, fitter in FITTERS.items():
            model = fitter(x[train], y[train])
            p = model.probability_up(x[test])
            fold[name] = _scores(p, y[test])
            pooled[name].append((p, y[test]))
        evaluation.folds.append(fold)
    for name, parts in pooled.items():
        evaluation.overall[name] = _scores(np.concatenate([p for p, _ in parts]), np.concatenate([t for _, t in parts]))
    evaluation.chosen = max(FITTERS, key=lambda n: evaluation.overall[n]["balanced_accuracy"])
    evaluation.ofi_r2 = ofi_r_squared(books, horizon)
    return evaluation, FITTERS[evaluation.chosen](x[known], y[known])
